"""A DSO's day through the UMEI endpoints, by the example FSP client, against ``lemgrid simulate``.

Scenario: ``examples/systems/ipower.yaml`` (as ``test_service_grid``): two aggregators sell the
households' flexibility to the DSO. Each aggregator's client (``examples/umei_fsp_client.py``)
reads the flexibility zones, posts a baseline and a sell order for what the lab's aggregator
offers in ``lemgrid simulate`` (a spy on the lab's offer book, as ``test_service_grid``), the DSO
clears its day, and the clients read their trades, post meter readings and read their
settlement: activations, prices and flexibility payments must be the simulation's.

Every ``/umei`` response of this module is checked as it arrives against lemgrid's own models
(always) and against the UMEI specification's schemas (when the specification is at hand:
``tests/service/_umei.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from lemgrid.ledger.identity import public_key_from_hex, signature_valid
from lemgrid.ledger.verify import verify_ledger
from lemgrid.service.umei import UNSUPPORTED
from lemgrid.service.umei import models as m
from lemgrid.service.umei.auth import token_message
from lemgrid.service.umei.problems import TYPE_BASE

from ._umei import PREFIX, checker, fsp_client_module
from ._umei import problem as _problem
from .test_service_grid import IPOWER, _lab_offers, _world, lab  # noqa: F401 (lab: fixture)

# One worker runs the module: test_every_operation_was_checked reads what the others saw.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("umei-market")]

fsp = fsp_client_module()

#: lemgrid's own model of each (method, path, status): what the always-on check validates.
OWN: list[tuple[str, str, type[BaseModel]]] = [
    ("GET", "/Markets", m.MarketSearchResult), ("GET", "/Portfolios", m.PortfolioSearchResult),
    ("GET", "/Portfolios/{id}", m.Portfolio),
    ("GET", "/FlexibilityZones", m.FlexibilityZoneSearchResult),
    ("GET", "/FlexibilityZones/{id}", m.FlexibilityZone),
    ("GET", "/Orders", m.OrderSearchResult), ("GET", "/PublicOrders", m.OrderSearchResult),
    ("GET", "/Orders/{id}", m.Order), ("POST", "/Orders", m.Order),
    ("GET", "/Trades", m.TradeSearchResult),
    ("GET", "/BaselineIntervals", m.BaseLineIntervalSearchResult),
    ("GET", "/BaselineIntervals/{id}", m.BaselineInterval),
    ("POST", "/BaselineIntervals", m.BaselineInterval),
    ("GET", "/MeterReadings", m.MeterReadingSearchResult),
    ("GET", "/MeterReadings/{id}", m.MeterReading),
    ("POST", "/MeterReadings", m.MeterReading),
    ("POST", "/auth/challenge", m.Challenge), ("POST", "/auth/token", m.Token)]
_OWN = [(method, re.compile("^" + re.sub(r"\{id\}", "[^/]+", path) + "$"), path, model)
        for method, path, model in OWN]
SEEN: Counter = Counter()


def _own_model(method: str, path: str) -> tuple[str, type[BaseModel]]:
    bare = path.split("?")[0].removeprefix(PREFIX)
    hits = [(p, model) for mm, rx, p, model in _OWN if mm == method and rx.match(bare)]
    literal = [h for h in hits if "{" not in h[0]]
    assert hits, f"{method} {bare}: no lemgrid model for this success"
    return (literal or hits)[0]


def conform(response) -> None:  # noqa: ANN001 (an httpx response hook)
    """Check a /umei response: lemgrid's models always, the UMEI spec when at hand."""
    request = response.request
    if not request.url.path.startswith(PREFIX + "/"):
        return
    response.read()
    body = response.json() if response.content else None
    path = request.url.path
    if response.status_code < 300:
        template, model = _own_model(request.method, path)
        model.model_validate(body)
    else:
        assert response.headers["content-type"] == "application/problem+json", response.text
        problem = m.ProblemDetails.model_validate(body)
        assert problem.type.startswith(TYPE_BASE) and problem.status == str(
            response.status_code), body
        template = path
    SEEN[(request.method, template.removeprefix(PREFIX), response.status_code)] += 1
    spec = checker()
    if spec is not None and not path.startswith(PREFIX + "/auth/"):
        spec.check(request.method, path, response.status_code,
                   response.headers.get("content-type", ""), body)


