"""The grid endpoints of the market app (``/grid/...``): the DSO's traffic light, flexibility
requests, signed offers and activations (:mod:`lemgrid.service.grid`)."""

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lemgrid.ledger.records import SignedRecord
from lemgrid.service.grid import Grid
from lemgrid.service.operator import Market, Refused

Text = Annotated[str, Field(min_length=1, max_length=200)]


class FlexOfferPayload(BaseModel):
    """A flexibility offer: move one resource's power up (more net injection) or down at
    one interval, for a utilisation price."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "kind": "flex-offer", "log_id": "ab" * 32, "offer_id": "alice-f1",
        "participant": "alice", "meter": "alice", "interval": 52, "resource": "battery",
        "asset": 0, "direction": "up", "power_w": 2000, "price_meur_per_kwh": 80,
        "nonce": "n-1"}]})
    kind: Literal["flex-offer"]
    log_id: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    offer_id: Text
    participant: Text
    meter: Text
    interval: Annotated[StrictInt, Field(ge=0, le=10**9)]
    resource: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")]
    asset: Annotated[StrictInt, Field(ge=0, le=10**9)]
    direction: Literal["up", "down"]
    power_w: Annotated[StrictInt, Field(gt=0, le=10**9)]
    price_meur_per_kwh: Annotated[StrictInt, Field(ge=-10**7, le=10**7)]
    nonce: Text
    #: Minimum acceptance quantity [W]: activated at least this much or not at all.
    min_power_w: Annotated[StrictInt, Field(gt=0, le=10**9)] | None = None
    #: The marginal price as more is activated: [W, m€/kWh] points, linear between them, from
    #: [0, price_meur_per_kwh] to [power_w, the last W's price], prices not falling.
    price_points: Annotated[list[tuple[Annotated[StrictInt, Field(ge=0, le=10**9)],
                                       Annotated[StrictInt, Field(ge=-10**7, le=10**7)]]],
                            Field(min_length=2, max_length=100)] | None = None
    #: A long-term product's availability price [m€ per kW and hour reserved]: paid for the
    #: reservation window whether the DSO activates the offer or not (``lead_time: long-term``).
    availability_meur_per_kw_h: Annotated[StrictInt, Field(gt=0, le=10**7)] | None = None

class TsoRequestBody(BaseModel):
    """A TSO's request for flexibility at one interval, from every bus of the feeder."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "request_id": "tso-1", "interval": 72, "direction": "up", "power_w": 5000,
        "max_price_meur_per_kwh": 300, "service": "balancing"}]})
    request_id: Text
    interval: Annotated[StrictInt, Field(ge=0, le=10**9)]
    direction: Literal["up", "down"]
    power_w: Annotated[StrictInt, Field(gt=0, le=10**9)]
    max_price_meur_per_kwh: Annotated[StrictInt, Field(ge=0, le=10**7)]
    service: Literal["balancing", "CM", "VM", "LLR"] = "balancing"
    #: Bus names the request may be served from (its area); every bus of the feeder if omitted.
    buses: Annotated[list[Text], Field(min_length=1, max_length=10_000)] | None = None


class SignedFlexOffer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payload: FlexOfferPayload
    signer: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    sig: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


def add_routes(app, market: Market, role: Callable) -> None:
    """Add the grid endpoints; ``role(*allowed)`` is the app's authorisation dependency."""
    grid = market.grid

    def need_grid() -> Grid:
        if grid is None:
            raise Refused(404, "scenario: this market has no DSO (no dso block in its scenario)")
        return grid

    Grid_ = Annotated[dict, Depends(role("operator", "dso", "tso"))]
    Dso = Annotated[dict, Depends(role("operator", "dso"))]
    Provider = Annotated[dict, Depends(role("participant", "aggregator"))]
    Reader = Annotated[dict, Depends(role("operator", "dso", "participant", "aggregator"))]
    Anyone = Annotated[dict, Depends(role("operator", "dso", "tso", "participant",
                                          "aggregator"))]

    @app.get("/grid/lights", tags=["grid"])
    def grid_lights(_: Grid_) -> list[dict]:
        """The traffic light of every checked interval (state, reason, stage)."""
        return need_grid().lights()

    @app.get("/grid/requests", tags=["grid"])
    def grid_requests(_: Anyone) -> list[dict]:
        """Open flexibility requests: amber intervals whose day the DSO has not cleared."""
        return need_grid().requests()

    @app.post("/grid/offers", status_code=201, tags=["grid"])
    def grid_offer(body: SignedFlexOffer, who: Provider) -> dict:
        """Post a signed flexibility offer for a resource behind your (or a member's) meter."""
        return need_grid().submit_offer(who, SignedRecord(
            body.payload.model_dump(exclude_none=True), body.signer, body.sig))

    @app.get("/grid/offers", tags=["grid"])
    def grid_offers(who: Reader) -> list[dict]:
        """Offers: all for the DSO and the operator, your own otherwise."""
        return need_grid().offers(who)

    @app.post("/grid/days/{interval}/clear", tags=["grid"])
    def grid_clear(interval: int, _: Dso) -> dict:
        """The DSO clears the flexibility of the day containing ``interval``."""
        return need_grid().clear_day(interval)

    @app.post("/grid/days/{interval}/delivery", tags=["grid"])
    def grid_delivery(interval: int, _: Dso) -> dict:
        """The DSO settles the measured delivery of the cleared day containing ``interval``."""
        return need_grid().settle_delivery(interval)

    Tso = Annotated[dict, Depends(role("tso"))]

    @app.post("/grid/tso-requests", status_code=201, tags=["grid"])
    def grid_tso_request(body: TsoRequestBody, who: Tso) -> dict:
        """The TSO requests flexibility at an interval (cleared after or with the DSO's
        needs, by the scenario's ``dso.coordination.scheme``)."""
        return need_grid().submit_request(who, body.model_dump(exclude_none=True))

    @app.get("/grid/tso-requests", tags=["grid"])
    def grid_tso_requests(_: Grid_) -> list[dict]:
        """The TSO's requests (operator, DSO, TSO)."""
        return need_grid().tso_requests()

    @app.get("/grid/reservations", tags=["grid"])
    def grid_reservations(who: Reader) -> list[dict]:
        """Long-term reservations (availability paid per provider and owner for a day's
        window): all for the DSO and the operator, your own otherwise."""
        return need_grid().reservations(who)

    @app.get("/grid/activations", tags=["grid"])
    def grid_activations(who: Reader) -> list[dict]:
        """Activations: all for the DSO and the operator, your own otherwise."""
        return need_grid().activations(who)
