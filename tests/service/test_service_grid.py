"""The DSO over the API: traffic light after each session's clearing, flexibility requests,
signed offers and the DSO's activations, against ``lemgrid simulate`` in-process.

Scenario: ``examples/systems/ipower.yaml`` (SimBench rural LV feeder, EVs and heat pumps switching
on together: the MV/LV transformer overloads and the feeder's end drops below 0.90 p.u.; two
aggregators sell the households' flexibility to the DSO, cleared by optimisation, pay-as-clear).
The offers posted over the API are the ones the lab's aggregators make in ``lemgrid simulate``
(a spy on the DSO's offer book), in the ledger's integer units (W, m€/kWh): the server's traffic
light and activations must then be the simulation's.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import lemgrid.dso.operator as dso_operator
from lemgrid.grid.kpis import NONCONVERGED_REASON
from lemgrid.ledger.identity import sign_payload
from lemgrid.ledger.verify import verify_ledger
from lemgrid.scenario import load_scenario
from lemgrid.service import engine
from lemgrid.sim.runner import simulate

from .conftest import join_grid_parties, make_world

ROOT = Path(__file__).resolve().parents[2]
IPOWER = ROOT / "examples" / "systems" / "ipower.yaml"
INTERVAL_MS = 900_000


@pytest.fixture(scope="module")
def lab():
    """``lemgrid simulate`` of the scenario's day: the DSO's day and its first offer book."""
    books, days = [], []
    offers, process = dso_operator.DsoOperator._offers, dso_operator.DsoOperator.process

    def spy_offers(self, *args, **kwargs):
        book = offers(self, *args, **kwargs)
        if kwargs.get("prices") is None:
            books.append(book)
        return book

    def spy_process(self, session, plan):
        day = process(self, session, plan)
        days.append(day)
        return day

    mp = pytest.MonkeyPatch()
    mp.setattr(dso_operator.DsoOperator, "_offers", spy_offers)
    mp.setattr(dso_operator.DsoOperator, "process", spy_process)
    try:
        simulate(load_scenario(IPOWER))
    finally:
        mp.undo()
    assert len(days) == 1
    return days[0], books[0]


def _world(url: str, path: Path):
    """A market on the scenario: every household (meter = its id), the two aggregators, a DSO,
    a TSO; one session per interval of the day, all cleared (the traffic light is set)."""
    world = make_world(url, engine.load_market(str(path)))
    day = engine.grid_day(str(path), 0)
    ids = [str(i) for i in day.scenario.participants.ids]
    providers = [str(p) for p in day.operator().providers]
    world.households = ids
    join_grid_parties(world, ids, providers)
    t0 = world.clock.now_ms
    for t in range(day.start, day.stop):
        r = world.operator.request("POST", "/sessions", {
            "market_id": f"d-{t}", "interval": t, "gate_ms": t0 + (t + 1) * INTERVAL_MS})
        assert r.status_code == 201, r.text
    world.clock.now_ms = t0 + day.stop * INTERVAL_MS
    assert len(world.operator.request("POST", "/admin/tick").json()["settled"]) == day.stop
    return world, day


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def grid_world(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('grid') / 'market.db'}"
    else:
        from lemgrid.service.pgtest import fresh_database

        url = fresh_database(request.getfixturevalue("postgres"), "grid_api")
    world, day = _world(url, IPOWER)
    yield world, day
    world.http.close()
    world.http.app.state.market.engine.dispose()


def _lab_offers(book, day) -> list[dict]:
    """The lab's offers as API offers (W rounded down, so that none exceeds the resource)."""
    ids = day.scenario.participants.ids
    out = []
    for k in range(len(book)):
        power_w = math.floor(float(book.kw[k]) * 1000)
        if power_w <= 0:
            continue
        out.append({"provider": str(book.provider[k]), "meter": str(ids[book.participant[k]]),
                    "offer_id": f"f{k}", "interval": day.start + int(book.interval[k]),
                    "resource": str(book.kind[k]), "asset": int(book.asset[k]),
                    "direction": "up" if book.direction[k] > 0 else "down",
                    "power_w": power_w,
                    "price_meur_per_kwh": round(float(book.price_eur_per_kwh[k]) * 1000)})
    return out


