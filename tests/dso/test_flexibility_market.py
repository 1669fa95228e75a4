"""DSO flexibility markets: violations removed in AC at less cost than curtailment alone,
cost-effective choice by sensitivity (against brute force), no double activation across DSO and
TSO markets, forwarded offers unchanged, harmful TSO activations rejected, bad input refused."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from lemgrid.dso.flex_market import GridNeed, clear_flex_worst_violation_first, clear_optimal, \
    clear_requests_merit_order
from lemgrid.dso.flexibility import DOWN, UP, ActivationRegistry, FlexOffers, FlexRequests
from lemgrid.errors import InputError
from lemgrid.grid.kpis import GridLimits
from lemgrid.grid.sensitivity import linearize
from lemgrid.grid.sources import load_grid
from lemgrid.scenario import build_scenario, parse_scenario
from lemgrid.sim.runner import simulate

CONGESTED = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 2
scale: {{pv: 6.0}}
assets:
  - {{type: battery, every: 2, capacity_kwh: 10, power_kw: 5}}
  - {{type: ev, every: 3, power_kw: 11, energy_kwh: 8}}
market: {{design: uniform}}
dso:
{dso}
"""


def run(dso: str, design: str = "uniform"):
    scenario = build_scenario(parse_scenario(CONGESTED.format(dso=dso).replace(
        "design: uniform", f"design: {design}")))
    return scenario, simulate(scenario)


@pytest.mark.slow
@pytest.mark.parametrize("clearing", ["optimal", "continuous"])
def test_flexibility_removes_violations_cheaper_than_curtailment(clearing):
    _, flex = run(f"  flexibility: {{clearing: {clearing}}}")
    _, curtail = run("  flexibility: {enabled: false}")
    k, c = flex.kpis, curtail.kpis
    assert k["bau_overload_intervals"] > 10  # PV x6 overloads the transformer without a DSO
    assert k["amber_intervals"] > 10 and k["red_intervals"] == 0
    assert k["voltage_violation_intervals"] == 0 and k["overload_intervals"] == 0
    assert c["red_intervals"] > 10 and c["overload_intervals"] == 0
    assert k["flex_cost_eur"] < c["red_cost_eur"]
    assert abs(k["budget_gap_eur"]) < 0.005
    assert set(flex.tables["grid_state"].state) == {"green", "amber"}


def test_optimal_choice_equals_brute_force(one_constraint_case):
    """With one binding constraint the least-cost activation has at most one partial offer:
    enumerate every assignment of each offer to none / full / partial."""
    lin, need, offers, far = one_constraint_case
    dt = 0.25
    acts, unmet = clear_optimal(offers, offers.kw, dt, need=need)
    assert unmet["voltage_pu"] < 1e-9
    cost = float((acts.kw * acts.price_eur_per_kwh).sum() * dt)

    excess = lin.vm_pu[0, far] - need.limits.vm_max_pu
    effect = lin.dvm_dp[0, far, offers.bus]  # p.u. lowered per kW of less injection
    assert np.all(effect > 0) and excess > 0
    best = np.inf
    for choice in itertools.product((0, 1, 2), repeat=len(offers)):  # 0 none, 1 full, 2 partial
        if choice.count(2) > 1:
            continue
        full = np.array(choice) == 1
        relieved = (effect * offers.kw)[full].sum()
        total = (offers.price_eur_per_kwh * offers.kw)[full].sum() * dt
        if 2 in choice:
            j = choice.index(2)
            kw = (excess - relieved) / effect[j]
            if not 0 <= kw <= offers.kw[j]:
                continue
            total += offers.price_eur_per_kwh[j] * kw * dt
        elif relieved < excess - 1e-12:
            continue
        best = min(best, total)
    assert cost == pytest.approx(best, rel=1e-6)
    # The cheapest per unit of grid effect go first - not simply the cheapest per kWh.
    order = np.argsort(offers.price_eur_per_kwh / effect)
    assert order[0] != np.argmin(offers.price_eur_per_kwh)  # sensitivity matters in this case
    used = np.zeros(len(offers))
    used[acts.offer] = acts.kw
    partial = [i for i, j in enumerate(order) if 1e-6 < used[j] < offers.kw[j] - 1e-6]
    last = partial[0] if partial else int(np.flatnonzero(used[order] > 1e-6).max())
    assert np.all(used[order[:last]] == pytest.approx(offers.kw[order[:last]]))
    assert np.all(used[order[last + 1:]] < 1e-6)
    # The order-book variant makes the same choice here.
    greedy, _ = clear_flex_worst_violation_first(offers, offers.kw, dt, need)
    assert float((greedy.kw * greedy.price_eur_per_kwh).sum() * dt) == pytest.approx(cost,
                                                                                      rel=1e-6)


