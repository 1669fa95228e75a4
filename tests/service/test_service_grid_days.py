"""The DSO over the API on every day of a scenario's calendar, and the TSO's requests, against
``lemgrid simulate`` in-process.

Scenario: ``examples/systems/ipower.yaml`` over two days (the evening peak overloads the feeder
on both). The lab's second day starts where its DSO's first day left the batteries; the server's
must too, so it validates a day only once the days before it are cleared (409 before), and
after a restart it clears the stored days again to get there. The TSO's request is posted over
the API by a TSO identity; the lab gets the same request as ``dso.coordination.tso_requests``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import lemgrid.dso.operator as dso_operator
from lemgrid.ledger.verify import verify_ledger
from lemgrid.scenario import load_scenario
from lemgrid.service import engine
from lemgrid.sim.runner import simulate

from .conftest import join_grid_parties, make_world

ROOT = Path(__file__).resolve().parents[2]
IPOWER = ROOT / "examples" / "systems" / "ipower.yaml"
INTERVAL_MS = 900_000
#: The TSO's request: 4 kW more injection at 21:00-22:00 each day.
TSO_WINDOW = ("21:00", "22:00")
TSO_KW = 4.0
TSO_MAX_PRICE = 0.5


def _scenario(tmp_path: Path, name: str, coordination: str = "") -> Path:
    text = IPOWER.read_text().replace("days: 1\n", "days: 2\n")
    text = text.replace("  red: {enabled: false}\n", f"  red: {{enabled: false}}\n{coordination}")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _lab(path: Path, window: tuple[str, str] | None = None, curve=None):
    """``lemgrid simulate`` with the providers offering what the server's providers post: on
    each day, the offers the lab derives from the owners' schedules (all the resource can do)
    at the day's amber intervals (and those of the clock ``window``: the TSO's, or the DSO's
    reservation window), in the ledger's units (W rounded down, m€/kWh, m€/kW/h), as a fixed
    book (``DsoOperator.offer_book``, the server's own offer model);
    ``curve(power_w, price_meur_per_kwh)``: each offer's price curve ([W, m€/kWh] points) or
    None.

    Returns the DSO's days and, per day, the offers as API offers."""
    from dataclasses import replace

    from lemgrid.dso.flexibility import price_curves
    from lemgrid.dso.operator import describe_violations

    days, posted = [], []
    offers, process = dso_operator.DsoOperator._offers, dso_operator.DsoOperator.process

    def spy_process(self, session, plan):
        everything = offers(self, session, plan, session.pv_kw, None)
        _, flow = self._flow(session, plan, session.load_kw, session.pv_kw)
        wanted = describe_violations(self.network, flow, self.limits)[0]
        if window is not None:
            clock = session.scenario.time_index[session.start:session.stop].strftime("%H:%M")
            wanted = wanted | ((clock >= window[0]) & (clock < window[1]))
        power_w = np.floor(everything.kw * 1000)
        keep = wanted[everything.interval] & (power_w > 0)
        book = everything.take(keep)
        n = len(book)
        book = replace(book, kw=power_w[keep] / 1000,
                       price_eur_per_kwh=np.round(book.price_eur_per_kwh * 1000) / 1000,
                       baseline_kw=np.round(book.baseline_kw * 1000) / 1000,
                       availability_eur_per_kw_h=np.round(
                           book.availability_eur_per_kw_h * 1000) / 1000,
                       window_start=np.zeros(n, int),
                       window_stop=np.full(n, session.stop - session.start))
        points = [None if curve is None else curve(int(round(book.kw[k] * 1000)),
                                                   int(round(book.price_eur_per_kwh[k] * 1000)))
                  for k in range(n)]
        book = replace(book, price_curve=price_curves(
            [None if c is None else np.asarray(c, float) / 1000 for c in points]))
        ids = session.scenario.participants.ids
        posted.append([{
            "provider": str(book.provider[k]), "meter": str(ids[book.participant[k]]),
            "offer_id": f"f{session.start}-{k}", "interval": session.start + int(book.interval[k]),
            "resource": str(book.kind[k]), "asset": int(book.asset[k]),
            "direction": "up" if book.direction[k] > 0 else "down",
            "power_w": int(round(book.kw[k] * 1000)),
            "price_meur_per_kwh": int(round(book.price_eur_per_kwh[k] * 1000)),
            **({} if points[k] is None else {"price_points": points[k]}),
            **({} if book.availability_eur_per_kw_h[k] == 0 else {
                "availability_meur_per_kw_h": int(round(book.availability_eur_per_kw_h[k]
                                                        * 1000))})}
            for k in range(n)])
        self.offer_book = book
        try:
            day = process(self, session, plan)
        finally:
            self.offer_book = None
        days.append(day)
        return day

    mp = pytest.MonkeyPatch()
    mp.setattr(dso_operator.DsoOperator, "process", spy_process)
    try:
        simulate(load_scenario(path))
    finally:
        mp.undo()
    return days, posted


def _world(url: str, path: Path):
    world = make_world(url, engine.load_market(str(path)))
    calendar = engine.GridCalendar(str(path))
    ids = [str(i) for i in calendar.scenario.participants.ids]
    providers = [str(p) for p in calendar.dso.providers]
    join_grid_parties(world, ids, providers)
    t0 = world.clock.now_ms
    stop = calendar.bounds[-1][1]
    for t in range(stop):
        r = world.operator.request("POST", "/sessions", {
            "market_id": f"d-{t}", "interval": t, "gate_ms": t0 + (t + 1) * INTERVAL_MS})
        assert r.status_code == 201, r.text
    world.clock.now_ms = t0 + stop * INTERVAL_MS
    assert len(world.operator.request("POST", "/admin/tick").json()["settled"]) == stop
    return world, calendar, ids


def _post_offers(world, offers):
    for o in offers:
        r = world.clients[o["provider"]].submit_flex_offer(
            **{k: v for k, v in o.items() if k != "provider"})
        assert r.status_code == 201, r.text


def _activations_equal(server_acts, offers, lab_day, start, buyers=("DSO", "TSO")):
    by_offer = {o["offer_id"]: o for o in offers}
    server, simulated = Counter(), Counter()
    for a in server_acts:
        o = by_offer[a["offer_id"]]
        server[(a["interval"], f"{o['resource']}:{o['asset']}", a["direction"],
                a["buyer"])] += a["power_w"] / 1000
    rec = lab_day.records
    for j in np.flatnonzero(rec.kind != "reservation"):
        simulated[(start + int(rec.t[j]), str(rec.resource[j]), str(rec.direction[j]),
                   str(rec.buyer[j]))] += float(rec.kw[j])
    # The server records activations in whole W: one below half a W is none.
    simulated = Counter({k: v for k, v in simulated.items() if v >= 0.0005})
    assert {k[3] for k in simulated} <= set(buyers)
    assert server.keys() == simulated.keys()
    worst = max(abs(server[k] - simulated[k]) for k in simulated)
    # the same book on both sides: the same activations, to the W the server rounds each
    # activation row to
    assert worst <= 1e-3 + 1e-9, worst
    return simulated


def _window(calendar) -> list[int]:
    """The first day's intervals of the TSO window (horizon indices)."""
    start, stop = calendar.bounds[0]
    return [start + t for t, ts in enumerate(calendar.scenario.time_index[start:stop])
            if TSO_WINDOW[0] <= ts.strftime("%H:%M") < TSO_WINDOW[1]]


def _umei_period(calendar, interval: int) -> dict:
    """UMEI's ``periodFrom``/``periodTo`` of an interval (UTC)."""
    from lemgrid.service.umei.units import Calendar

    periods = Calendar(list(calendar.scenario.time_index.to_pydatetime()),
                       float(calendar.scenario.dt_h))
    begin, end = periods.period(interval)
    return {"periodFrom": begin.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "periodTo": end.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _sell_order(calendar, o: dict, points=None, side: str = "Sell") -> dict:
    """An API offer as a UMEI order: its price points ([W, m€/kWh]; default its one point)."""
    points = points or [[o["power_w"], o["price_meur_per_kwh"]]]
    return {"side": side, "portfolioId": f"{o['resource']}-{o['asset']}",
            "regulationType": "Up" if o["direction"] == "up" else "Down",
            **_umei_period(calendar, o["interval"]),
            "pricePoints": [{"quantity": w / 1e6, "unitPrice": float(p)} for w, p in points]}


def _buy_order(calendar, interval: int, **fields) -> dict:
    """A UMEI buy order for 4 kW up at an interval, at most 0.5 EUR/kWh."""
    return {"side": "Buy", "regulationType": "Up", **_umei_period(calendar, interval),
            "pricePoints": [{"quantity": TSO_KW / 1000, "unitPrice": TSO_MAX_PRICE * 1000}],
            **fields}


@pytest.mark.slow
def test_every_day_of_the_calendar_in_order_equals_lemgrid_simulate(tmp_path):
    path = _scenario(tmp_path, "two-days")
    lab_days, books = _lab(path)
    assert len(lab_days) == 2
    url = f"sqlite:///{tmp_path / 'market.db'}"
    world, calendar, ids = _world(url, path)
    dso = world.clients["dso"]
    (start0, stop0), (start1, stop1) = calendar.bounds
    # Only the first day is validated: the second starts where the DSO leaves the first.
    lights = dso.get("/grid/lights").json()
    assert [x["interval"] for x in lights] == list(range(start0, stop0))
    assert [x["state"] != "green" for x in lights] == lab_days[0].violations_before.tolist()
    r = dso.request("POST", f"/grid/days/{start1}/clear")
    assert r.status_code == 409 and f"starting at interval {start0}" in r.json()["detail"]
    for k, (start, stop) in enumerate(calendar.bounds):
        offers = books[k]
        assert {o["interval"] for o in offers} <= {
            x["interval"] for x in dso.get("/grid/requests").json()}
        _post_offers(world, offers)
        r = dso.request("POST", f"/grid/days/{start}/clear")
        assert r.status_code == 200, r.text
        # The scheduler gives the next day its lights once this one is cleared.
        assert world.operator.request("POST", "/admin/tick").status_code == 200
        lights = [x for x in dso.get("/grid/lights").json() if start <= x["interval"] < stop]
        assert [x["state"] for x in lights] == lab_days[k].state.tolist(), k
        acts = [a for a in dso.get("/grid/activations").json() if start <= a["interval"] < stop]
        assert len(acts) > 0
        _activations_equal(acts, offers, lab_days[k], start)
    assert len(dso.get("/grid/lights").json()) == stop1
    # A server restarted on the database clears the stored first day again to build the second
    # (its offers for the second day are then checked against the rebuilt day).
    world.http.close()
    world.http.app.state.market.close()
    from fastapi.testclient import TestClient

    from lemgrid.service.app import create_app

    market_key = world.http.app.state.market.operator_key
    http = TestClient(create_app(url, market_key, clock_ms=world.clock,
                                 spec=engine.load_market(str(path))))
    grid = http.app.state.market.grid
    day1 = grid.day(start1)
    assert len(grid.calendar().cleared) == 1 and day1.start == start1
    # the rebuilt second day is the one the first server built: same forecast lights
    again = [x["state"] for x in engine.traffic_light(day1)]
    assert [x != "green" for x in again] == lab_days[1].violations_before.tolist()
    http.close()
    http.app.state.market.close()
    report = verify_ledger(url)
    assert report.ok, report.problem


@pytest.mark.slow
@pytest.mark.parametrize("area", [False, True], ids=["every bus", "a bus area"])
def test_a_tso_request_over_the_api_is_cleared_as_the_labs_tso_request(tmp_path, area):
    """The TSO's requests over ``/grid/tso-requests`` (from every bus, or from the buses of
    half the households: the lab's ``buses``) buy what the lab's TSO requests buy."""
    scheme = "  coordination: {scheme: local-first}\n"
    buses = None
    if area:
        scenario = load_scenario(IPOWER)
        names = scenario.network.bus_names[scenario.participants.bus]
        buses = sorted({str(b) for b in names[: len(names) // 2]})
    lab_path = _scenario(tmp_path, "lab", scheme.replace(
        "}", f", tso_requests: [{{from: '{TSO_WINDOW[0]}', to: '{TSO_WINDOW[1]}', "
             f"direction: up, kw: {TSO_KW}, max_price_eur_per_kwh: {TSO_MAX_PRICE}"
             + (f", buses: {buses}" if buses else "") + "}]}"))
    server_path = _scenario(tmp_path, "server", scheme)
    lab_days, books = _lab(lab_path, TSO_WINDOW)
    tso_lab = lab_days[0].records
    assert (tso_lab.buyer == "TSO").any()  # the lab's TSO buys on the first day
    url = f"sqlite:///{tmp_path / 'market.db'}"
    world, calendar, ids = _world(url, server_path)
    start, stop = calendar.bounds[0]
    window = _window(calendar)
    tso = world.clients["tso"]
    for t in window:
        r = tso.request("POST", "/grid/tso-requests", {
            "request_id": f"tso-{t}", "interval": t, "direction": "up",
            "power_w": round(TSO_KW * 1000),
            "max_price_meur_per_kwh": round(TSO_MAX_PRICE * 1000),
            **({"buses": buses} if buses else {})})
        assert r.status_code == 201, r.text
    r = tso.request("POST", "/grid/tso-requests", {
        "request_id": "z", "interval": window[0], "direction": "up", "power_w": 1,
        "max_price_meur_per_kwh": 1, "buses": ["no such bus"]})
    assert r.status_code == 422 and "buses[0]" in r.json()["detail"], r.text
    # refused: a second request id, a participant or the DSO posting, a bad body
    assert tso.request("POST", "/grid/tso-requests", {
        "request_id": f"tso-{window[0]}", "interval": window[0], "direction": "up",
        "power_w": 1, "max_price_meur_per_kwh": 1}).status_code == 409
    for who in (ids[0], "dso"):
        assert world.clients[who].request("POST", "/grid/tso-requests", {
            "request_id": "x", "interval": window[0], "direction": "up", "power_w": 1,
            "max_price_meur_per_kwh": 1}).status_code == 403
    r = tso.request("POST", "/grid/tso-requests", {
        "request_id": "y", "interval": window[0], "direction": "sideways", "power_w": 1,
        "max_price_meur_per_kwh": 1})
    assert r.status_code == 422 and "direction" in r.text
    assert len(world.clients["dso"].get("/grid/tso-requests").json()) == len(window)
    assert world.clients[ids[0]].get("/grid/tso-requests").status_code == 403
    offers = books[0]
    _post_offers(world, offers)
    r = world.clients["dso"].request("POST", f"/grid/days/{start}/clear")
    assert r.status_code == 200, r.text
    acts = [a for a in world.clients["dso"].get("/grid/activations").json()
            if a["interval"] < stop]
    simulated = _activations_equal(acts, offers, lab_days[0], start)
    tso_kw = sum(v for k, v in simulated.items() if k[3] == "TSO")
    if buses:  # every TSO purchase from a bus of the area
        bus_of = {str(i): str(b) for i, b in zip(
            calendar.scenario.participants.ids,
            calendar.scenario.network.bus_names[calendar.scenario.participants.bus])}
        by_offer = {o["offer_id"]: o for o in offers}
        assert all(bus_of[by_offer[a["offer_id"]]["meter"]] in buses
                   for a in acts if a["buyer"] == "TSO")
        assert world.clients["dso"].get("/grid/tso-requests").json()[0]["buses"] == buses
    assert tso_kw > 0 and sum(a["power_w"] for a in acts if a["buyer"] == "TSO") / 1000 == \
        pytest.approx(tso_kw, abs=0.1)
    market = world.http.app.state.market
    kinds = Counter(e["payload"]["kind"] for e in market.ledger.entries())
    assert kinds["flex-request"] == len(window)
    assert verify_ledger(url).ok


def test_tso_requests_are_refused_where_the_dso_does_not_coordinate(tmp_path):
    """The iPower DSO has no TSO coordination (scheme none): a TSO request is a 422 naming the
    setting, and nothing is stored."""
    path = _scenario(tmp_path, "no-tso")
    world = make_world(f"sqlite:///{tmp_path / 'm.db'}", engine.load_market(str(path)))
    world.join("tso", role="tso", meter="-")
    r = world.clients["tso"].request("POST", "/grid/tso-requests", {
        "request_id": "r1", "interval": 3, "direction": "up", "power_w": 1000,
        "max_price_meur_per_kwh": 100})
    assert r.status_code == 422 and "dso.coordination.scheme" in r.json()["detail"], r.text
    assert world.clients["tso"].get("/grid/tso-requests").json() == []
    world.http.close()
    world.http.app.state.market.close()


def _reservations_equal(dso, acts, offers, lab_day, ids) -> list[dict]:
    """The server's reservations (``/grid/reservations``) and activation money against the lab's
    day, to the cent, and the lab's availability against a hand computation on the posted
    window offers; returns the reservations."""
    rec = lab_day.records
    act_rows = rec.kind != "reservation"
    assert float(rec.availability_eur[act_rows].sum()) == 0  # availability is the reservation's
    assert sum(a["utilisation_ueur"] for a in acts) / 1e6 == pytest.approx(
        float(rec.utilisation_eur[act_rows].sum()), abs=0.005)
    lab_held: dict[tuple[str, str], float] = {}
    for j in np.flatnonzero(~act_rows):
        for owner, eur in rec.shares[j].items():
            lab_held[(str(rec.provider[j]), ids[owner])] = float(eur)
    held = dso.get("/grid/reservations").json()
    assert {(r["provider"], r["participant"]): r["availability_ueur"] / 1e6 for r in held} \
        == pytest.approx(lab_held, abs=0.005)
    assert sum(lab_held.values()) > 0.1
    # by hand: each resource's larger move (up or down) at each interval of the window, at
    # 5 m€ per kW and hour for the interval's quarter hour
    largest: dict[tuple, int] = {}
    for o in offers:
        key = (o["provider"], o["meter"], o["resource"], o["asset"], o["interval"])
        largest[key] = max(largest.get(key, 0), o["power_w"])
    by_hand: dict[tuple[str, str], float] = {}
    for (provider, meter, *_), w in largest.items():
        by_hand[(provider, meter)] = by_hand.get((provider, meter), 0.0) + w / 1000 * 0.005 / 4
    assert lab_held == pytest.approx(by_hand, abs=1e-9)
    return held


def _long_term(tmp_path: Path) -> Path:
    """iPower for one day with the DSO's long-term product: the flexibility of every provider
    reserved over 16:00-22:00 at 5 m€ per kW and hour, activated at its amber intervals."""
    text = IPOWER.read_text().replace(
        "    lead_time: day-ahead\n",
        f"    lead_time: long-term\n    reservation: {{from: '{RESERVATION[0]}', "
        f"to: '{RESERVATION[1]}'}}\n").replace(
        "battery: 0.30}", "battery: 0.30, availability_eur_per_kw_h: 0.005}")
    assert "long-term" in text and "availability_eur_per_kw_h" in text
    path = tmp_path / "long-term.yaml"
    path.write_text(text)
    return path


#: The DSO's daily reservation window (the grid's local time).
RESERVATION = ("16:00", "22:00")


@pytest.mark.slow
def test_long_term_reservations_through_the_api_are_the_labs(tmp_path):
    """Providers post their window's offers with an availability price over ``/grid/offers``;
    the DSO's clearing reserves them and activates at the amber intervals as ``lemgrid
    simulate`` does: the same activations, and the same availability per provider and owner, to
    the cent (each a ``flex-reservation`` ledger record). An offer outside the window is a 422
    naming the field."""
    path = _long_term(tmp_path)
    lab_days, books = _lab(path, window=RESERVATION)
    url = f"sqlite:///{tmp_path / 'market.db'}"
    world, calendar, ids = _world(url, path)
    dso = world.clients["dso"]
    start, stop = calendar.bounds[0]
    clock = list(calendar.scenario.time_index[start:stop].strftime("%H:%M"))
    window = (start + clock.index(RESERVATION[0]), start + clock.index(RESERVATION[1]))
    # (the lab's DSO takes no offer outside its window: the book's amber ones outside it stay
    # unused)
    lab_day = lab_days[0]
    offers = [o for o in books[0] if window[0] <= o["interval"] < window[1]]
    assert offers and all(o["availability_meur_per_kw_h"] == 5 for o in offers)
    o = offers[0]
    r = world.clients[o["provider"]].submit_flex_offer(
        **{k: v for k, v in o.items() if k != "provider"} | {"interval": window[0] - 1,
                                                             "offer_id": "outside"})
    assert r.status_code == 422 and "payload.interval" in r.text and "reservation" in r.text
    _post_offers(world, offers)
    # the window's green intervals take offers too: the DSO reserves the whole window
    lights = {x["interval"]: x["state"] for x in dso.get("/grid/lights").json()}
    assert {lights[o["interval"]] for o in offers} == {"green", "amber"}
    r = dso.request("POST", f"/grid/days/{start}/clear")
    assert r.status_code == 200, r.text
    acts = dso.get("/grid/activations").json()
    _activations_equal(acts, offers, lab_day, start)
    held = _reservations_equal(dso, acts, offers, lab_day, ids)
    assert {(r["window_start"], r["window_stop"]) for r in held} == {window}
    provider = held[0]["provider"]
    mine = world.clients[provider].get("/grid/reservations").json()
    assert mine and {r["provider"] for r in mine} == {provider}
    kinds = Counter(e["payload"]["kind"] for e in world.http.app.state.market.ledger.entries())
    assert kinds["flex-reservation"] == len(held)
    assert verify_ledger(url).ok


@pytest.mark.slow
def test_long_term_products_through_umei_are_the_labs(tmp_path):
    """UMEI's long-flex: each FSP posts a capacity order (market ``flex-long-term-capacity``,
    quantity type Capacity, its availability price) per window offer and an activation order
    calling it (``longflexContractId``, its activation price): the DSO's day reserves and
    activates as ``lemgrid simulate`` does, the capacity orders complete Filled, and the
    orders that break the contract are problems naming the field."""
    from ._umei import checker, fsp_client_module, problem

    fsp = fsp_client_module()
    path = _long_term(tmp_path)
    lab_days, books = _lab(path, window=RESERVATION)
    url = f"sqlite:///{tmp_path / 'market.db'}"
    world, calendar, ids = _world(url, path)
    start, stop = calendar.bounds[0]
    clock = list(calendar.scenario.time_index[start:stop].strftime("%H:%M"))
    window = (start + clock.index(RESERVATION[0]), start + clock.index(RESERVATION[1]))
    offers = [o for o in books[0] if window[0] <= o["interval"] < window[1]]
    spec = checker()
    clients = {}
    for provider in sorted({o["provider"] for o in offers}):
        clients[provider] = fsp.UmeiClient(world.http, world.clients[provider].key)
        clients[provider].login()
    first, other = sorted(clients)[:2]
    r = clients[first].call("GET", "/Markets")
    if spec is not None:
        spec.check("GET", "/umei/Markets", 200, r.headers["content-type"], r.json())
    markets = {x["id"]: x["quantityType"] for x in r.json()["items"]}
    assert markets == {"flex-long-term": "ActivePower", "flex-long-term-capacity": "Capacity"}

    def capacity(o: dict, **change) -> dict:
        return _sell_order(calendar, o, [[o["power_w"], o["availability_meur_per_kw_h"]]]) | {
            "marketId": "flex-long-term-capacity", **change}

    def activation(o: dict, contract: str | None, **change) -> dict:
        return _sell_order(calendar, o) | {"marketId": "flex-long-term", **change} | (
            {} if contract is None else {"longflexContractId": contract})

    o = next(o for o in offers if o["provider"] == first)
    c = clients[first]
    problem(c.call("POST", "/Orders", capacity(o, **_umei_period(calendar, window[0] - 1))),
            400, "InvalidOrder", "periodFrom")
    problem(c.call("POST", "/Orders", activation(o, None)), 400, "InvalidOrder",
            "longflexContractId")
    # the first window offer by hand, with the orders that break its contract
    o = offers[0]
    client = clients[o["provider"]]
    contract = client.ok("POST", "/Orders", capacity(o))
    assert contract["marketId"] == "flex-long-term-capacity"
    problem(clients[other if o["provider"] == first else first].call(
        "POST", "/Orders", activation(o, contract["id"])), 403, "Forbidden", "portfolioId")
    problem(client.call("POST", "/Orders", activation(
        o, contract["id"], **_umei_period(calendar, o["interval"] + 1))), 400,
        "InconsistentPeriods", "periodFrom")
    over = _sell_order(calendar, o, [[o["power_w"] + 1, o["price_meur_per_kwh"]]])
    problem(client.call("POST", "/Orders", over | {
        "marketId": "flex-long-term", "longflexContractId": contract["id"]}),
        400, "InvalidOrder", "pricePoints[0].quantity")
    order = client.ok("POST", "/Orders", activation(o, contract["id"]))
    assert order["longflexContractId"] == contract["id"]
    problem(client.call("POST", "/Orders", activation(o, contract["id"], id="again")), 409,
            "Conflict", "longflexContractId")
    posted = [dict(o, offer_id=f"umei:{order['id']}")]
    spare = client.ok("POST", "/Orders", capacity(o, id="spare"))  # never called: not reserved
    # the rest by the example FSP client: a contract and an order calling it per window offer
    for provider, client in clients.items():
        mine = [o for o in offers[1:] if o["provider"] == provider]
        plan = [{"portfolioId": f"{o['resource']}-{o['asset']}",
                 **_umei_period(calendar, o["interval"]),
                 "regulationType": "Up" if o["direction"] == "up" else "Down",
                 "quantityMw": o["power_w"] / 1e6, "unitPriceEurPerMwh": o["price_meur_per_kwh"],
                 "availabilityEurPerMwH": o["availability_meur_per_kw_h"]} for o in mine]
        orders = fsp.offer(client, plan)
        assert len(orders) == len(mine) and all(x["longflexContractId"] for x in orders)
        posted += [dict(o, offer_id=f"umei:{x['id']}") for o, x in zip(mine, orders)]
    dso = world.clients["dso"]
    assert dso.request("POST", f"/grid/days/{start}/clear").status_code == 200
    acts = dso.get("/grid/activations").json()
    _activations_equal(acts, posted, lab_days[0], start)
    _reservations_equal(dso, acts, offers, lab_days[0], ids)
    for client in clients.values():
        r = client.call("GET", "/Orders")
        if spec is not None:
            spec.check("GET", "/umei/Orders", 200, r.headers["content-type"], r.json())
        contracts = [x for x in client.search("/Orders")
                     if x["marketId"] == "flex-long-term-capacity" and x["id"] != spare["id"]]
        assert contracts and {(x["status"], x["completionType"]) for x in contracts} == {
            ("Completed", "Filled")}
    assert clients[o["provider"]].ok("GET", "/Orders/spare")["completionType"] == "Expired"
    # the day is cleared: no more contracts for it
    problem(clients[o["provider"]].call("POST", "/Orders", capacity(o, id="late")), 409,
            "Conflict", "periodFrom")
    assert verify_ledger(url).ok


@pytest.mark.slow
def test_the_second_day_through_umei_equals_lemgrid_simulate(tmp_path):
    """The first day's offers over ``/grid``, the second day's as UMEI sell orders by the example
    FSP client: its flexibility zones, portfolios and orders are the second day's, an order is
    completed only when its own day is cleared, and the activations are the lab's."""
    from lemgrid.service.umei.units import Calendar

    from ._umei import fsp_client_module

    fsp = fsp_client_module()
    path = _scenario(tmp_path, "two-days-umei")
    lab_days, books = _lab(path)
    world, calendar, _ = _world(f"sqlite:///{tmp_path / 'market.db'}", path)
    dso = world.clients["dso"]
    (start0, _), (start1, stop1) = calendar.bounds
    _post_offers(world, books[0])
    assert dso.request("POST", f"/grid/days/{start0}/clear").status_code == 200
    assert world.operator.request("POST", "/admin/tick").status_code == 200
    periods = Calendar(list(calendar.scenario.time_index.to_pydatetime()),
                       float(calendar.scenario.dt_h))
    offers, clients = [], {}
    for provider in sorted({o["provider"] for o in books[1]}):
        client = clients[provider] = fsp.UmeiClient(world.http, world.clients[provider].key)
        client.login()
        mine = [o for o in books[1] if o["provider"] == provider]
        plan = [{"portfolioId": f"{o['resource']}-{o['asset']}",
                 "periodFrom": periods.period(o["interval"])[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "regulationType": "Up" if o["direction"] == "up" else "Down",
                 "quantityMw": o["power_w"] / 1e6, "unitPriceEurPerMwh": o["price_meur_per_kwh"]}
                for o in mine]
        posted = fsp.offer(client, plan)
        # every offer in a zone of the second day, on a portfolio; still open though the first
        # day is cleared
        assert len(posted) == len(mine) and {p["status"] for p in posted} == {"Active"}
        offers += [dict(o, offer_id=f"umei:{p['id']}") for o, p in zip(mine, posted)]
    zones = {z["id"] for z in clients[provider].search("/FlexibilityZones")}
    assert zones >= {f"fz-{o['interval']}" for o in books[1]}
    assert dso.request("POST", f"/grid/days/{start1}/clear").status_code == 200
    acts = [a for a in dso.get("/grid/activations").json() if start1 <= a["interval"] < stop1]
    _activations_equal(acts, offers, lab_days[1], start1)
    filled = {a["offer_id"] for a in acts}
    followed = 0
    for provider, client in clients.items():
        orders = list(client.search("/Orders"))
        assert orders and {o["status"] for o in orders} == {"Completed"}
        assert all((o["completionType"] in ("Filled", "Killed"))
                   == (f"umei:{o['id']}" in filled) for o in orders)
        followed += len(fsp.follow_trades(client, orders))
    assert followed == len(acts) > 0  # every activation of the day is a UMEI trade
    assert verify_ledger(f"sqlite:///{tmp_path / 'market.db'}").ok


def test_tso_buy_orders_through_umei_are_cleared_as_the_labs_tso_request(tmp_path):
    """The TSO posts its requests as UMEI buy orders (one price point: the most it buys and
    pays): the DSO's day buys for it what the lab's TSO request buys, its orders complete as
    filled, its trades name them, and refused buy orders (from an FSP, with a portfolio,
    without a price point) store nothing."""
    from ._umei import checker, fsp_client_module

    fsp = fsp_client_module()
    scheme = "  coordination: {scheme: local-first}\n"
    lab_path = _scenario(tmp_path, "lab", scheme.replace(
        "}", f", tso_requests: [{{from: '{TSO_WINDOW[0]}', to: '{TSO_WINDOW[1]}', "
             f"direction: up, kw: {TSO_KW}, max_price_eur_per_kwh: {TSO_MAX_PRICE}}}]}}"))
    lab_days, books = _lab(lab_path, TSO_WINDOW)
    world, calendar, ids = _world(f"sqlite:///{tmp_path / 'market.db'}",
                                  _scenario(tmp_path, "server", scheme))
    start, stop = calendar.bounds[0]
    window = _window(calendar)
    tso = fsp.UmeiClient(world.http, world.clients["tso"].key)
    tso.login()

    def buy(t: int, **change):
        return tso.call("POST", "/Orders", _buy_order(calendar, t, id=f"tso-{t}", **change))

    seller = fsp.UmeiClient(world.http, world.clients[books[0][0]["provider"]].key)
    seller.login()
    market = world.http.app.state.market
    before = market.ledger.size  # after the logins (their tokens are ledger records)
    for change, field in [({"portfolioId": "battery-0"}, "portfolioId"),
                          ({"pricePoints": []}, "pricePoints"),
                          ({"minimumAcceptanceQuantity": 0.001}, "minimumAcceptanceQuantity"),
                          ({"gridNodeId": "nowhere"}, "InvalidGridNode")]:
        r = buy(window[0], **change)
        assert r.status_code == 400 and field in r.text, (change, r.text)
    r = seller.call("POST", "/Orders", _buy_order(calendar, window[0]))
    assert r.status_code == 400 and "only the grid operators" in r.text, r.text
    assert market.ledger.size == before  # nothing refused reached the ledger
    spec = checker()  # the UMEI specification's schemas, when it is at hand
    for t in window:
        r = buy(t)
        assert r.status_code == 201 and r.json()["status"] == "Active", r.text
        if spec is not None:
            spec.check("POST", "/umei/Orders", 201, r.headers["content-type"], r.json())
    assert buy(window[0]).status_code == 409  # the same id again
    assert len(world.clients["dso"].get("/grid/tso-requests").json()) == len(window)
    _post_offers(world, books[0])
    assert world.clients["dso"].request("POST", f"/grid/days/{start}/clear").status_code == 200
    acts = [a for a in world.clients["dso"].get("/grid/activations").json()
            if a["interval"] < stop]
    simulated = _activations_equal(acts, books[0], lab_days[0], start)
    assert sum(v for k, v in simulated.items() if k[3] == "TSO") > 0
    orders = [o for o in tso.search("/Orders") if o["side"] == "Buy"]
    assert len(orders) == len(window) and {o["status"] for o in orders} == {"Completed"}
    filled = {o["id"] for o in orders if o["completionType"] in ("Filled", "Killed")}
    bought = {a["interval"] for a in acts if a["buyer"] == "TSO"}
    assert filled == {f"tso-{t}" for t in bought}
    trades = [x for x in tso.search("/Trades") if x["lemgrid"]["buyer"] == "TSO"]
    assert trades and {x["orderId"] for x in trades} <= filled
    if spec is not None:
        for path in ("/umei/Orders", "/umei/Trades", "/umei/PublicOrders"):
            r = tso.call("GET", path.removeprefix("/umei"))
            spec.check("GET", path, 200, r.headers["content-type"], r.json())
    public = list(tso.search("/PublicOrders"))
    assert sum(o["side"] == "Buy" for o in public) == len(window)
    assert all("id" not in o and "ownerOrganizationId" not in o for o in public)
    assert verify_ledger(f"sqlite:///{tmp_path / 'market.db'}").ok


def test_dso_buy_orders_through_umei_are_cleared_as_the_labs_planned_products(tmp_path):
    """The DSO posts planned products as UMEI buy orders (4 kW up at 21:00-22:00, at most
    0.5 EUR/kWh, from every bus): its day buys what the lab's ``dso.flexibility.requests``
    buys (beside the traffic light's need), its buy orders complete, its trades in that window
    name them, and the TSO's request list does not show them."""
    from ._umei import checker, fsp_client_module

    fsp = fsp_client_module()
    planned = (f"    requests: [{{from: '{TSO_WINDOW[0]}', to: '{TSO_WINDOW[1]}', direction: up, "
               f"kw: {TSO_KW}, max_price_eur_per_kwh: {TSO_MAX_PRICE}, service: CM}}]\n")
    lab_path = _scenario(tmp_path, "lab")
    prices_line = "    prices: {ev: 0.03, heat_pump: 0.02, battery: 0.30}\n"
    text = lab_path.read_text()
    assert prices_line in text
    lab_path.write_text(text.replace(prices_line, prices_line + planned))
    lab_days, books = _lab(lab_path, TSO_WINDOW)
    world, calendar, ids = _world(f"sqlite:///{tmp_path / 'market.db'}",
                                  _scenario(tmp_path, "server"))
    start, stop = calendar.bounds[0]
    window = _window(calendar)
    dso = fsp.UmeiClient(world.http, world.clients["dso"].key)
    dso.login()
    spec = checker()
    for t in window:
        r = dso.call("POST", "/Orders", _buy_order(calendar, t, id=f"dso-{t}"))
        assert r.status_code == 201 and r.json()["status"] == "Active", r.text
        if spec is not None:
            spec.check("POST", "/umei/Orders", 201, r.headers["content-type"], r.json())
    assert world.clients["dso"].get("/grid/tso-requests").json() == []
    _post_offers(world, books[0])
    assert world.clients["dso"].request("POST", f"/grid/days/{start}/clear").status_code == 200
    acts = [a for a in world.clients["dso"].get("/grid/activations").json()
            if a["interval"] < stop]
    simulated = _activations_equal(acts, books[0], lab_days[0], start, buyers=("DSO",))
    # the window is green in the forecast: what is bought there is the planned product's,
    # up, as much as is offered up there (at most what was asked for), never down
    offered_w, bought_w = Counter(), Counter()
    for o in books[0]:
        if o["interval"] in window and o["direction"] == "up":
            offered_w[o["interval"]] += o["power_w"]
    for a in acts:
        if a["interval"] in window:
            assert a["direction"] == "up", a
            bought_w[a["interval"]] += a["power_w"]
    assert all(bought_w[t] >= min(TSO_KW * 1000, offered_w[t]) - 2 for t in window)
    assert sum(bought_w.values()) > 0
    orders = {o["id"]: o for o in dso.search("/Orders") if o["side"] == "Buy"}
    assert set(orders) == {f"dso-{t}" for t in window}
    assert {o["status"] for o in orders.values()} == {"Completed"}
    assert all(orders[f"dso-{t}"]["completionType"] == (
        "Filled" if bought_w[t] >= TSO_KW * 1000 - 2 else "Killed" if bought_w[t] else
        "Expired") for t in window)
    trades = [x for x in dso.search("/Trades") if x["lemgrid"]["interval"] in window]
    assert trades and {x["orderId"] for x in trades} == set(orders)
    assert verify_ledger(f"sqlite:///{tmp_path / 'market.db'}").ok


def _rising(power_w: int, price_meur_per_kwh: int) -> list[list[int]] | None:
    """A price curve: the offer's price for its first kW, 40 m€/kWh more at half its power,
    120 more for its last W."""
    if power_w < 2:
        return None
    return [[0, price_meur_per_kwh], [power_w // 2, price_meur_per_kwh + 40],
            [power_w, price_meur_per_kwh + 120]]


def test_interpolated_sell_orders_through_umei_are_cleared_as_the_labs_price_curves(tmp_path):
    """Every offer of the first day as a UMEI interpolated sell order (three price points):
    the activations and their money are the lab's with the same price curves, the orders echo
    their points, a curve's activations are paid at least its first price and some more, and
    curves UMEI or lemgrid refuse (not from quantity 0, falling prices, an interpolated buy
    order, a signed offer whose curve does not start at its price) are refused naming the
    point and store nothing."""
    from ._umei import checker, fsp_client_module

    fsp = fsp_client_module()
    path = _scenario(tmp_path, "curves")
    lab_days, books = _lab(path, curve=_rising)
    world, calendar, _ = _world(f"sqlite:///{tmp_path / 'market.db'}", path)
    start, stop = calendar.bounds[0]

    def order(o: dict, points=None, side="Sell") -> dict:
        return _sell_order(calendar, o, points or o["price_points"], side)

    market = world.http.app.state.market
    first = next(o for o in books[0] if "price_points" in o)
    seller = fsp.UmeiClient(world.http, world.clients[first["provider"]].key)
    seller.login()
    dso = fsp.UmeiClient(world.http, world.clients["dso"].key)
    dso.login()
    before = market.ledger.size
    (_, p0), (w1, p1), (w2, p2) = first["price_points"]
    for points, field in (([[1, p0], [w1, p1], [w2, p2]], "pricePoints[0].quantity"),
                          ([[0, p0], [w1, p1 + 200], [w2, p2]], "pricePoints[2].unitPrice"),
                          ([[0, p0], [w1, p1], [w1, p2]], "pricePoints[2].quantity")):
        r = seller.call("POST", "/Orders", order(first, points))
        assert r.status_code == 400 and field in r.text, (points, r.text)
    body = order(first, side="Buy")
    del body["portfolioId"]
    r = dso.call("POST", "/Orders", body)
    assert r.status_code == 400 and "pricePoints[1]" in r.text, r.text
    r = world.clients[first["provider"]].submit_flex_offer(
        **{k: v for k, v in first.items() if k not in ("provider", "price_points")},
        price_points=[[0, p0 + 1], [w1, p1], [w2, p2]])
    assert r.status_code == 422 and "price_points[0]" in r.text, r.text
    assert market.ledger.size == before  # nothing refused reached the ledger
    spec = checker()
    clients = {}
    for provider in sorted({o["provider"] for o in books[0]}):
        clients[provider] = fsp.UmeiClient(world.http, world.clients[provider].key)
        clients[provider].login()
    offers = []
    for o in books[0]:  # in the lab's book order: the LP's ties broken alike
        points = o.get("price_points") or [[o["power_w"], o["price_meur_per_kwh"]]]
        r = clients[o["provider"]].call("POST", "/Orders", order(o, points))
        assert r.status_code == 201, r.text
        got = r.json()
        assert [[round(x["quantity"] * 1e6), round(x["unitPrice"])]
                for x in got["pricePoints"]] == points
        if spec is not None:
            spec.check("POST", "/umei/Orders", 201, r.headers["content-type"], got)
        offers.append(dict(o, offer_id=f"umei:{got['id']}"))
    assert sum("price_points" in o for o in offers) > len(offers) // 2
    assert world.clients["dso"].request("POST", f"/grid/days/{start}/clear").status_code == 200
    acts = [a for a in world.clients["dso"].get("/grid/activations").json()
            if a["interval"] < stop]
    _activations_equal(acts, offers, lab_days[0], start)
    rec = lab_days[0].records
    lab_eur = float(rec.utilisation_eur[rec.kind != "reservation"].sum())
    assert sum(a["utilisation_ueur"] for a in acts) / 1e6 == pytest.approx(lab_eur, abs=0.005)
    by_offer = {o["offer_id"]: o for o in offers}
    curved = [a for a in acts if "price_points" in by_offer[a["offer_id"]]]
    assert curved and all(a["price_meur_per_kwh"] >= by_offer[a["offer_id"]][
        "price_meur_per_kwh"] for a in curved)
    assert any(a["price_meur_per_kwh"] > by_offer[a["offer_id"]]["price_meur_per_kwh"]
               for a in curved)
    assert verify_ledger(f"sqlite:///{tmp_path / 'market.db'}").ok


def test_measured_delivery_settles_the_flexibility_payments(tmp_path):
    """The first day's offers as UMEI orders; after the clearing the FSPs declare baselines
    and post meter readings: one portfolio's reading shows all of its activation, one shows
    none of it, one has no reading. The DSO's settlement on them: the first is paid as cleared,
    the second is paid nothing and owes the penalty on its power beyond the readings'
    tolerance, the third keeps the clearing's money (unmetered); one flex-delivery record per
    measured activation; settling twice, or before the clearing, is refused."""
    from lemgrid.service.umei.flex import READING_TOLERANCE_W

    from ._umei import fsp_client_module

    fsp = fsp_client_module()
    path = _scenario(tmp_path, "delivery")
    _, books = _lab(path)
    url = f"sqlite:///{tmp_path / 'market.db'}"
    world, calendar, _ = _world(url, path)
    start, _ = calendar.bounds[0]
    dso = world.clients["dso"]
    assert dso.request("POST", f"/grid/days/{start}/delivery").status_code == 409  # not cleared
    clients = {}
    for provider in sorted({o["provider"] for o in books[0]}):
        clients[provider] = fsp.UmeiClient(world.http, world.clients[provider].key)
        clients[provider].login()
    for o in books[0]:
        r = clients[o["provider"]].call("POST", "/Orders", _sell_order(calendar, o))
        assert r.status_code == 201, r.text
    assert dso.request("POST", f"/grid/days/{start}/clear").status_code == 200
    cleared = {a["activation_id"]: a for a in dso.get("/grid/activations").json()}
    assert dso.request("POST", f"/grid/days/{start}/delivery").status_code == 422  # no reading
    # one activation per (portfolio, period) with more than the tolerance, for the cases
    trades = [t for c in clients.values() for t in c.search("/Trades")]
    once = Counter((t["portfolioId"], t["periodFrom"]) for t in trades)
    big = [t for t in trades if once[(t["portfolioId"], t["periodFrom"])] == 1
           and t["lemgrid"]["powerW"] > 3 * READING_TOLERANCE_W]
    full, none, unmetered = big[0], big[1], big[2]
    for t, moved_w in ((full, full["lemgrid"]["powerW"]), (none, 0)):
        client = clients[t["ownerOrganizationId"]]
        sign = 1 if t["regulationType"] == "Up" else -1
        for resource, quantity in (("/BaselineIntervals", 0.004),
                                   ("/MeterReadings", 0.004 + sign * moved_w / 1e6)):
            client.ok("POST", resource, {"portfolioId": t["portfolioId"],
                                         "periodFrom": t["periodFrom"],
                                         "periodTo": t["periodTo"],
                                         "quantity": round(quantity, 3),
                                         "quantityType": "ActivePower"})
    r = dso.request("POST", f"/grid/days/{start}/delivery")
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["n_measured"] == 2 and summary["n_short"] == 1
    settled = {a["activation_id"]: a for a in dso.get("/grid/activations").json()}
    dt_h = float(calendar.scenario.dt_h)
    rate = calendar.scenario.config.dso.flexibility.non_delivery_penalty_eur_per_kwh
    a = full["lemgrid"]["activationId"]
    assert settled[a]["utilisation_ueur"] == cleared[a]["utilisation_ueur"] > 0
    assert settled[a]["penalty_ueur"] == 0 and settled[a]["delivered"]
    a = none["lemgrid"]["activationId"]
    # the reading rounded to the 0.001 MW: what it shows moved is within a kW of nothing
    short_w = cleared[a]["power_w"] - READING_TOLERANCE_W
    price = cleared[a]["utilisation_ueur"] / (cleared[a]["power_w"] / 1000 * dt_h)  # µ€/kWh
    assert settled[a]["utilisation_ueur"] == pytest.approx(
        price * (cleared[a]["power_w"] - short_w) / 1000 * dt_h, abs=1)
    assert settled[a]["penalty_ueur"] == pytest.approx(rate * short_w / 1000 * dt_h * 1e6,
                                                       abs=1)
    assert not settled[a]["delivered"]
    a = unmetered["lemgrid"]["activationId"]
    assert settled[a] == cleared[a]
    # the FSP sees the settled money on its trade
    mine = {t["id"]: t for t in clients[none["ownerOrganizationId"]].search("/Trades")}
    assert mine[none["id"]]["lemgrid"]["penaltyEur"] == pytest.approx(
        settled[none["lemgrid"]["activationId"]]["penalty_ueur"] / 1e6)
    assert dso.request("POST", f"/grid/days/{start}/delivery").status_code == 409
    assert world.clients[books[0][0]["provider"]].request(
        "POST", f"/grid/days/{start}/delivery").status_code == 403
    market = world.http.app.state.market
    kinds = Counter(e["payload"]["kind"] for e in market.ledger.entries())
    assert kinds["flex-delivery"] == 2
    assert verify_ledger(url).ok


def test_block_and_curved_offers_are_refused_where_the_dso_clears_by_merit_order(tmp_path):
    """A DSO clearing by the continuous merit order takes any part of an offer at one price:
    an offer with a minimum acceptance quantity or a price curve is a 422 naming the field
    and the setting, as is an availability price where the DSO buys day-ahead; nothing is
    stored; the plain offer is accepted."""
    path = _scenario(tmp_path, "merit-order")
    path.write_text(path.read_text().replace("clearing: optimal", "clearing: continuous"))
    _, books = _lab(path)
    world, _, _ = _world(f"sqlite:///{tmp_path / 'market.db'}", path)
    o = next(o for o in books[0] if o["power_w"] >= 2)
    client = world.clients[o["provider"]]
    plain = {k: v for k, v in o.items() if k != "provider"}
    for extra, setting in (
            ({"min_power_w": 1}, "dso.flexibility.clearing"),
            ({"price_points": [[0, o["price_meur_per_kwh"]],
                               [o["power_w"], o["price_meur_per_kwh"] + 1]]},
             "dso.flexibility.clearing"),
            ({"availability_meur_per_kw_h": 5}, "dso.flexibility.lead_time")):
        r = client.submit_flex_offer(**plain, **extra)
        name = next(iter(extra))
        assert r.status_code == 422 and f"payload.{name}" in r.text, r.text
        assert setting in r.text
    assert world.clients["dso"].get("/grid/offers").json() == []
    assert client.submit_flex_offer(**plain).status_code == 201
