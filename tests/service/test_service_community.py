"""Community sessions on the server: members' signed bids, the manager's clearing with the lab's
code, statements against a hand-computed case, bad bids refused naming the field with nothing
stored, a member reading only its own result, a clearing that fails left ``failed``, and a log
that verifies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa

from lemgrid.assets.tables import Batteries, EnergyWindows
from lemgrid.ledger.units import decimals
from lemgrid.market.community import CommunityProblem
from lemgrid.service import tables as t
from lemgrid.service.community import bid_payload
from lemgrid.settlement.bills import Prices
from lemgrid.sim.designs import clear_community, community_problem_of

PRICES = Prices(import_eur_per_kwh=0.22, network_eur_per_kwh=0.08, export_eur_per_kwh=0.05,
                local_network_eur_per_kwh=0.0, levies_eur_per_kwh=0.0, fixed_eur_per_day=0.0,
                imbalance_short_eur_per_kwh=0.30, imbalance_long_eur_per_kwh=0.05)
MEMBERS = ["alice", "bob", "carol"]


def _problem(load, pv, kinds=None, dt_h=1.0) -> CommunityProblem:
    load, pv = np.asarray(load, float), np.asarray(pv, float)
    n_t = load.shape[0]
    return CommunityProblem(
        ids=np.array(MEMBERS), bus=np.array([1, 2, 3]), dt_h=dt_h, load_p_kw=load, pv_p_kw=pv,
        import_eur_per_kwh=np.full(n_t, PRICES.retail_eur_per_kwh),
        export_eur_per_kwh=np.full(n_t, PRICES.export_eur_per_kwh),
        curtailment_eur_per_kwh=PRICES.export_eur_per_kwh, battery_wear_eur_per_kwh=0.001,
        kinds=kinds or {})


def _open(world, market_id, problem, gate_in_ms=900_000):
    n_t = problem.shape[0]
    r = world.operator.request("POST", "/community/sessions", {
        "market_id": market_id, "interval": 0, "n_intervals": n_t,
        "dt_h": decimals(problem.dt_h), "gate_ms": world.clock.now_ms + gate_in_ms,
        "members": MEMBERS, "bus": [1, 2, 3],
        "prices": {k: decimals(v) for k, v in vars(PRICES).items()},
        "curtailment_eur_per_kwh": decimals(problem.curtailment_eur_per_kwh),
        "battery_wear_eur_per_kwh": decimals(problem.battery_wear_eur_per_kwh)})
    assert r.status_code == 201, r.text
    return r.json()


def _bid(world, market_id, problem, who, **over):
    """``who``'s signed bid; ``over`` replaces payload fields after signing (values a signer
    would refuse to sign, such as floats, still reach the server)."""
    c = world.clients[who]
    body = c.community_bid_body(market_id, interval=0,
                                bid=bid_payload(problem, MEMBERS.index(who)))
    body["payload"].update(over)
    return c.request("POST", f"/markets/{market_id}/community-bids", body)


@pytest.fixture
def members(world):
    for who in MEMBERS:
        world.join(who, sellable_wh=None)
    world.join("agg", role="aggregator", members=["alice"], sellable_wh=None)
    world.join("dave", sellable_wh=None)
    return world


def test_statements_are_the_hand_computed_community_bills(members):
    """One hour: bob's 3 kW of PV, alice and carol draw 2 kW each. The community imports 1 kWh,
    so its internal price is the import price, 0.30 EUR/kWh; the 3 kWh matched locally go to
    alice and carol pro rata (1.5 kWh each). Bob receives 0.90 EUR, alice and carol pay 0.45
    EUR each for local energy; everyone gains against business-as-usual (alone: alice and carol
    pay 2 kWh x 0.30, bob receives 3 kWh x 0.05), so no sharing transfer."""
    world = members
    problem = _problem([[2.0, 0.0, 2.0]], [[0.0, 3.0, 0.0]])
    _open(world, "k1", problem)
    for who in MEMBERS:
        assert _bid(world, "k1", problem, who).status_code == 201
    world.close("k1")
    statements = {who: world.operator.get(f"/markets/k1/statements/{who}").json()["amount_ueur"]
                  for who in MEMBERS}
    assert statements == {"alice": -450_000, "bob": 900_000, "carol": -450_000}
    budget = world.operator.get("/markets/k1/budget").json()
    assert budget["balanced"] and budget["sum_amount_ueur"] == 0
    mine = world.clients["alice"].get("/markets/k1/community/alice").json()
    assert float(mine["reference_eur"]) == pytest.approx(0.60)
    assert float(world.clients["bob"].get("/markets/k1/community/bob").json()[
        "reference_eur"]) == pytest.approx(-0.15)
    assert mine["community"]["price_eur_per_kwh"] == ["0.3"]
    assert mine["positions"]["local_bought_kwh"] == ["1.5"]
    assert mine["positions"]["retail_import_kwh"] == ["0.5"]


def test_a_session_with_batteries_clears_exactly_as_the_lab(members):
    """Four intervals with a battery at alice and PV at bob: what the server publishes is the
    lab's ``clear_community`` of the same problem, number for number."""
    world = members
    rng = np.random.default_rng(3)
    load = rng.uniform(0.2, 2.5, (4, 3))
    pv = np.column_stack([np.zeros(4), rng.uniform(0, 5, 4), np.zeros(4)])
    battery = Batteries(owner=np.array([0]), name=np.array(["home battery"]),
                        capacity_kwh=np.array([6.0]), power_kw=np.array([3.0]),
                        eta_charge=np.array([0.95]), eta_discharge=np.array([0.95]),
                        soc_min=np.array([0.1]), soc_max=np.array([1.0]),
                        soc_initial=np.array([0.5]), soc_final=np.array([0.5]))
    # the lab's problem of the same forecasts and assets, with its business-as-usual reference
    problem, reference = community_problem_of(np.array(MEMBERS), np.array([1, 2, 3]), load, pv,
                                              {"battery": battery}, PRICES, 0.25, 0.05, 0.001)
    _open(world, "k2", problem)
    for who in MEMBERS:
        assert _bid(world, "k2", problem, who).status_code == 201, who
    world.close("k2")
    lab, positions = clear_community(problem, reference, PRICES)
    for i, who in enumerate(MEMBERS):
        mine = world.clients[who].get(f"/markets/k2/community/{who}").json()
        assert mine["positions"]["scheduled_kw"] == decimals(lab.schedule_kw[:, i])
        assert mine["positions"]["sharing_eur"] == decimals(positions.sharing_eur[:, i])
        assert mine["curtailment_kw"] == decimals(lab.curtailment_kw[:, i])
        assert mine["reference_eur"] == decimals(reference[i])
    alice = world.clients["alice"].get("/markets/k2/community/alice").json()
    assert alice["plans"]["battery"]["state"] == decimals(lab.kinds["battery"].state)
    assert alice["community"]["price_eur_per_kwh"] == decimals(lab.price_eur_per_kwh)
    # the members' money is balanced, in the ledger and in the statements
    assert world.operator.get("/markets/k2/budget").json()["balanced"]
    from lemgrid.ledger.verify import verify_ledger

    report = verify_ledger(world.url)
    assert report.ok, report.problem
    ledger = world.http.app.state.market.ledger
    kinds = [ledger.entry(seq)["payload"]["kind"] for seq in range(ledger.size)]
    assert kinds.count("community-bid") == 3 and kinds.count("community-clearing") == 1


