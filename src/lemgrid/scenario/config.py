"""The scenario file format: pydantic models, validated once at the boundary.

A scenario is a grid, the participants and their assets at its buses, a time window, tariffs, the
DSO's grid limits and the market design. See ``docs/scenario.md`` for the format with examples.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializeAsAny,
    field_validator,
    model_validator,
)

#: Sane physical bounds. A value beyond them is a typo or a unit mistake (W for kW), not a
#: scenario: the largest single plants on distribution grids are tens of MW.
MAX_POWER_KW = 1e6  # 1 GW
MAX_ENERGY_KWH = 1e7  # 10 GWh
MAX_ANNUAL_KWH = 1e10  # 10 TWh per year
#: Prices and charges [EUR/kWh] lie within +-10, the default order price band of lemgrid.market
#: (EU day-ahead prices are capped at 4 EUR/kWh).
MAX_ABS_PRICE_EUR_PER_KWH = 10.0

# Numbers are strict (see Strict): a boolean or a quoted number is not a number.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Power = Annotated[float, Field(gt=0, le=MAX_POWER_KW, allow_inf_nan=False)]
Energy = Annotated[float, Field(gt=0, le=MAX_ENERGY_KWH, allow_inf_nan=False)]
Price = Annotated[float, Field(ge=-MAX_ABS_PRICE_EUR_PER_KWH, le=MAX_ABS_PRICE_EUR_PER_KWH,
                               allow_inf_nan=False)]
Charge = Annotated[float, Field(ge=0, le=MAX_ABS_PRICE_EUR_PER_KWH, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]
Lax = pydantic.Strict(False)

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")

#: Bidding strategies (``lemgrid.agents``).
AGENT_TYPES = ("price-taker", "zi-c", "zip", "optimizer")


class Strict(BaseModel):
    """Base for all scenario sections: unknown keys are errors (they are usually typos), and
    values are not coerced: ``true`` is no number, ``"5"`` no number and ``1`` no boolean."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def clock_hours(text: str) -> float:
    """'17:30' -> 17.5 (hours after midnight)."""
    match = _CLOCK.match(str(text).strip())
    if not match:
        raise ValueError(f"time of day must look like HH:MM, got {text!r}")
    return int(match.group(1)) + int(match.group(2)) / 60


def _valid_clock(text: str) -> str:
    clock_hours(text)
    return text


ClockTime = Annotated[str, AfterValidator(_valid_clock)]


