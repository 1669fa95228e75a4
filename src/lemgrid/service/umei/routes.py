"""The ``/umei`` endpoints of ``lemgrid serve`` (UMEI 1.0 paths under the ``/umei`` prefix).

Bodies are read and validated here rather than by FastAPI's body parameters, so that a bad body
is UMEI's 400 problem details naming the property rather than lemgrid's 422.
"""


import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from lemgrid.service.umei import auth
from lemgrid.service.umei import models as m
from lemgrid.service.umei.flex import FSP_ROLES, Umei, page
from lemgrid.service.umei.problems import Problem, from_pydantic, response

PREFIX = "/umei"

#: UMEI endpoints lemgrid does not support (answered 405 EndpointNotSupported) and why.
UNSUPPORTED: dict[tuple[str, str], str] = {
    **{(method, "/Portfolios"): "portfolios are the scenario's flexible resources" for method
       in ("POST",)},
    **{(method, "/Portfolios/{id}"): "portfolios are the scenario's flexible resources"
       for method in ("PUT", "PATCH", "DELETE")},
    **{(method, "/FlexibilityZones"): "zones are the DSO's AC traffic light"
       for method in ("POST",)},
    **{(method, "/FlexibilityZones/{id}"): "zones are the DSO's AC traffic light"
       for method in ("PUT", "PATCH", "DELETE")},
    **{(method, "/Orders/{id}"): "an accepted order is a ledger record: it is not changed or "
                                 "withdrawn" for method in ("PUT", "PATCH", "DELETE")},
    **{(method, "/BaselineIntervals/{id}"): "an accepted baseline is a ledger record"
       for method in ("PUT", "PATCH", "DELETE")},
    ("POST", "/BaselineIntervals/import"): "post baseline intervals one by one",
    **{(method, "/MeterReadings/{id}"): "an accepted meter reading is a ledger record"
       for method in ("PUT", "PATCH", "DELETE")},
    ("DELETE", "/MeterReadings"): "an accepted meter reading is a ledger record",
    ("POST", "/MeterReadings/create-multiple"): "post meter readings one by one",
    ("POST", "/MeterReadings/import"): "post meter readings one by one",
}

ENUMS = {"status": m.Status, "completionType": m.CompletionType, "side": m.Side,
         "regulationType": m.RegulationType}
PERIOD_FILTERS = [f"{name}{op}" for name in ("periodFrom", "periodTo")
                  for op in ("", ".lt", ".lte", ".gt", ".gte")]