class Day:
    """The run: the world, the lab, the FSP clients and what they posted."""

    world: Any
    day: Any
    lab_day: Any
    book: Any
    clients: dict
    plans: dict
    orders: dict
    trades: dict
    readings: dict
    delivery: dict


def _plan(book, day) -> dict[str, list[dict]]:
    """Per aggregator, the lab's offers as a UMEI plan (MW, EUR/MWh, UTC periods)."""
    from lemgrid.service.umei.units import Calendar

    calendar = Calendar(list(day.scenario.time_index.to_pydatetime()), float(day.scenario.dt_h))
    baselines = {}
    for k in range(len(book)):
        kind = str(book.kind[k])
        sign = 1 if kind in ("battery", "pv") else -1  # output vs draw -> UMEI's production +
        baselines[(kind, int(book.asset[k]), day.start + int(book.interval[k]))] = \
            sign * float(book.baseline_kw[k]) / 1000
    plans: dict[str, list[dict]] = {}
    for o in _lab_offers(book, day):
        start, _ = calendar.period(o["interval"])
        plans.setdefault(o["provider"], []).append({
            "portfolioId": f"{o['resource']}-{o['asset']}",
            "periodFrom": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "regulationType": "Up" if o["direction"] == "up" else "Down",
            "quantityMw": o["power_w"] / 1e6, "unitPriceEurPerMwh": o["price_meur_per_kwh"],
            "baselineMw": baselines[(o["resource"], o["asset"], o["interval"])]})
    return plans


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def offered(request, lab, tmp_path_factory):  # noqa: F811 (the lab fixture)
    """The world after every aggregator's client posted its baselines and sell orders."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('umei') / 'market.db'}"
    else:
        from lemgrid.service.pgtest import fresh_database

        url = fresh_database(request.getfixturevalue("postgres"), "umei_api")
    world, day = _world(url, IPOWER)
    world.http.event_hooks["response"].append(conform)
    run = Day()
    run.world, run.day, (run.lab_day, run.book) = world, day, lab
    run.plans = _plan(run.book, day)
    run.clients, run.orders = {}, {}
    for provider, plan in sorted(run.plans.items()):
        client = fsp.UmeiClient(world.http, world.clients[provider].key)
        client.login()
        run.clients[provider] = client
        run.orders[provider] = fsp.offer(client, plan)
    yield run
    world.http.close()
    world.http.app.state.market.engine.dispose()


@pytest.fixture(scope="module")
def cleared(offered):
    """After the DSO's clearing: trades followed, meter readings posted, the delivery settled
    on them by the DSO, the trades read again."""
    run = offered
    dso = run.world.clients["dso"]
    r = dso.request("POST", f"/grid/days/{run.day.start}/clear")
    assert r.status_code == 200, r.text
    run.trades, run.readings = {}, {}
    for provider, client in run.clients.items():
        run.trades[provider] = fsp.follow_trades(client, run.orders[provider])
        run.readings[provider] = fsp.deliver(client, run.trades[provider])
    r = dso.request("POST", f"/grid/days/{run.day.start}/delivery")
    assert r.status_code == 200, r.text
    run.delivery = r.json()
    for provider, client in run.clients.items():
        run.trades[provider] = fsp.follow_trades(client, run.orders[provider])
    return run


# -- before the DSO's clearing -----------------------------------------------------------------
def test_every_planned_offer_became_an_order_in_a_zone(offered):
    run = offered
    zones = {z["periodFrom"] for z in next(iter(run.clients.values())).search(
        "/FlexibilityZones")}
    assert len(zones) == 4  # the four amber intervals of the evening and night peaks
    for provider, plan in run.plans.items():
        assert len(run.orders[provider]) == sum(p["periodFrom"] in zones for p in plan) > 0
        assert all(o["status"] == "Active" and o["side"] == "Sell" for o in run.orders[provider])
    offers = run.world.clients["dso"].get("/grid/offers").json()
    assert len(offers) == sum(map(len, run.orders.values()))  # the DSO's book: the same offers


def test_bad_orders_are_problems_naming_the_field(offered):
    run = offered
    provider = max(run.orders, key=lambda p: len(run.orders[p]))
    client, good = run.clients[provider], run.orders[provider][0]
    base = {k: good[k] for k in ("marketId", "portfolioId", "side", "regulationType",
                                 "periodFrom", "periodTo", "pricePoints")}
    market = run.world.http.app.state.market
    before = market.ledger.size

    def post(**change: Any):
        return client.call("POST", "/Orders", {**{k: v for k, v in base.items()
                                                  if k not in change}, **{
            k: v for k, v in change.items() if v is not None}})

    _problem(post(periodTo="2016-01-19T23:59:00Z"), 400, "InconsistentPeriods", "periodTo")
    _problem(post(periodFrom="2016-01-18T23:07:00Z"), 400, "InconsistentPeriods", "periodFrom")
    _problem(post(gridNodeId="LV2.101 Bus 0-nowhere"), 400, "InvalidGridNode", "gridNodeId")
    _problem(post(marketId="nord-pool"), 400, "InvalidMarket", "marketId")
    _problem(post(portfolioId="ev-100000"), 400, "InvalidPortfolio", "portfolioId")
    _problem(post(side="Buy"), 400, "InvalidOrder", "side")
    # interpolated: from quantity 0, quantities rising, a sell order's prices not falling
    _problem(post(pricePoints=[{"quantity": 0.001, "unitPrice": 10},
                               {"quantity": 0.002, "unitPrice": 20}]),
             400, "InvalidOrder", "pricePoints[0].quantity")
    _problem(post(pricePoints=[{"quantity": 0, "unitPrice": 10},
                               {"quantity": 0.001, "unitPrice": 20},
                               {"quantity": 0.001, "unitPrice": 30}]),
             400, "InvalidOrder", "pricePoints[2].quantity")
    _problem(post(pricePoints=[{"quantity": 0, "unitPrice": 20},
                               {"quantity": 0.001, "unitPrice": 10}]),
             400, "InvalidOrder", "pricePoints[1].unitPrice")
    _problem(post(pricePoints=[{"quantity": 1.0, "unitPrice": 30}]), 400, "InvalidOrder",
             "pricePoints[0].quantity")  # more than the resource can move
    _problem(post(pricePoints=[{"quantity": 0.001, "unitPrice": 30.5}]), 400, "InvalidOrder",
             "pricePoints[0].unitPrice")
    _problem(post(minimumAcceptanceQuantity=10.0), 400, "InvalidOrder",
             "minimumAcceptanceQuantity")  # more than the order's quantity
    _problem(post(minimumAcceptanceQuantity=-0.001), 400, "InvalidOrder",
             "minimumAcceptanceQuantity")
    _problem(post(regulationType="Sideways"), 400, "ValidationError", "regulationType")
    r = client.call("POST", "/Orders", {k: v for k, v in base.items() if k != "side"})
    _problem(r, 400, "ValidationError", "side")
    green = "2016-01-19T10:00:00Z"  # midday: the traffic light is green, no zone
    _problem(post(periodFrom=green, periodTo="2016-01-19T10:15:00Z"), 400,
             "InvalidFlexibilityZone", "periodFrom")
    _problem(client.call("POST", "/Orders", {**base, "id": good["id"]}), 409, "Conflict", "id")
    assert market.ledger.size == before  # nothing refused reached the ledger


def test_one_fsp_cannot_read_or_change_anothers(offered):
    run = offered
    (a, ca), (b, cb) = sorted(run.clients.items())[:2]
    theirs = run.orders[b][0]
    # orders: not listed, not readable, not postable on the other's portfolio
    assert {o["id"] for o in ca.search("/Orders")} == {o["id"] for o in run.orders[a]}
    _problem(ca.call("GET", f"/Orders/{theirs['id']}"), 403, "Forbidden", "id")
    r = ca.call("POST", "/Orders", {k: theirs[k] for k in (
        "marketId", "portfolioId", "side", "regulationType", "periodFrom", "periodTo",
        "pricePoints")})
    _problem(r, 403, "Forbidden", "portfolioId")
    _problem(ca.call("GET", "/Orders", ownerOrganizationId=b), 403, "Forbidden",
             "ownerOrganizationId")
    # portfolios: the other's are neither listed nor readable
    mine = {p["id"] for p in ca.search("/Portfolios")}
    assert theirs["portfolioId"] not in mine and mine
    _problem(ca.call("GET", f"/Portfolios/{theirs['portfolioId']}"), 403, "Forbidden", "id")
    # baselines: not listed, not readable, not postable
    their_baselines = list(cb.search("/BaselineIntervals"))
    assert their_baselines
    assert not {x["id"] for x in ca.search("/BaselineIntervals")} & {
        x["id"] for x in their_baselines}
    _problem(ca.call("GET", f"/BaselineIntervals/{their_baselines[0]['id']}"), 403,
             "Forbidden", "id")
    r = ca.call("POST", "/BaselineIntervals", {
        "portfolioId": theirs["portfolioId"], "periodFrom": theirs["periodFrom"],
        "periodTo": theirs["periodTo"], "quantity": 0.001, "quantityType": "ActivePower"})
    _problem(r, 403, "Forbidden", "portfolioId")
    r = ca.call("POST", "/MeterReadings", {
        "portfolioId": theirs["portfolioId"], "periodFrom": theirs["periodFrom"],
        "periodTo": theirs["periodTo"], "quantity": 0.001, "quantityType": "ActivePower"})
    _problem(r, 403, "Forbidden", "portfolioId")
    # the public book: every order, none with its owner, id or portfolio
    public = list(ca.search("/PublicOrders"))
    assert len(public) == sum(map(len, run.orders.values()))
    assert not any(k in o for o in public for k in ("id", "ownerOrganizationId", "portfolioId"))
    # the DSO sees every order
    dso = fsp.UmeiClient(run.world.http, run.world.clients["dso"].key)
    dso.login()
    assert len(list(dso.search("/Orders"))) == len(public)


def test_unauthenticated_calls_get_401_problem_details(offered):
    run = offered
    client = next(iter(run.clients.values()))
    anonymous = fsp.UmeiClient(run.world.http, client.key)  # no token
    forged = fsp.UmeiClient(run.world.http, client.key)
    forged.token = "not-a-token"
    for who in (anonymous, forged):
        for method, path in [("GET", "/Markets"), ("GET", "/Portfolios"),
                             ("GET", "/Portfolios/ev-0"), ("GET", "/FlexibilityZones"),
                             ("GET", "/Orders"), ("POST", "/Orders"), ("GET", "/Orders/x"),
                             ("GET", "/PublicOrders"), ("GET", "/Trades"),
                             ("GET", "/BaselineIntervals"), ("POST", "/BaselineIntervals"),
                             ("GET", "/MeterReadings"), ("POST", "/MeterReadings"),
                             ("PUT", "/Orders/x"), ("DELETE", "/MeterReadings")]:
            r = who.call(method, path, {} if method in ("POST", "PUT") else None)
            body = _problem(r, 401, "Unauthenticated")
            assert body["validation-errors"][0]["property"] == "Authorization"
            assert r.headers["www-authenticate"].startswith("Bearer")
    # a challenge signed by another key gives no token
    c = client.http.post(f"{PREFIX}/auth/challenge", json={"keyId": client.key_id()}).json()
    other = run.world.clients["dso"].key
    r = client.http.post(f"{PREFIX}/auth/token", json={
        "keyId": client.key_id(), "challenge": c["challenge"],
        "signature": other.sign(bytes.fromhex(c["sign"])).hex()})
    _problem(r, 401, "Unauthenticated", "signature")
    r = client.http.post(f"{PREFIX}/auth/challenge", json={"keyId": "ab" * 16})
    _problem(r, 401, "Unauthenticated", "keyId")


def test_unsupported_endpoints_answer_endpoint_not_supported(offered):
    client = next(iter(offered.clients.values()))
    for method, path in UNSUPPORTED:
        r = client.call(method, path.replace("{id}", "x"), {} if method != "DELETE" else None)
        body = _problem(r, 405, "EndpointNotSupported")
        assert method in body["detail"] and "not supported" in body["detail"]


# -- after the DSO's clearing ------------------------------------------------------------------
def test_umei_day_equals_lemgrid_simulate_to_the_cent(cleared):
    run = cleared
    rec = run.lab_day.records
    lab_acts = np.flatnonzero(rec.kind != "reservation")
    trades = [t for ts in run.trades.values() for t in ts]
    assert len(trades) == len(lab_acts) > 0

    def key(interval, resource, direction):
        return (int(interval), resource, direction)

    server: dict = {}
    for t in trades:
        a = t["lemgrid"]
        server[key(a["interval"], t["portfolioId"].replace("-", ":"),
                   t["regulationType"].lower())] = t
    simulated = {key(run.day.start + rec.t[j], str(rec.resource[j]), str(rec.direction[j])): j
                 for j in lab_acts}
    assert server.keys() == simulated.keys()  # the same activations
    worst_kw = worst_price = 0.0
    for k, j in simulated.items():
        t = server[k]
        worst_kw = max(worst_kw, abs(t["lemgrid"]["powerW"] / 1000 - float(rec.kw[j])))
        # the price paid [EUR/MWh], to the cent
        worst_price = max(worst_price,
                          abs(t["unitPrice"] - float(rec.price_eur_per_kwh[j]) * 1000))
        # the payment, to the cent
        assert round(t["lemgrid"]["utilisationEur"], 2) == round(float(rec.utilisation_eur[j]),
                                                                  2), (k, t)
        assert t["lemgrid"]["penaltyEur"] == pytest.approx(float(rec.penalty_eur[j]), abs=5e-3)
    print(f"worst activation gap {worst_kw * 1000:.1f} W, price gap {worst_price:.4f} EUR/MWh")
    # whole-W offers move the LP's split between resources by a few tens of W (as over
    # /grid/offers, test_service_grid), which leaves every payment the same to the cent
    assert worst_kw < 0.05, worst_kw
    assert worst_price < 5e-3, worst_price  # to the cent of EUR/MWh
    for provider, ts in run.trades.items():
        paid = fsp.settlement(ts)["payment_eur"]
        lab_paid = float(sum(rec.utilisation_eur[j] for j in lab_acts
                             if str(rec.provider[j]) == provider))
        assert round(paid, 2) == round(lab_paid, 2), (provider, paid, lab_paid)
    # every order is completed: filled where activated whole, killed where in part (the rest
    # ended with the day), expired where not at all
    seen = Counter()
    for provider, client in run.clients.items():
        traded_mw = Counter()
        for t in run.trades[provider]:
            traded_mw[t["orderId"]] += t["quantity"]
        for o in client.search("/Orders"):
            assert o["status"] == "Completed"
            mw, ordered = traded_mw.get(o["id"], 0.0), o["pricePoints"][0]["quantity"]
            assert o["completionType"] == ("Expired" if mw == 0 else "Filled"
                                           if mw >= ordered - 2e-6 else "Killed"), (o, mw)
            seen[o["completionType"]] += 1
    assert seen["Filled"] + seen["Killed"] > 0 and seen["Expired"] > 0, seen
    # the DSO settled the delivery on the readings: every activation measured, none short
    assert run.delivery["n_measured"] == len(trades) and run.delivery["n_short"] == 0
    assert run.delivery["penalty_eur"] == 0


def test_trades_and_readings_are_each_fsps_own(cleared):
    run = cleared
    dso = fsp.UmeiClient(run.world.http, run.world.clients["dso"].key)
    dso.login()
    every = list(dso.search("/Trades"))
    assert len(every) == sum(map(len, run.trades.values()))
    assert {t["side"] for t in every} == {"Buy"}
    for provider, ts in run.trades.items():
        assert {t["side"] for t in ts} <= {"Sell"}
        assert all(t["ownerOrganizationId"] == provider for t in ts)
    (a, ca), (b, cb) = sorted(run.clients.items())[:2]
    assert run.trades[a] and not run.trades[b]  # the batteries (0.30 EUR/kWh) are not needed
    zone = next(z for z in cb.search("/FlexibilityZones") if z["portfolioIds"])
    theirs = [cb.ok("POST", "/MeterReadings", {
        "portfolioId": zone["portfolioIds"][0], "periodFrom": zone["periodFrom"],
        "periodTo": zone["periodTo"], "quantity": -0.002, "quantityType": "ActivePower"})]
    run.readings[b] = [*run.readings[b], *theirs]  # in the ledger too, whichever test checks
    mine = run.readings[a]
    assert mine and theirs[0]["quantity"] == -0.002 and theirs[0]["lemgrid"]["powerW"] == -2000
    assert {x["id"] for x in ca.search("/MeterReadings")} == {x["id"] for x in mine}
    # the client delivered: each reading is its baseline moved by the activations, so no
    # shortfall beyond UMEI's 0.001 MW resolution of baselines and readings
    for x in ca.search("/MeterReadings"):
        assert x["lemgrid"]["activatedW"] != 0 and "baselineW" in x["lemgrid"], x
        assert x["lemgrid"]["shortfallW"] == 0, x
    _problem(ca.call("GET", f"/MeterReadings/{theirs[0]['id']}"), 403, "Forbidden", "id")
    assert cb.ok("GET", f"/MeterReadings/{theirs[0]['id']}")["id"] == theirs[0]["id"]
    # search parameters and paging
    t0 = run.trades[a][0]
    hits = list(ca.search("/Trades", periodFrom=t0["periodFrom"]))
    assert hits and all(t["periodFrom"] == t0["periodFrom"] for t in hits)
    later = ca.ok("GET", "/Trades", **{"periodFrom_gt": t0["periodFrom"]})
    assert all(t["periodFrom"] > t0["periodFrom"] for t in later["items"])
    page = ca.ok("GET", "/Trades", take=1, skip=1)
    assert page["numberOfHits"] == len(run.trades[a]) and len(page["items"]) == 1
    assert page["links"][0]["rel"] == "next"
    _problem(ca.call("GET", "/Trades", orderBy="colour"), 400, "InvalidQuery", "orderBy")
    _problem(ca.call("GET", "/Trades", periodFrom="yesterday"), 400, "InvalidQuery",
             "periodFrom")


def test_every_accepted_request_is_in_the_ledger(cleared):
    run = cleared
    market = run.world.http.app.state.market
    entries = list(market.ledger.entries())
    kinds = Counter(e["payload"]["kind"] for e in entries)
    n_orders = sum(map(len, run.orders.values()))
    n_readings = sum(map(len, run.readings.values()))  # (one of the other FSP's, once posted)
    requests = [e["payload"] for e in entries if e["payload"]["kind"] == "umei-request"]
    by_resource = Counter(p["resource"] for p in requests)
    assert by_resource["Order"] == n_orders
    assert by_resource["MeterReading"] == n_readings
    assert by_resource["BaselineInterval"] == len(
        {(o["portfolioId"], o["periodFrom"]) for os_ in run.orders.values() for o in os_})
    # each request names a token whose umei-token record a registered key signed
    tokens = {e["payload"]["token_id"]: e["payload"] for e in entries
              if e["payload"]["kind"] == "umei-token"}
    assert kinds["umei-token"] == len(tokens) >= len(run.clients)
    for p in requests:
        t = tokens[p["token_id"]]
        assert t["participant"] == p["participant"]
        who = market.identity_by_key(t["key_id"])
        assert signature_valid(public_key_from_hex(who["public_key"]), t["challenge_sig"],
                               token_message(t["challenge"], market.log_id))
    # the orders' ids in the ledger rows match the answers
    seqs = {o["lemgrid"]["ledgerSeq"] for os_ in run.orders.values() for o in os_}
    assert {e["seq"] for e in entries if e["payload"]["kind"] == "umei-request"
            and e["payload"]["resource"] == "Order"} == seqs
    assert kinds["flex-activation"] == sum(map(len, run.trades.values()))
    report = verify_ledger(run.world.url)
    assert report.ok, report.problem


def test_every_operation_was_checked(cleared):
    """The run above touched every supported UMEI operation, each success and problem
    validated on arrival (against the specification too, when it is at hand)."""
    statuses = {s for (_, _, s) in SEEN}
    assert {200, 201, 400, 401, 403, 405, 409} <= statuses, statuses
    successes = {(mm, p) for (mm, p, s) in SEEN if s < 300}
    expected = {(mm, p) for mm, p, _ in OWN} - {("GET", "/Portfolios/{id}"),
                                                ("GET", "/FlexibilityZones/{id}"),
                                                ("GET", "/BaselineIntervals/{id}"),
                                                ("GET", "/Orders/{id}")}
    assert expected <= successes, expected - successes
    spec = checker()
    if spec is not None:
        assert len(spec.checked) >= 30, spec.checked