class AssetBase(Strict):
    """Where an asset sits: at a participant (``owner``), at a bus (the first participant there, or
    a participant of its own if none), or at every n-th participant (``every``)."""

    id: str | None = None
    owner: str | None = None
    bus: str | None = None
    every: Count | None = None
    #: The asset's kind; each concrete config narrows it to ``Literal["<its type>"]``.
    type: str

    @model_validator(mode="after")
    def _one_placement(self):
        given = [k for k in ("owner", "bus", "every") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of owner, bus or every; got {given}")
        return self

    @property
    def placed(self) -> bool:
        return any(getattr(self, k) is not None for k in ("owner", "bus", "every"))


class BatteryConfig(AssetBase):
    """A battery; ``efficiency`` is the round-trip efficiency (split equally on charge/discharge)."""

    type: Literal["battery"]
    capacity_kwh: Energy
    power_kw: Power
    efficiency: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.90
    soc_min: Fraction = 0.0
    soc_max: Fraction = 1.0
    soc_initial: Fraction = 0.5
    soc_final: Fraction | None = Field(
        default=None, description="state of charge required at the end (default: soc_initial)")

    @model_validator(mode="after")
    def _soc_order(self):
        final = self.soc_initial if self.soc_final is None else self.soc_final
        if not self.soc_min <= self.soc_max:
            raise ValueError(f"soc_min ({self.soc_min}) must be <= soc_max ({self.soc_max})")
        for name, value in (("soc_initial", self.soc_initial), ("soc_final", final)):
            if not self.soc_min <= value <= self.soc_max:
                raise ValueError(f"{name} ({value}) must lie within [soc_min, soc_max]")
        return self


class EVConfig(AssetBase):
    """An electric vehicle at home from ``arrival`` to ``departure`` every day, drawing
    ``energy_kwh`` from its charging point by departure at up to ``power_kw``."""

    type: Literal["ev"]
    power_kw: Power
    energy_kwh: Energy
    arrival: ClockTime = "18:00"
    departure: ClockTime = "07:00"
    capacity_kwh: Energy | None = None

    @model_validator(mode="after")
    def _energy_fits(self):
        if self.capacity_kwh is not None and self.energy_kwh > self.capacity_kwh:
            raise ValueError(
                f"energy_kwh ({self.energy_kwh}) exceeds the EV's capacity_kwh ({self.capacity_kwh})")
        return self


class FlexibleLoadConfig(AssetBase):
    """A shiftable load that needs ``energy_kwh`` each day within [``window_start``,
    ``window_end``) at up to ``power_kw`` (e.g. a washing machine or dishwasher)."""

    type: Literal["flexible_load"]
    energy_kwh: Energy
    power_kw: Power
    window_start: ClockTime = "08:00"
    window_end: ClockTime = "20:00"


class PVConfig(AssetBase):
    """Additional rooftop PV of ``kwp`` peak power following a SimBench PV profile."""

    type: Literal["pv"]
    kwp: Power
    profile: str = "PV3"


_BuiltinAssetConfig = Annotated[
    BatteryConfig | EVConfig | FlexibleLoadConfig | PVConfig, Field(discriminator="type")
]


def _validate_asset(value: Any) -> AssetBase:
    """An asset config by its ``type``: a built-in type or a registered asset kind
    (:mod:`lemgrid.assets.kinds`); the kind's own model validates the rest."""
    from pydantic_core import PydanticCustomError

    from lemgrid.assets.kinds import BUILTIN_TYPES, all_type_names, asset_kinds, kind_types

    if isinstance(value, AssetBase):
        return value
    tag = value.get("type") if isinstance(value, dict) else None
    if tag is None or tag in BUILTIN_TYPES or not isinstance(tag, str):
        return _builtin_assets().validate_python(value)
    kinds = {t: kind for kind in asset_kinds().values() for t in kind_types(kind)
             if t not in BUILTIN_TYPES}
    if tag not in kinds:
        expected = ", ".join(repr(t) for t in all_type_names())
        raise PydanticCustomError(
            "union_tag_invalid",
            "Input tag {tag} found using {discriminator} does not match any of the expected "
            "tags: {expected_tags}",
            {"discriminator": "'type'", "tag": repr(tag), "expected_tags": expected})
    asset = kinds[tag].Config.model_validate(value)
    if not isinstance(asset, AssetBase):
        raise TypeError(f"asset kind {tag!r}: its Config {type(asset).__name__} must subclass "
                        "lemgrid.scenario.config.AssetBase")
    return asset


def _builtin_assets() -> pydantic.TypeAdapter:
    global _BUILTIN_ADAPTER
    if _BUILTIN_ADAPTER is None:
        _BUILTIN_ADAPTER = pydantic.TypeAdapter(_BuiltinAssetConfig)
    return _BUILTIN_ADAPTER


_BUILTIN_ADAPTER: pydantic.TypeAdapter | None = None

#: Any asset: battery, EV, shiftable load, PV, or a registered kind (a heat pump, ...).
AssetConfig = Annotated[SerializeAsAny[AssetBase],
                      PlainValidator(_validate_asset, json_schema_input_type=_BuiltinAssetConfig)]


class LoadProfileConfig(Strict):
    """A standard SimBench load profile scaled to an annual consumption."""

    profile: str = "H0-A"
    annual_kwh: Annotated[float, Field(gt=0, le=MAX_ANNUAL_KWH, allow_inf_nan=False)]


class ParticipantConfig(Strict):
    """An explicit participant: its bus, the grid elements it owns, extra consumption/PV, assets."""

    id: Annotated[str, Field(min_length=1)]
    bus: str
    loads: list[str] = Field(default_factory=list, description="names of grid loads it owns")
    sgens: list[str] = Field(default_factory=list, description="names of grid PV (sgens) it owns")
    load: LoadProfileConfig | None = None
    pv_kwp: Annotated[float, Field(ge=0, le=MAX_POWER_KW, allow_inf_nan=False)] = 0.0
    pv_profile: str = "PV3"
    assets: list[AssetConfig] = Field(default_factory=list)

    @field_validator("bus", mode="before")
    @classmethod
    def _bus_text(cls, value: Any) -> Any:
        # Bus names that YAML reads as numbers (ieee33's 1..33); anything else is validated as is.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ScaleConfig(Strict):
    """Multipliers on the profiles of all loads and all PV (at most 100)."""

    load: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 1.0
    pv: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 1.0


class TariffConfig(Strict):
    """Retail tariffs (EUR/kWh). The household pays ``import + network`` per imported kWh and gets
    ``export`` per exported kWh (business-as-usual)."""

    import_eur_per_kwh: Price = 0.25
    export_eur_per_kwh: Price = 0.08
    network_eur_per_kwh: Charge = 0.08

    @model_validator(mode="after")
    def _no_arbitrage(self):
        if self.export_eur_per_kwh > self.import_eur_per_kwh + self.network_eur_per_kwh:
            raise ValueError(
                "export_eur_per_kwh must not exceed import_eur_per_kwh + network_eur_per_kwh "
                "(otherwise buying from the grid to sell back would be profitable)"
            )
        return self


class GridLimitsConfig(Strict):
    """The DSO's operating limits (EN 50160: +-10 % of nominal voltage)."""

    vm_min_pu: Annotated[float, Field(gt=0, lt=2, allow_inf_nan=False)] = 0.90
    vm_max_pu: Annotated[float, Field(gt=0, lt=2, allow_inf_nan=False)] = 1.10
    max_loading_percent: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = 100.0

    @model_validator(mode="after")
    def _band(self):
        if self.vm_min_pu >= self.vm_max_pu:
            raise ValueError(f"vm_min_pu ({self.vm_min_pu}) must be < vm_max_pu ({self.vm_max_pu})")
        return self


class DefaultProfilesConfig(Strict):
    """Standard profiles for grid elements that have no time series (e.g. ``ieee33``)."""

    load: str = "H0-A"
    pv: str = "PV3"


class DesignOptions(Strict):
    """Base of every market design's options (the ``market`` section): ``design`` names the
    design in :mod:`lemgrid.designs`; a design adds its own fields."""

    design: str


class NoMarketOptions(DesignOptions):
    """``design: none``: business-as-usual, every kWh with the retailer; no options."""

    design: Literal["none"] = "none"


class OrderOptions(DesignOptions):
    """Options of the order-based designs (``uniform``, ``pay-as-bid``, ``continuous``)."""

    design: Literal["uniform", "pay-as-bid", "continuous"] = "uniform"
    intraday: bool = Field(False, description="trade each interval's deviations from the "
                                              "schedule in an intraday uniform auction")


class CommunityOptions(DesignOptions):
    """Options of the ``community`` design (``community-constrained``: ``network: constrained``)."""

    design: Literal["community", "community-constrained"] = "community"
    network: Literal["ignore", "constrained"] = Field(
        "ignore", description="clear within the grid's limits (DLMPs) or ignore the grid")
    curtailment_eur_per_kwh: Price | None = Field(
        None, description="value of curtailed PV energy (default: the feed-in tariff)")
    battery_wear_eur_per_kwh: Charge = 0.001
    losses: bool = Field(True, description="price losses in network-constrained clearing")
    max_ac_iterations: Annotated[int, Field(ge=2, le=100)] = 20

    @model_validator(mode="after")
    def _constrained(self):
        if (self.design == "community-constrained" and "network" in self.model_fields_set
                and self.network != "constrained"):
            raise ValueError("design community-constrained clears within the grid's limits: "
                             f"network must be 'constrained' (or left out), got {self.network!r}")
        return self


class P2POptions(DesignOptions):
    """Options of the ``p2p`` design."""

    design: Literal["p2p"] = "p2p"
    network: Literal["ignore", "constrained"] = Field(
        "ignore", description="'constrained' is not built for p2p (an error says so)")
    method: Literal["admm", "central"] = "admm"
    network_charge_eur_per_kwh: Charge = Field(
        0.04, description="charge on a local trade between the farthest pair of peers")
    seller_share: Fraction = Field(0.5, description="seller's share of network charges")
    local_premium_eur_per_kwh: Charge = Field(
        0.01, description="premium both sides grant a trade between participants")
    tolerance_kwh: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1e-4
    reference: bool = Field(True, description="also solve each session centrally and report "
                                              "the welfare gap (p2p_gap_to_central)")


def _market_options(value: Any) -> DesignOptions:
    from lemgrid.designs import parse_options

    return parse_options(value)  # type: ignore[return-value]


#: The ``market`` section: the options model of the design it names (:mod:`lemgrid.designs`).
MarketConfig = Annotated[SerializeAsAny[DesignOptions], PlainValidator(_market_options)]


class ZipConfig(Strict):
    """Learning parameters of ZIP traders (Cliff 1997: learning rate 0.1-0.5, momentum 0-0.1)."""

    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.05
    initial_margin: Annotated[float, Field(ge=0, le=1)] = 0.2


class AgentsConfig(Strict):
    """Who bids how: a default strategy and per-participant exceptions."""

    default: Literal[AGENT_TYPES] = "price-taker"  # type: ignore[valid-type]
    by_participant: dict[str, Literal[AGENT_TYPES]] = Field(  # type: ignore[valid-type]
        default_factory=dict)
    zip: ZipConfig = ZipConfig()


class ForecastConfig(Strict):
    """Forecasts the day-ahead market is cleared on. ``noisy``: realised value x (1 + e) with e
    normal, standard deviation ``error`` per interval (independent), clipped at zero."""

    method: Literal["perfect", "noisy"] = "perfect"
    error: Annotated[float, Field(ge=0, le=2)] = 0.1


class SettlementConfig(Strict):
    """Charges beyond the energy price (EUR/kWh unless stated) and the imbalance prices."""

    local_network_eur_per_kwh: Charge = 0.02
    levies_eur_per_kwh: Charge = 0.0
    fixed_eur_per_day: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] = 0.0
    imbalance_short_eur_per_kwh: Price | None = Field(
        default=None, description="price of energy delivered short (default: import + network)")
    imbalance_long_eur_per_kwh: Price | None = Field(
        default=None, description="price of surplus energy delivered (default: feed-in tariff)")