def _timestamp(name: str, text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise Problem("InvalidQuery", f"{name}: {text!r} is not an ISO 8601 timestamp", name,
                      text) from None
    if value.tzinfo is None:
        raise Problem("InvalidQuery", f"{name}: {text!r} has no time zone (send 'Z')", name,
                      text)
    return value


def _integer(name: str, text: str | None, low: int, high: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise Problem("InvalidQuery", f"{name}: {text!r} is not an integer", name,
                      text) from None
    if not low <= value <= high:
        raise Problem("InvalidQuery", f"{name}: {value} is outside [{low}, {high}]", name, text)
    return value


def search(request: Request, items: Sequence[BaseModel], filters: Sequence[str],
           result: type[m.SearchResult]) -> JSONResponse:
    """Filter, order and page ``items`` by the query (UMEI's search parameters)."""
    q = request.query_params
    rows = [(x, x.model_dump(by_alias=True)) for x in items]
    for name in filters:
        text = q.get(name)
        if text is None:
            continue
        if name in ENUMS and text not in ENUMS[name].__args__:  # type: ignore[attr-defined]
            raise Problem("InvalidQuery", f"{name}: {text!r} is not one of "
                          f"{', '.join(ENUMS[name].__args__)}", name, text)  # type: ignore
        if name in PERIOD_FILTERS:
            field, _, op = name.partition(".")
            when = _timestamp(name, text)
            test: Callable[[Any], bool] = {
                "": lambda v: v == when, "lt": lambda v: v < when, "lte": lambda v: v <= when,
                "gt": lambda v: v > when, "gte": lambda v: v >= when}[op]
            rows = [r for r in rows if r[1].get(field) is not None and test(r[1][field])]
        else:
            rows = [r for r in rows if r[1].get(name) == text]
    for key in reversed(q.getlist("orderBy")):
        field, _, direction = key.strip().partition(" ")
        if field.startswith("-"):
            field, direction = field[1:], "desc"
        sortable = set(filters) - set(PERIOD_FILTERS) | {"periodFrom", "periodTo", "id"}
        if field not in sortable or direction.lower() not in ("", "asc", "desc"):
            raise Problem("InvalidQuery", f"orderBy: {key!r}; order by one of "
                          f"{', '.join(sorted(sortable))}, optionally followed by ' desc'",
                          "orderBy", key)
        rows.sort(key=lambda r: (r[1].get(field) is None, str(r[1].get(field))),
                  reverse=direction.lower() == "desc")
    take = _integer("take", q.get("take"), 0, 10_000)
    skip = _integer("skip", q.get("skip"), 0, 2**31 - 1)
    chosen, hits = page([r[0] for r in rows], take if take is not None else 1000, skip)
    links = []
    if (skip or 0) + len(chosen) < hits:
        query = dict(q.multi_items())
        query["skip"] = str((skip or 0) + len(chosen))
        links.append(m.Link(rel="next", href=f"{request.url.path}?{urlencode(query)}",
                            method="GET"))
    body = result(number_of_hits=hits, items=chosen, links=links)
    return JSONResponse(body.model_dump(by_alias=True, exclude_none=True, mode="json"))


def add_routes(app: FastAPI, market: Any) -> None:
    """Add the ``/umei`` endpoints and their problem-details error handler to the app."""
    umei = Umei(market)
    router = APIRouter(prefix=PREFIX, tags=["umei"])

    async def _problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return response(request, exc)

    app.add_exception_handler(Problem, _problem)

    async def caller(request: Request) -> tuple[dict, str]:
        return auth.bearer(market, request.headers.get("authorization"))

    Caller = Annotated[tuple[dict, str], Depends(caller)]

    async def body_of(request: Request, model: type[BaseModel]) -> tuple[bytes, Any]:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Problem("ValidationError", "body: not a JSON document", "body") from None
        try:
            return raw, model.model_validate(data)
        except PydanticError as exc:
            raise from_pydantic(exc) from None

    def dumped(x: BaseModel, status: int = 200) -> JSONResponse:
        return JSONResponse(x.model_dump(by_alias=True, exclude_none=True, mode="json"),
                            status_code=status)

    # -- authentication (lemgrid's) --------------------------------------------------------------
    @router.post("/auth/challenge", status_code=201)
    async def challenge(request: Request) -> JSONResponse:
        """A challenge for an approved key to sign (``auth.token_message``)."""
        _, body = await body_of(request, m.ChallengeIn)
        c = auth.challenge(market, body.key_id)
        return dumped(m.Challenge(challenge=c["challenge"], sign=c["sign"], log_id=c["log_id"],
                                  expires_at=dt.datetime.fromtimestamp(
                                      c["expires_ms"] / 1000, dt.timezone.utc)), 201)

    @router.post("/auth/token", status_code=201)
    async def token(request: Request) -> JSONResponse:
        """A bearer token for a signed challenge (its ``umei-token`` ledger record)."""
        _, body = await body_of(request, m.TokenIn)
        return dumped(m.Token(**auth.issue(market, body.key_id, body.challenge,
                                           body.signature)), 201)

    # -- reading -----------------------------------------------------------------------------------
    @router.get("/Markets")
    def markets(request: Request, _: Caller) -> JSONResponse:
        return search(request, umei.markets(), [], m.MarketSearchResult)

    @router.get("/Portfolios")
    def portfolios(request: Request, who: Caller) -> JSONResponse:
        items = umei.portfolios(who[0])
        zone = request.query_params.get("flexibilityZoneId")
        if zone is not None:
            in_zone = {p for z in umei.zones(who[0]) if z.id == zone for p in z.portfolio_ids}
            items = [p for p in items if p.id in in_zone]
        wanted = request.query_params.get("portfolioId")
        if wanted is not None:
            items = [p for p in items if p.id == wanted]
        return search(request, items, ["gridNodeId", "status"], m.PortfolioSearchResult)

    @router.get("/Portfolios/{id}")
    def portfolio(id: str, who: Caller) -> JSONResponse:  # noqa: A002 (UMEI's name)
        umei.portfolio(who[0], id)
        return dumped(next(p for p in umei.portfolios(who[0]) if p.id == id))

    @router.get("/FlexibilityZones")
    def zones(request: Request, who: Caller) -> JSONResponse:
        return search(request, umei.zones(who[0]), PERIOD_FILTERS,
                      m.FlexibilityZoneSearchResult)

    @router.get("/FlexibilityZones/{id}")
    def zone(id: str, who: Caller) -> JSONResponse:  # noqa: A002
        for z in umei.zones(who[0]):
            if z.id == id:
                return dumped(z)
        raise Problem("ResourceNotFound", f"id: no flexibility zone {id!r}", "id", id)

    order_filters = ["gridNodeId", "flexibilityZoneId", "marketId", "portfolioId",
                     "ownerOrganizationId", "status", "completionType", "side",
                     "regulationType", *PERIOD_FILTERS]

    @router.get("/Orders")
    def orders(request: Request, who: Caller) -> JSONResponse:
        owner = request.query_params.get("ownerOrganizationId")
        if owner is not None and who[0]["role"] in FSP_ROLES and owner != who[0]["participant"]:
            raise Problem("Forbidden", f"ownerOrganizationId: you may search only your own "
                          f"orders, not {owner!r}'s", "ownerOrganizationId", owner)
        return search(request, umei.orders(who[0]), order_filters, m.OrderSearchResult)

    @router.get("/PublicOrders")
    def public_orders(request: Request, _: Caller) -> JSONResponse:
        if request.query_params.get("ownerOrganizationId") is not None:
            raise Problem("InvalidQuery", "ownerOrganizationId: the public book is anonymous; "
                          "this search parameter is not supported here", "ownerOrganizationId")
        if request.query_params.get("portfolioId") is not None:
            raise Problem("InvalidQuery", "portfolioId: the public book is anonymous; this "
                          "search parameter is not supported here", "portfolioId")
        return search(request, umei.public_orders(), order_filters, m.OrderSearchResult)

    @router.get("/Orders/{id}")
    def order(id: str, who: Caller) -> JSONResponse:  # noqa: A002
        return JSONResponse(umei.order(who[0], id))

    @router.get("/Trades")
    def trades(request: Request, who: Caller) -> JSONResponse:
        return search(request, umei.trades(who[0]),
                      ["orderId", "gridNodeId", "flexibilityZoneId", "marketId", "portfolioId",
                       "status", "side", "regulationType", *PERIOD_FILTERS],
                      m.TradeSearchResult)

    series_filters = ["portfolioId", "gridNodeId", "status", *PERIOD_FILTERS]

    def _with_node(items: list[m.BaselineInterval], request: Request) -> list:
        node = request.query_params.get("gridNodeId")
        if node is None:
            return items
        portfolios = umei.all_portfolios()
        return [x for x in items if portfolios[x.portfolio_id]["grid_node_id"] == node]

    @router.get("/BaselineIntervals")
    def baselines(request: Request, who: Caller) -> JSONResponse:
        return search(request, _with_node(umei.baselines(who[0]), request),
                      [f for f in series_filters if f != "gridNodeId"],
                      m.BaseLineIntervalSearchResult)

    @router.get("/BaselineIntervals/{id}")
    def baseline(id: str, who: Caller) -> JSONResponse:  # noqa: A002
        return JSONResponse(umei.baseline(who[0], id))

    @router.get("/MeterReadings")
    def readings(request: Request, who: Caller) -> JSONResponse:
        return search(request, _with_node(umei.readings(who[0]), request),
                      [f for f in series_filters if f != "gridNodeId"],
                      m.MeterReadingSearchResult)

    @router.get("/MeterReadings/{id}")
    def reading(id: str, who: Caller) -> JSONResponse:  # noqa: A002
        return JSONResponse(umei.reading(who[0], id))

    # -- writing (each accepted write: a umei-request ledger record) -----------------------------
    @router.post("/Orders", status_code=201)
    async def create_order(request: Request, who: Caller) -> JSONResponse:
        raw, body = await body_of(request, m.OrderIn)
        return JSONResponse(umei.create_order(*who, request.url.path, raw, body),
                            status_code=201)

    @router.post("/BaselineIntervals", status_code=201)
    async def create_baseline(request: Request, who: Caller) -> JSONResponse:
        raw, body = await body_of(request, m.BaselineIntervalIn)
        return JSONResponse(umei.create_baseline(*who, request.url.path, raw, body),
                            status_code=201)

    @router.post("/MeterReadings", status_code=201)
    async def create_reading(request: Request, who: Caller) -> JSONResponse:
        raw, body = await body_of(request, m.MeterReadingIn)
        return JSONResponse(umei.create_reading(*who, request.url.path, raw, body),
                            status_code=201)

    # -- what lemgrid does not support -------------------------------------------------------------
    def refusal(method: str, path: str, why: str) -> Callable:
        def refuse(_: Caller) -> None:
            raise Problem("EndpointNotSupported", f"{method} {PREFIX}{path}: not supported by "
                          f"lemgrid ({why}; docs/umei.md)")
        return refuse

    for (method, path), why in UNSUPPORTED.items():
        router.add_api_route(path, refusal(method, path, why), methods=[method],
                             status_code=405, name=f"unsupported {method} {path}")

    app.include_router(router)