def _first_amber_offer(grid_world, lab):
    world, day = grid_world
    offer = next(o for o in _lab_offers(lab[1], day))
    return world, offer


@pytest.mark.slow
def test_traffic_light_after_clearing_equals_lemgrid_simulate(grid_world, lab):
    world, day = grid_world
    lab_day, _ = lab
    lights = world.clients["dso"].get("/grid/lights").json()
    assert [x["interval"] for x in lights] == list(range(day.start, day.stop))
    assert [x["state"] != "green" for x in lights] == lab_day.violations_before.tolist()
    assert Counter(x["state"] for x in lights)["amber"] == 4  # the evening peak, as simulated
    amber = [x for x in lights if x["state"] == "amber"]
    assert all("overload" in x["reason"] or "undervoltage" in x["reason"] for x in amber)
    requests = world.clients[str(day.scenario.participants.ids[0])].get("/grid/requests").json()
    assert [r["interval"] for r in requests] == [x["interval"] for x in amber]
    assert world.operator.get("/ledger/checkpoints").status_code == 200


@pytest.mark.slow
def test_bad_offers_get_422_naming_the_field(grid_world, lab):
    world, offer = _first_amber_offer(grid_world, lab)
    agg = world.clients[offer["provider"]]
    base = {k: v for k, v in offer.items() if k != "provider"}

    def post(payload_changes: dict):
        body = agg.flex_offer_body(**base)
        body["payload"].update(payload_changes)
        if not any(isinstance(v, float) for v in payload_changes.values()):  # unsignable
            body["sig"] = sign_payload(agg.key, body["payload"])
        return agg.request("POST", "/grid/offers", body)

    for change, field in [({"direction": "sideways"}, "direction"), ({"power_w": 0}, "power_w"),
                          ({"power_w": 1.5}, "power_w"), ({"price_meur_per_kwh": 10**9},
                                                          "price_meur_per_kwh"),
                          ({"interval": -1}, "interval"), ({"resource": "Battery!"},
                                                           "resource")]:
        r = post(change)
        assert r.status_code == 422, (change, r.text)
        assert field in r.text, (change, r.text)
    r = post({"power_w": offer["power_w"] + 10**6})  # more than the resource can do
    assert r.status_code == 422 and "payload.power_w" in r.json()["detail"], r.text
    r = post({"asset": 10**6})
    assert r.status_code == 422 and "payload.asset" in r.json()["detail"], r.text
    r = post({"min_power_w": offer["power_w"] + 1})  # a minimum above the offer
    assert r.status_code == 422 and "payload.min_power_w" in r.json()["detail"], r.text
    assert post({"min_power_w": 0}).status_code == 422
    green = next(x["interval"] for x in world.operator.get("/grid/lights").json()
                 if x["state"] == "green")
    r = post({"interval": green})  # no request there
    assert r.status_code == 422 and "payload.interval" in r.json()["detail"], r.text
    assert world.clients["dso"].get("/grid/offers").json() == []  # nothing stored


