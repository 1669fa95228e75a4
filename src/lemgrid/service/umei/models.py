"""lemgrid's own pydantic models of the UMEI resources (written for lemgrid from the UMEI 1.0
interface; ``docs/umei.md`` maps every field to lemgrid's model).

Field names on the wire are UMEI's camelCase (``periodFrom``); attributes are snake_case.
Quantities are in MW (average over the period; positive = production), prices in EUR/MWh, times
in ISO 8601 UTC. Every response model is dumped with ``exclude_none``: a field lemgrid has no value
for is left out rather than sent as null.

``Lemgrid*`` models are what lemgrid adds to a resource (under the ``lemgrid`` key): the ledger
position of the record that holds it, the exact money of an activation.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Status = Literal["Received", "Pending", "Rejected", "Active", "Inactive", "Completed", "Deleted"]
CompletionType = Literal["Filled", "Killed", "Expired", "Cancelled"]
QuantityType = Literal["ActivePower", "ReactivePower", "Energy", "Capacity"]
Side = Literal["Sell", "Buy"]
RegulationType = Literal["Up", "Down"]
Id = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._~:-]+$")]
#: Average power over a period [MW]: UMEI's range, at its 1 kW resolution (multipleOf 0.001).
QuantityMw = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True,
                              extra="forbid")


class Link(Camel):
    rel: str | None = None
    title: str | None = None
    href: str | None = None
    method: str | None = None


# -- what lemgrid adds ---------------------------------------------------------------------------
class LemgridRecord(Camel):
    """Where the resource sits in lemgrid: its ledger entry and lemgrid's units."""

    ledger_seq: int | None = None
    interval: int | None = None
    offer_id: str | None = None
    power_w: int | None = None
    price_meur_per_kwh: int | None = None
    #: A meter reading against the FSP's declared baseline and the DSO's activations of the
    #: portfolio in the period [W of net injection]: what was not delivered.
    baseline_w: int | None = None
    activated_w: int | None = None
    shortfall_w: int | None = None


class LemgridActivation(Camel):
    """An activation of the DSO's clearing, in lemgrid's exact units."""

    activation_id: str
    ledger_seq: int
    interval: int
    power_w: int
    price_meur_per_kwh: int
    utilisation_eur: float
    penalty_eur: float
    delivered: bool
    buyer: str
    service: str


# -- resources -----------------------------------------------------------------------------------
class Portfolio(Camel):
    id: str
    status: Status = "Active"
    name: str
    grid_node_id: str
    owner_organization_id: str


class Market(Camel):
    id: str
    name: str
    description: str
    quantity_type: QuantityType = "ActivePower"


class FlexibilityZone(Camel):
    id: str
    flexibility_need: float | None = None
    period_from: dt.datetime
    period_to: dt.datetime
    portfolio_ids: list[str]


class BaselineIntervalIn(Camel):
    """A baseline as an FSP posts it (id optional: lemgrid names one)."""

    id: Id | None = None
    status: Status | None = None
    portfolio_id: Id
    period_from: dt.datetime
    period_to: dt.datetime
    quantity: QuantityMw
    quantity_type: QuantityType = "ActivePower"


class BaselineInterval(Camel):
    id: str
    status: Status
    links: list[Link] = Field(default_factory=list)
    portfolio_id: str
    period_from: dt.datetime
    period_to: dt.datetime
    quantity: float
    quantity_type: QuantityType = "ActivePower"
    lemgrid: LemgridRecord | None = None


class MeterReadingIn(Camel):
    id: Id | None = None
    status: Status | None = None
    portfolio_id: Id
    period_from: dt.datetime
    period_to: dt.datetime
    quantity: QuantityMw
    quantity_type: QuantityType = "ActivePower"


class MeterReading(BaselineInterval):
    pass


class QuantityPricePoint(Camel):
    quantity: Annotated[float, Field(allow_inf_nan=False)]
    unit_price: Annotated[float, Field(allow_inf_nan=False)]


class OrderIn(Camel):
    """An order as an FSP (or a DSO) posts it."""

    id: Id | None = None
    owner_organization_id: str | None = None
    status: Status | None = None
    completion_type: CompletionType | None = None
    grid_node_id: str | None = None
    flexibility_zone_id: str | None = None
    market_id: str | None = None
    portfolio_id: str | None = None
    regulation_type: RegulationType | None = None
    side: Side
    price_points: Annotated[list[QuantityPricePoint], Field(min_length=1, max_length=100)] | None \
        = None
    minimum_acceptance_quantity: Annotated[float, Field(allow_inf_nan=False)] | None = None
    period_from: dt.datetime
    period_to: dt.datetime
    longflex_contract_id: str | None = None


class Order(Camel):
    id: str | None = None
    owner_organization_id: str | None = None
    status: Status
    completion_type: CompletionType | None = None
    grid_node_id: str | None = None
    flexibility_zone_id: str | None = None
    market_id: str
    portfolio_id: str | None = None
    regulation_type: RegulationType
    side: Side
    price_points: list[QuantityPricePoint]
    minimum_acceptance_quantity: float | None = None
    period_from: dt.datetime
    period_to: dt.datetime
    longflex_contract_id: str | None = None
    lemgrid: LemgridRecord | None = None


class Trade(Camel):
    id: str
    owner_organization_id: str
    status: Status = "Completed"
    market_id: str
    order_id: str | None = None
    quantity: float
    side: Side
    unit_price: float
    period_from: dt.datetime
    period_to: dt.datetime
    grid_node_id: str | None = None
    flexibility_zone_id: str | None = None
    portfolio_id: str | None = None
    regulation_type: RegulationType
    links: list[Link] = Field(default_factory=list)
    lemgrid: LemgridActivation | None = None


class SearchResult(Camel):
    number_of_hits: int
    items: list
    links: list[Link] = Field(default_factory=list)


class PortfolioSearchResult(SearchResult):
    items: list[Portfolio]


class MarketSearchResult(SearchResult):
    items: list[Market]


class FlexibilityZoneSearchResult(SearchResult):
    items: list[FlexibilityZone]


class BaseLineIntervalSearchResult(SearchResult):
    items: list[BaselineInterval]


class MeterReadingSearchResult(SearchResult):
    items: list[MeterReading]


class OrderSearchResult(SearchResult):
    items: list[Order]


class TradeSearchResult(SearchResult):
    items: list[Trade]


# -- errors (RFC 7807) ---------------------------------------------------------------------------
class ValidationError(BaseModel):
    property: str
    message: str
    value: str | None = None


class ProblemDetails(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    type: str
    title: str
    status: str
    detail: str
    instance: str | None = None
    validation_errors: list[ValidationError] | None = Field(default=None,
                                                            alias="validation-errors")


# -- authentication (lemgrid's; UMEI leaves the token's issuance to the platform) -------------
class ChallengeIn(Camel):
    key_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class Challenge(Camel):
    challenge: str
    expires_at: dt.datetime
    sign: str = Field(description="what to sign: the bytes of umei_token_message(challenge, "
                                  "log_id), hex")
    log_id: str


class TokenIn(Camel):
    key_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    challenge: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    signature: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


class Token(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    ledger_seq: int