class FlexPricesConfig(Strict):
    """Utilisation prices of flexibility per asset kind [EUR/kWh] (``pv`` for curtailment, any
    offer label of an asset kind: ``battery``, ``ev``, ``flexible_load``, ``heat_pump``, ...;
    a kind not given offers at its default price), and the availability (reservation) price
    [EUR per kW and hour]."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    pv: Price = 0.12
    availability_eur_per_kw_h: Charge = 0.0

    @model_validator(mode="after")
    def _registered_kinds(self):
        if not self.model_extra:
            return self
        from lemgrid.assets.kinds import offer_labels

        labels = offer_labels()
        for key, value in self.model_extra.items():
            if key not in labels:
                raise ValueError(f"unknown asset kind {key!r} (prices are given per kind: "
                                 f"pv, {', '.join(labels)})")
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not abs(value) <= MAX_ABS_PRICE_EUR_PER_KWH):
                raise ValueError(f"{key}: a price must be a number within "
                                 f"+-{MAX_ABS_PRICE_EUR_PER_KWH} EUR/kWh, got {value!r}")
        return self

    @property
    def by_kind(self) -> dict[str, float]:
        """Prices of asset kinds given in the file [EUR/kWh] (the others: their defaults)."""
        return {k: float(v) for k, v in (self.model_extra or {}).items()}

    def of_kind(self, label: str) -> float:
        """Price of flexibility offered under ``label`` [EUR/kWh] (given, or the kind's
        default)."""
        if label == "pv":
            return float(self.pv)
        from lemgrid.dso.flexibility import OfferPrices

        return OfferPrices(by_kind=self.by_kind).of_kind(label)


class DailyWindowConfig(Strict):
    """A time window of every day."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: ClockTime = Field(alias="from")
    end: ClockTime = Field(alias="to")