@pytest.mark.slow
def test_grid_endpoints_authorisation(grid_world, lab):
    world, offer = _first_amber_offer(grid_world, lab)
    household = world.clients[offer["meter"]]
    other = next(world.clients[name] for name in world.households if name != offer["meter"])
    for path in ("/grid/lights",):
        assert world.clients["dso"].get(path).status_code == 200
        assert world.operator.get(path).status_code == 200
        assert world.clients["tso"].get(path).status_code == 200
        assert household.get(path).status_code == 403
        assert world.clients[offer["provider"]].get(path).status_code == 403
    assert household.request("POST", "/grid/days/0/clear").status_code == 403
    assert world.clients["tso"].request("POST", "/grid/days/0/clear").status_code == 403
    assert world.clients["dso"].get("/grid/offers").status_code == 200
    assert world.clients["tso"].get("/grid/offers").status_code == 403
    base = {k: v for k, v in offer.items() if k not in ("provider", "meter")}
    # another household's meter, by a household; a non-member's meter, by the aggregator
    r = other.submit_flex_offer(**base, meter=offer["meter"])
    assert r.status_code == 403 and "meter" in r.json()["detail"], r.text
    outsider = next(name for name in world.households
                    if name not in world.members[offer["provider"]])
    r = world.clients[offer["provider"]].submit_flex_offer(**base, meter=outsider)
    assert r.status_code == 403 and "meter" in r.json()["detail"], r.text
    # The DSO does not sell, nor does the TSO.
    r = world.clients["dso"].submit_flex_offer(**base, meter=offer["meter"])
    assert r.status_code == 403
    assert world.clients["dso"].get("/grid/offers").json() == []  # nothing stored


@pytest.mark.slow
def test_activations_over_the_api_equal_lemgrid_simulate(grid_world, lab):
    world, day = grid_world
    lab_day, book = lab
    posted = _lab_offers(book, day)
    for o in posted:
        r = world.clients[o["provider"]].submit_flex_offer(
            **{k: v for k, v in o.items() if k != "provider"})
        assert r.status_code == 201, r.text
    # a replayed offer (same id) is refused
    o = posted[0]
    r = world.clients[o["provider"]].submit_flex_offer(
        **{k: v for k, v in o.items() if k != "provider"})
    assert r.status_code == 409
    r = world.clients["dso"].request("POST", f"/grid/days/{day.start}/clear")
    assert r.status_code == 200, r.text
    assert world.clients["dso"].request("POST", f"/grid/days/{day.start}/clear"
                                        ).status_code == 409  # once
    lights = world.clients["dso"].get("/grid/lights").json()
    assert [x["state"] for x in lights] == lab_day.state.tolist()
    assert [x["reason"] for x in lights] == lab_day.reason
    acts = world.clients["dso"].get("/grid/activations").json()
    rec = lab_day.records
    lab_acts = np.flatnonzero(rec.kind != "reservation")
    assert len(acts) == len(lab_acts) > 0

    def key(interval, resource, direction, buyer):
        return (int(interval), resource, direction, buyer)

    by_offer = {o["offer_id"]: o for o in posted}
    server = Counter()
    for a in acts:
        o = by_offer[a["offer_id"]]
        server[key(a["interval"], f"{o['resource']}:{o['asset']}", a["direction"],
                   a["buyer"])] += a["power_w"] / 1000
    simulated = Counter()
    for j in lab_acts:
        simulated[key(day.start + rec.t[j], str(rec.resource[j]), str(rec.direction[j]),
                      str(rec.buyer[j]))] += float(rec.kw[j])
    assert server.keys() == simulated.keys()
    worst = max(abs(server[k] - simulated[k]) for k in simulated)
    # W and m€/kWh units move the LP's choice by at most a few tens of W on a resource
    assert worst < 0.1, worst
    total = sum(simulated.values())
    assert abs(sum(server.values()) - total) < 1e-3 * total
    lab_price = float(np.mean(rec.price_eur_per_kwh[lab_acts]))
    assert abs(np.mean([a["price_meur_per_kwh"] for a in acts]) / 1000 - lab_price) < 2e-3
    # a participant sees only its own; the ledger holds every activation, then verifies
    provider = acts[0]["provider"]
    mine = world.clients[provider].get("/grid/activations").json()
    assert mine and all(a["provider"] == provider for a in mine)
    assert len(mine) == sum(a["provider"] == provider for a in acts)
    for agg in set(world.members) - {provider}:  # the other aggregator sees none of them
        theirs = world.clients[agg].get("/grid/activations").json()
        assert all(a["provider"] == agg for a in theirs)
        assert len(theirs) == sum(a["provider"] == agg for a in acts)
    household = world.clients[by_offer[acts[0]["offer_id"]]["meter"]]
    assert household.get("/grid/activations").json() == []  # its aggregator sold, not it
    market = world.http.app.state.market
    kinds = Counter(e["payload"]["kind"] for e in market.ledger.entries())
    assert kinds["flex-activation"] == len(acts)
    assert kinds["flex-offer"] == len(posted)
    report = verify_ledger(world.url)
    assert report.ok, report.problem