def _stored(world):
    m = world.http.app.state.market
    with m.engine.connect() as conn:
        return m.ledger.size, tuple(conn.execute(sa.select(sa.func.count()).select_from(x))
                                    .scalar() for x in (*t.COMMUNITY_TABLES, t.statements))


BAD_BIDS = [
    ({"load_kw": ["1.0"]}, 422, "payload.load_kw: 1 values, the session has 2 intervals"),
    ({"pv_kw": ["-1.0", "0.0"]}, 422, "payload.pv_kw[0]: must be at least 0"),
    ({"pv_kw": ["1e999", "0.0"]}, 422, "payload.pv_kw[0]: '1e999' is not a finite number"),
    ({"pv_kw": ["one", "0.0"]}, 422, "pv_kw"),
    ({"pv_kw": [0.5, "0.0"]}, 422, "pv_kw"),
    ({"interval": 5}, 422, "payload.interval: session 'k3' starts at interval 0"),
    ({"assets": {"rocket": {}}}, 422, "payload.assets.rocket: unknown asset kind 'rocket'"),
    ({"assets": {"battery": {"name": ["b"]}}}, 422, "payload.assets.battery: missing column"),
    ({"assets": {"energy_window": {
        "name": ["ev"], "kind": ["ev"], "start": [0], "stop": [9], "energy_kwh": ["1.0"],
        "power_kw": ["1.0"]}}}, 422, "payload.assets.energy_window.stop: at most 2"),
    ({"assets": {"battery": {"name": ["b"], "capacity_kwh": ["-5"]}}}, 422,
     "payload.assets.battery: missing column(s) power_kw"),
]


@pytest.mark.parametrize("over, status, message", BAD_BIDS, ids=lambda x: str(x)[:40])
def test_bad_bids_are_refused_naming_the_field_nothing_stored(members, over, status, message):
    world = members
    problem = _problem([[1.0, 0.0, 1.0]] * 2, [[0.0, 2.0, 0.0]] * 2)
    _open(world, "k3", problem)
    before = _stored(world)
    r = _bid(world, "k3", problem, "bob", **over)
    assert r.status_code == status and message in r.text, r.text
    assert _stored(world) == before