def test_pay_as_clear_pays_at_least_the_bid(one_constraint_case):
    _, need, offers, far = one_constraint_case
    bid, _ = clear_optimal(offers, offers.kw, 0.25, need=need, pricing="pay-as-bid")
    clear, _ = clear_optimal(offers, offers.kw, 0.25, need=need, pricing="pay-as-clear")
    np.testing.assert_allclose(bid.kw, clear.kw)
    assert np.all(clear.price_eur_per_kwh >= bid.price_eur_per_kwh - 1e-12)
    # All activated offers get the same price per unit of relief: the marginal one's.
    effect = need.linearization.dvm_dp[0, far, offers.bus[clear.offer]]
    per_unit = clear.price_eur_per_kwh / effect
    assert np.ptp(per_unit) < 1e-9


@pytest.mark.slow
def test_no_double_activation_across_dso_and_tso_markets():
    scenario, r = run("  coordination: {scheme: local-first, tso_requests: "
                      "[{from: '06:00', to: '20:00', direction: down, kw: 15}]}")
    acts = r.tables["flex_activations"]
    acts = acts[acts.direction != "reserved"]
    assert set(acts.buyer) == {"DSO", "TSO"}
    # Per resource, interval and direction, DSO and TSO together never take more than the
    # resource has: batteries 5 kW each way (plus what reversing its schedule frees: < 10 kW),
    # EVs their 11 kW, PV what it generates in that interval.
    per = acts.groupby(["resource", "kind", "interval", "direction"]).kw.sum().reset_index()
    pv = scenario.participants.pv_p_kw
    t = scenario.time_index.get_indexer(per.interval)
    owner = per.resource.str.split(":").str[1].astype(int)
    limit = np.select([per.kind == "battery", per.kind == "ev", per.kind == "pv"],
                      [10.0, 11.0, pv[t, owner.clip(upper=pv.shape[1] - 1)]], 0.0)
    assert np.all(per.kw.to_numpy() <= limit + 1e-6)


def test_forwarded_offers_keep_price_and_capacity_and_registry_refuses_twice(
        one_constraint_case):
    _, need, offers, _ = one_constraint_case
    registry = ActivationRegistry()
    dso, _ = clear_optimal(offers, registry.remaining(offers), 0.25, need=need)
    registry.record(offers, dso)
    left = registry.remaining(offers)
    np.testing.assert_allclose(left + np.bincount(dso.offer, dso.kw, len(offers)), offers.kw)
    requests = FlexRequests(buyer=np.array(["TSO"]), service=np.array(["balancing"]),
                            interval=np.array([0]), area=np.ones((1, need.linearization
                                                                   .vm_pu.shape[1]), bool),
                            direction=np.array([DOWN]), kw=np.array([100.0]),
                            max_price_eur_per_kwh=np.array([1.0]))
    tso = clear_requests_merit_order(offers, left, requests)
    # Forwarded: the same prices, and never more than what the DSO left.
    np.testing.assert_allclose(tso.price_eur_per_kwh, offers.price_eur_per_kwh[tso.offer])
    assert np.all(tso.kw <= left[tso.offer] + 1e-9)
    registry.record(offers, tso)
    with pytest.raises(InputError, match="activated twice"):
        registry.record(offers, tso)