class RequestConfig(Strict):
    """An explicit daily request for flexibility (e.g. the TSO's balancing need at the evening
    peak, or a DSO's planned congestion product): ``kw`` in ``direction`` at every interval of the
    window, from the buses of ``buses`` (all buses if omitted)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: ClockTime = Field(alias="from")
    end: ClockTime = Field(alias="to")
    direction: Literal["up", "down"]
    kw: Power
    max_price_eur_per_kwh: Price = 1.0
    service: Literal["CM", "VM", "LLR", "balancing"] = "balancing"
    buses: list[str] | None = None


def flex_kinds() -> list[str]:
    """Asset kinds that can offer flexibility: PV and every registered kind's offer labels."""
    from lemgrid.assets.kinds import offer_labels

    labels = offer_labels()
    return [*labels[:1], "pv", *labels[1:]]


class FlexibilityConfig(Strict):
    """The DSO's flexibility market."""

    enabled: bool = True
    clearing: Literal["optimal", "continuous"] = "optimal"
    pricing: Literal["pay-as-bid", "pay-as-clear"] = "pay-as-bid"
    lead_time: Literal["intraday", "day-ahead", "long-term"] = "day-ahead"
    reservation: DailyWindowConfig | None = Field(
        default=None, description="long-term lead time: daily window reserved in advance")
    prices: FlexPricesConfig = FlexPricesConfig()
    providers: Literal["all", "aggregators"] = "all"
    kinds: list[str] = Field(default_factory=lambda: flex_kinds(),
                             description="asset kinds that offer flexibility (default: all)")
    max_iterations: Annotated[int, Field(ge=1, le=20)] = 5
    voltage_margin_pu: Annotated[float, Field(ge=0, le=0.2, allow_inf_nan=False)] = 0.002
    loading_margin_percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 1.0
    delivery_rate: Fraction = 1.0
    non_delivery_penalty_eur_per_kwh: Charge = 0.2
    requests: list[RequestConfig] = Field(default_factory=list)

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        known = flex_kinds()
        for kind in kinds:
            if kind not in known:
                raise ValueError(f"unknown asset kind {kind!r}; known: {', '.join(known)}")
        return kinds

    @model_validator(mode="after")
    def _reservation_with_long_term(self):
        if (self.lead_time == "long-term") != (self.reservation is not None):
            raise ValueError("a reservation window (from, to) goes with lead_time long-term and "
                             f"only with it; got lead_time {self.lead_time!r} and "
                             f"{'a' if self.reservation else 'no'} reservation")
        return self