def test_bids_from_outside_out_of_time_or_twice_are_refused_nothing_stored(members):
    world = members
    problem = _problem([[1.0, 0.0, 1.0]] * 2, [[0.0, 2.0, 0.0]] * 2)
    _open(world, "k4", problem)
    assert _bid(world, "k4", problem, "alice").status_code == 201
    before = _stored(world)
    dave = world.clients["dave"]  # not a member
    body = dave.community_bid_body("k4", interval=0, bid=bid_payload(problem, 0))
    r = dave.request("POST", "/markets/k4/community-bids", body)
    assert r.status_code == 403 and "not a member" in r.text
    r = _bid(world, "k4", problem, "alice")  # a second bid
    assert r.status_code == 409, r.text
    # another participant's bid signed by bob
    bob = world.clients["bob"]
    body = bob.community_bid_body("k4", interval=0, bid=bid_payload(problem, 2))
    body = bob.signed_record({**body["payload"], "participant": "carol"})
    assert bob.request("POST", "/markets/k4/community-bids", body).status_code == 403
    assert _stored(world) == before
    world.close("k4")
    before = _stored(world)
    assert _bid(world, "k4", problem, "carol").status_code == 409  # after the gate
    assert _stored(world) == before


def test_a_member_reads_only_its_own_result(members):
    world = members
    problem = _problem([[1.0, 0.0, 1.0]], [[0.0, 2.0, 0.0]])
    _open(world, "k5", problem)
    for who in MEMBERS:
        assert _bid(world, "k5", problem, who).status_code == 201
    assert world.clients["alice"].get("/markets/k5/community/alice").status_code == 404  # not yet
    world.close("k5")
    assert world.clients["alice"].get("/markets/k5/community/alice").status_code == 200
    assert world.clients["bob"].get("/markets/k5/community/alice").status_code == 403
    assert world.clients["agg"].get("/markets/k5/community/alice").status_code == 200
    assert world.clients["agg"].get("/markets/k5/community/bob").status_code == 403
    assert world.operator.get("/markets/k5/community/carol").status_code == 200
    assert world.clients["bob"].get("/markets/k5/statements/alice").status_code == 403


def test_a_clearing_without_a_schedule_is_failed_not_settled(members):
    """Alice's EV asks for 50 kWh in one hour at 11 kW: no schedule serves the bids."""
    world = members
    ev = EnergyWindows(owner=np.array([0]), name=np.array(["ev"]), kind=np.array(["ev"]),
                       start=np.array([0]), stop=np.array([1]), energy_kwh=np.array([50.0]),
                       power_kw=np.array([11.0]))
    problem = _problem([[1.0, 0.0, 1.0]], [[0.0, 2.0, 0.0]], {"energy_window": ev})
    _open(world, "k6", problem)
    for who in MEMBERS:
        assert _bid(world, "k6", problem, who).status_code == 201
    world.clock.now_ms += 900_000
    assert world.operator.request("POST", "/admin/tick").status_code == 200
    assert world.operator.get("/sessions/k6").json()["state"] == "failed"
    assert world.operator.get("/markets/k6/statements/alice").status_code == 404
    assert world.clients["alice"].get("/markets/k6/community/alice").status_code == 404
    with world.http.app.state.market.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.statements)).scalar() == 0


def test_bad_terms_are_refused_naming_the_field(members):
    world = members
    good = {"market_id": "k7", "interval": 0, "n_intervals": 2, "dt_h": "0.25",
            "gate_ms": world.clock.now_ms + 1000, "members": MEMBERS, "bus": [1, 2, 3],
            "prices": {k: decimals(v) for k, v in vars(PRICES).items()},
            "curtailment_eur_per_kwh": "0.05", "battery_wear_eur_per_kwh": "0.001"}
    for over, message in [({"bus": [1, 2]}, "bus: 2 buses for 3 members"),
                          ({"members": ["a", "a", "b"]}, "members: a member is named twice"),
                          ({"dt_h": "0"}, "dt_h: must be positive"),
                          ({"dt_h": 0.25}, "dt_h"),
                          ({"prices": {**good["prices"], "levies_eur_per_kwh": "x"}},
                           "levies_eur_per_kwh"),
                          ({"curtailment_eur_per_kwh": "1e400"}, "curtailment_eur_per_kwh")]:
        r = world.operator.request("POST", "/community/sessions", {**good, **over})
        assert r.status_code == 422 and message in r.text, (over, r.text)
    assert json.loads(world.operator.request("POST", "/community/sessions", good).text)[
        "state"] == "bidding"