def test_tso_activation_that_harms_the_distribution_grid_is_rejected():
    """Voltage at the feeder's end close to its upper limit: a TSO request for more injection
    may take the offer near the transformer, not the one far down the feeder."""
    grid = load_grid("simbench:1-LV-rural1--0-sw")
    net = grid.network
    p, q = grid.profiles.bus_injections(net)
    k = int(np.argmax(grid.profiles.sgen_p_kw.sum(axis=1)))
    lin = linearize(net, p[k:k + 1], q[k:k + 1])
    far = int(np.nanargmax(lin.vm_pu[0]))
    near = int(np.nanargmin(np.abs(lin.dvm_dp[0, far, :]) + 1e3 * (net.bus_node < 0)
                            + 1e3 * (np.arange(net.n_bus) == net.slack_bus)))
    limits = GridLimits(0.9, float(lin.vm_pu[0, far]) + 0.0005, 1000.0)
    monitored = np.flatnonzero(net.bus_node >= 0)
    guard = GridNeed(np.array([0]), lin, limits, np.zeros((1, net.n_bus)),
                     np.zeros((1, net.n_branch)), monitored, np.array(["CM"]))
    offers = FlexOffers(
        provider=np.array(["far", "near"]), participant=np.array([0, 1]),
        kind=np.array(["battery", "battery"]), asset=np.array([0, 1]), bus=np.array([far, near]),
        interval=np.array([0, 0]), direction=np.array([UP, UP]), kw=np.array([20.0, 20.0]),
        price_eur_per_kwh=np.array([0.01, 0.20]), availability_eur_per_kw_h=np.zeros(2),
        window_start=np.zeros(2, int), window_stop=np.ones(2, int))
    requests = FlexRequests(np.array(["TSO"]), np.array(["balancing"]), np.array([0]),
                            np.ones((1, net.n_bus), bool), np.array([UP]), np.array([5.0]),
                            np.array([1.0]))
    unguarded = clear_requests_merit_order(offers, offers.kw, requests)
    assert list(offers.provider[unguarded.offer]) == ["far"]  # cheapest
    guarded = clear_requests_merit_order(offers, offers.kw, requests, guard=guard)
    assert list(offers.provider[guarded.offer]) == ["near"]


def test_bad_flexibility_input_is_refused(tmp_path, one_constraint_case):
    _, need, offers, _ = one_constraint_case
    from dataclasses import replace

    with pytest.raises(InputError, match="kw must be >= 0"):
        replace(offers, kw=-offers.kw).validate(40)
    with pytest.raises(InputError, match="outside its availability window"):
        replace(offers, interval=offers.interval + 3).validate(40)
    with pytest.raises(InputError, match="unknown bus position"):
        replace(offers, bus=offers.bus + 100).validate(40)
    with pytest.raises(InputError, match="unknown bus 'nowhere'"):
        run("  flexibility: {requests: [{from: '10:00', to: '11:00', direction: down, kw: 5, "
            "buses: [nowhere]}]}")
    with pytest.raises(Exception, match="greater than 0"):
        run("  flexibility: {requests: [{from: '10:00', to: '11:00', direction: down, kw: -5}]}")


def test_all_green_day_and_dso_on_business_as_usual():
    """A winter day without problems stays green (and writes empty activation tables); with
    design none the DSO buys flexibility on top of the households' own schedules."""
    scenario = build_scenario(parse_scenario("""
grid: simbench:1-LV-rural1--0-sw
start: 2016-01-06
market: {design: uniform}
dso: {}
"""))
    r = simulate(scenario)
    assert set(r.tables["grid_state"].state) == {"green"}
    assert r.tables["flex_activations"].empty and r.kpis["flex_cost_eur"] == 0
    _, bau = run("  traffic_light: true", design="none")
    assert bau.kpis["amber_intervals"] > 0 and bau.kpis["overload_intervals"] == 0
    assert bau.kpis["local_traded_kwh"] == 0