class RedConfig(Strict):
    """Red phase: the DSO curtails / controls directly, compensating at a regulated price."""

    enabled: bool = True
    regulated_price_eur_per_kwh: Charge = 0.25


class CoordinationConfig(Strict):
    """TSO-DSO coordination (SmartNet): ``none``; ``local-first``: the DSO's market first, the
    leftover offers (price and capacity unchanged) go to the TSO's market, which may not use offers
    that harm the distribution grid; ``common``: one market for both buyers' needs."""

    scheme: Literal["none", "local-first", "common"] = "none"
    pricing: Literal["pay-as-bid", "pay-as-clear"] = "pay-as-bid"
    tso_requests: list[RequestConfig] = Field(default_factory=list)


class DsoConfig(Strict):
    """The DSO: traffic light, flexibility market, direct control, coordination with the TSO."""

    traffic_light: bool = True
    flexibility: FlexibilityConfig = Field(default_factory=lambda: FlexibilityConfig())
    red: RedConfig = RedConfig()
    coordination: CoordinationConfig = CoordinationConfig()


class AggregatorConfig(Strict):
    """An aggregator offering the flexibility of the participants it represents, keeping
    ``fee_share`` of their flexibility income."""

    id: Annotated[str, Field(min_length=1)]
    participants: list[str] = Field(default_factory=list)
    every: Count | None = None
    offset: Annotated[int, Field(ge=0)] = Field(
        default=0, description="with every: start at this participant (0, n, 2n, ... shifted)")
    fee_share: Fraction = 0.2

    def member_ids(self, ids: list[str]) -> list[str]:
        """The participants it represents: ``participants``, then every ``every``-th of
        ``ids`` from ``offset``."""
        chosen = list(self.participants)
        if self.every is not None:
            chosen += ids[self.offset::self.every]
        return chosen

    @model_validator(mode="after")
    def _represents_someone(self):
        if self.every is None and not self.participants:
            raise ValueError(f"aggregator {self.id!r} represents nobody: give participants "
                             "(a list of ids) or every (n: every n-th participant)")
        if self.every is None and "offset" in self.model_fields_set:
            raise ValueError("offset counts from the start of every: give every too")
        return self