@pytest.mark.slow
def test_minimum_acceptance_quantities_are_honoured_by_the_dsos_clearing(lab, tmp_path):
    """The lab's offers, each with its whole power as its minimum: every offer is activated
    whole or not at all (what whole offers cannot fix turns red, as the DSO's day says), and
    the ledger's offers carry their minimum."""
    world, day = _world(f"sqlite:///{tmp_path / 'market.db'}", IPOWER)
    posted = _lab_offers(lab[1], day)
    for o in posted:
        r = world.clients[o["provider"]].submit_flex_offer(
            **{k: v for k, v in o.items() if k != "provider"}, min_power_w=o["power_w"])
        assert r.status_code == 201, r.text
    r = world.clients["dso"].request("POST", f"/grid/days/{day.start}/clear")
    assert r.status_code == 200, r.text
    acts = world.clients["dso"].get("/grid/activations").json()
    assert acts
    activated = Counter()
    for a in acts:
        activated[a["offer_id"]] += a["power_w"]
    power = {o["offer_id"]: o["power_w"] for o in posted}
    for offer_id, w in activated.items():
        assert abs(w - power[offer_id]) <= 1, (offer_id, w, power[offer_id])  # whole
    market = world.http.app.state.market
    offers = [e["payload"] for e in market.ledger.entries()
              if e["payload"]["kind"] == "flex-offer"]
    assert len(offers) == len(posted) and all(
        o["min_power_w"] == o["power_w"] for o in offers)
    assert verify_ledger(world.url).ok
    world.http.close()
    market.engine.dispose()


@pytest.fixture
def heavy_scenario(tmp_path) -> Path:
    """The scenario with loads 40 times larger: the feeder's power flow does not converge."""
    text = IPOWER.read_text().replace("days: 1\n", "days: 1\nscale: {load: 40}\n")
    path = tmp_path / "heavy.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_a_non_converged_interval_is_red(db_url, heavy_scenario):
    world = make_world(db_url, engine.load_market(str(heavy_scenario)))
    world.join("dso", role="dso", meter="-")
    feed: list[dict] = []  # what GET /feed streams
    world.http.app.state.market.subscribers.append(feed.append)
    world.session("d-1", interval=1, mechanism="none")  # the scenario's design: no market
    world.close("d-1")
    light = world.clients["dso"].get("/grid/lights").json()
    assert [(x["interval"], x["state"], x["reason"]) for x in light] == [
        (1, "amber", NONCONVERGED_REASON)]
    assert world.clients["dso"].request("POST", "/grid/days/1/clear").status_code == 200
    light = world.clients["dso"].get("/grid/lights").json()
    assert [(x["interval"], x["state"]) for x in light] == [(1, "red")]
    assert NONCONVERGED_REASON in light[0]["reason"]
    lights = [(e["interval"], e["state"], e["stage"]) for e in feed
              if e["event"] == "traffic-light"]
    assert lights == [(1, "amber", "forecast"), (1, "red", "cleared")]
    assert [e["interval"] for e in feed if e["event"] == "flex-request"] == [1]
    kinds = [e["payload"]["kind"] for e in world.http.app.state.market.ledger.entries()]
    assert kinds.count("traffic-light") == 2
    world.http.close()
    world.http.app.state.market.engine.dispose()


def test_market_without_dso_has_no_grid(world):
    world.join("dso", role="dso", meter="-")
    r = world.clients["dso"].get("/grid/lights")
    assert r.status_code == 404 and "dso" in r.json()["detail"]