def test_pay_as_clear_is_capped_where_offers_fall_short(one_constraint_case):
    """Offers too small for the need: the unmet limit's penalty must not become the price."""
    _, need, offers, _ = one_constraint_case
    from dataclasses import replace

    small = replace(offers, kw=offers.kw * 0.01)
    acts, unmet = clear_optimal(small, small.kw, 0.25, need=need, pricing="pay-as-clear",
                                price_cap_eur_per_kwh=0.25)
    assert unmet["voltage_pu"] > 0  # the need cannot be met by these offers
    assert np.all(acts.price_eur_per_kwh <= 0.25 + 1e-12)
    assert np.all(acts.price_eur_per_kwh >= small.price_eur_per_kwh[acts.offer] - 1e-12)


@pytest.mark.slow
def test_each_session_books_its_own_activations(monkeypatch):
    """Offers count intervals from their session's start: what a resource sold at a clock time
    on the first day must not be booked against the same clock time of the second day."""
    from lemgrid.dso import flexibility

    booked: dict[int, set[str]] = {}  # registry -> days of the activations booked in it
    record = flexibility.ActivationRegistry.record

    def spy(self, offers, activations):
        booked.setdefault(id(self), set())
        record(self, offers, activations)
        booked[id(self)].add(spy.day)

    monkeypatch.setattr(flexibility.ActivationRegistry, "record", spy)
    from lemgrid.dso.operator import DsoOperator

    process = DsoOperator.process

    def per_day(self, session, plan):
        spy.day = str(session.scenario.time_index[session.start].date())
        return process(self, session, plan)

    monkeypatch.setattr(DsoOperator, "process", per_day)
    _, result = run("  flexibility: {clearing: optimal}")
    activations = result.tables["flex_activations"]
    days = pd.to_datetime(activations.interval).dt.date.astype(str)
    assert days.nunique() == 2  # both days needed flexibility
    assert booked and all(len(d) == 1 for d in booked.values()), booked


def test_a_request_counts_a_resources_net_move():
    """One battery with 0.75 kWh to give offers 3 kW up and 5 kW down at two intervals; a TSO
    asks for 3 kW up at both. Counting only the up activations, buying down at the first
    interval (cheap) 'makes' the energy to meet both requests while the battery's net move at
    that interval is zero. A request counts a resource's net move: one interval is served
    (0.75 kWh), the other is unmet, and no interval has up and down at once."""
    import scipy.sparse as sp

    dt_h = 0.25
    direction = np.array([UP, DOWN, UP, DOWN])
    offers = FlexOffers(
        provider=np.full(4, "p"), participant=np.zeros(4, int), kind=np.full(4, "battery"),
        asset=np.zeros(4, int), bus=np.zeros(4, int), interval=np.array([0, 0, 1, 1]),
        direction=direction, kw=np.array([3.0, 5.0, 3.0, 5.0]),
        price_eur_per_kwh=np.array([0.10, 0.01, 0.10, 0.01]),
        availability_eur_per_kw_h=np.zeros(4), window_start=np.zeros(4, int),
        window_stop=np.full(4, 2))
    # the energy an up activation takes from the battery, a down activation gives it [kWh]
    budgets = (sp.csr_matrix(direction[None, :] * dt_h), np.array([0.75]))
    requests = FlexRequests(buyer=np.array(["TSO", "TSO"]),
                            service=np.array(["balancing", "balancing"]),
                            interval=np.array([0, 1]), area=np.ones((2, 1), bool),
                            direction=np.array([UP, UP]), kw=np.array([3.0, 3.0]),
                            max_price_eur_per_kwh=np.array([1.0, 1.0]))
    acts, unmet = clear_optimal(offers, offers.kw, dt_h, requests=requests, budgets=budgets)
    kw = np.zeros(4)
    np.add.at(kw, acts.offer, acts.kw)
    net = (kw * direction).reshape(2, 2).sum(axis=1)  # per interval [kW, + = up]
    assert net.sum() == pytest.approx(3.0)
    assert unmet["request_kwh"] == pytest.approx(0.75)
    assert not (kw.reshape(2, 2) > 1e-9).all(axis=1).any()