class ScenarioConfig(Strict):
    """A whole scenario file."""

    name: str | None = None
    grid: str
    # Dates and date-times as YAML reads them or as text (ISO 8601).
    start: Annotated[dt.datetime, Lax] | Annotated[dt.date, Lax] | None = None
    days: PositiveFloat = 1.0
    resolution: Literal["5min", "15min", "30min", "60min"] = "15min"
    participants: Literal["from-grid"] | list[ParticipantConfig] = "from-grid"
    assets: list[AssetConfig] = Field(default_factory=list)
    scale: ScaleConfig = ScaleConfig()
    tariffs: TariffConfig = TariffConfig()
    grid_limits: GridLimitsConfig = GridLimitsConfig()
    default_profiles: DefaultProfilesConfig = DefaultProfilesConfig()
    market: MarketConfig = CommunityOptions()
    agents: AgentsConfig = AgentsConfig()
    forecast: ForecastConfig = ForecastConfig()
    settlement: SettlementConfig = SettlementConfig()
    dso: DsoConfig | None = None
    aggregators: list[AggregatorConfig] = Field(default_factory=list)
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0

    @field_validator("market", mode="before")
    @classmethod
    def _default_design(cls, value: Any) -> Any:
        if isinstance(value, dict) and "design" not in value:
            return {"design": "community", **value}
        return value

    @field_validator("start", mode="before")
    @classmethod
    def _start_is_a_date(cls, value: Any) -> Any:
        # pydantic would read a number as seconds since 1970 (UTC).
        if isinstance(value, bool | int | float):
            raise ValueError("start must be a date (2016-06-01) or a date-time in the grid's "
                             "local time (2016-06-01 06:00), not a number")
        return value

    @field_validator("resolution", mode="before")
    @classmethod
    def _resolution_alias(cls, value: Any) -> Any:
        return {"1h": "60min", "h": "60min", "60m": "60min", "15m": "15min", "5m": "5min"}.get(
            str(value).strip().lower(), value)

    @field_validator("participants")
    @classmethod
    def _unique_ids(cls, value):
        if isinstance(value, list):
            seen: set[str] = set()
            for i, participant in enumerate(value):
                if participant.id in seen:
                    raise ValueError(f"participant id {participant.id!r} (entry {i}) is not unique")
                seen.add(participant.id)
            if not value:
                raise ValueError("the participant list is empty")
        return value

    @field_validator("aggregators")
    @classmethod
    def _unique_aggregators(cls, value):
        ids = [agg.id for agg in value]
        twice = next((i for i, a in enumerate(ids) if a in ids[:i]), None)
        if twice is not None:
            raise ValueError(f"aggregator id {ids[twice]!r} (entry {twice}) is not unique")
        return value
