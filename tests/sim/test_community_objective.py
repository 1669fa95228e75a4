"""The community clearing's objective is what the members pay (issue 10, item 8), checked against
an LP formulated another way: member by member in PuLP, solved by CBC, with each member's draw
split into what neighbours supply (local network charge) and what the retailer supplies (import
price), and each member's feed-in into what neighbours take and what the retailer takes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pulp
import pytest

from lemgrid.session import to_owners
from lemgrid.market.community import CommunityProblem, solve_community
from lemgrid.scenario import build_scenario, parse_scenario
from lemgrid.sim.designs import rule_schedules

SCENARIO = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
resolution: 60min
scale: {pv: 2.0}
assets:
  - {type: battery, every: 3, capacity_kwh: 10, power_kw: 5, efficiency: 0.9}
  - {type: ev, every: 5, power_kw: 11, energy_kwh: 9, arrival: "17:00", departure: "23:00"}
"""
LOCAL, LEVIES = 0.03, 0.02


def members_bill_lp(problem: CommunityProblem) -> tuple[float, float]:
    """(optimal objective, members' total bill at the optimum) of the member-level LP."""
    n_t, n = problem.load_p_kw.shape
    dt = problem.dt_h
    b, s = problem.batteries, problem.windows
    m = pulp.LpProblem("members", pulp.LpMinimize)
    V = pulp.LpVariable
    T, N, B = range(n_t), range(n), range(len(b))
    curt = {(t, i): V(f"curt_{t}_{i}", 0, float(problem.pv_p_kw[t, i])) for t in T for i in N}
    ch = {(t, k): V(f"ch_{t}_{k}", 0, float(b.power_kw[k])) for t in T for k in B}
    dis = {(t, k): V(f"dis_{t}_{k}", 0, float(b.power_kw[k])) for t in T for k in B}
    soc = {(t, k): V(f"soc_{t}_{k}", float(b.soc_min[k] * b.capacity_kwh[k]),
                     float(b.soc_max[k] * b.capacity_kwh[k])) for t in T for k in B}
    ses = {(k, t): V(f"ses_{k}_{t}", 0, float(s.power_kw[k])) for k in range(len(s))
           for t in range(int(s.start[k]), int(s.stop[k]))}
    # Draw from neighbours / from the retailer, feed-in to neighbours / to the retailer [kW].
    from_local = {(t, i): V(f"fl_{t}_{i}", 0) for t in T for i in N}
    from_retail = {(t, i): V(f"fr_{t}_{i}", 0) for t in T for i in N}
    to_local = {(t, i): V(f"tl_{t}_{i}", 0) for t in T for i in N}
    to_retail = {(t, i): V(f"tr_{t}_{i}", 0) for t in T for i in N}
    retail = problem.import_eur_per_kwh
    export = problem.export_eur_per_kwh
    money = pulp.lpSum(
        dt * (retail[t] * from_retail[t, i] + (LOCAL + LEVIES) * from_local[t, i]
              + LEVIES * from_retail[t, i] - export[t] * to_retail[t, i])
        for t in T for i in N)
    value, wear = problem.curtailment_eur_per_kwh, problem.battery_wear_eur_per_kwh
    m += money + pulp.lpSum(
        [dt * value * v for v in curt.values()]
        + [dt * (value * (1 - b.eta_charge[k]) + wear) * ch[t, k]
           + dt * (value * (1 / b.eta_discharge[k] - 1) + wear) * dis[t, k] for t in T for k in B])
    for t in T:
        m += pulp.lpSum(from_local[t, i] for i in N) == pulp.lpSum(to_local[t, i] for i in N)
        for i in N:
            own = [k for k in B if b.owner[k] == i]
            flexible = pulp.lpSum(ses[k, t] for k in range(len(s))
                                  if s.owner[k] == i and (k, t) in ses)
            m += (problem.pv_p_kw[t, i] - curt[t, i] - problem.load_p_kw[t, i]
                  + pulp.lpSum(dis[t, k] - ch[t, k] for k in own) - flexible
                  == to_local[t, i] + to_retail[t, i] - from_local[t, i] - from_retail[t, i])
        for k in B:
            before = soc[t - 1, k] if t else float(b.soc_initial[k] * b.capacity_kwh[k])
            m += soc[t, k] == before + dt * (b.eta_charge[k] * ch[t, k]
                                              - dis[t, k] / b.eta_discharge[k])
    for k in B:
        m += soc[n_t - 1, k] == float(problem.final_soc_kwh[k])
    for k in range(len(s)):
        m += pulp.lpSum(dt * ses[k, t] for t in range(int(s.start[k]), int(s.stop[k]))) == float(
            s.energy_kwh[k])
    m += money <= problem.reference_cost_eur
    status = m.solve(pulp.PULP_CBC_CMD(msg=False))
    assert pulp.LpStatus[status] == "Optimal"
    return float(pulp.value(m.objective)), float(pulp.value(money))


def members_bill(problem: CommunityProblem, schedule_kw: np.ndarray) -> float:
    """What the members pay for a schedule, by the settlement's rule: the community matches
    min(drawn, fed in) locally, the rest goes to the retailer."""
    energy = schedule_kw * problem.dt_h
    drawn, fed = np.maximum(-energy, 0).sum(axis=1), np.maximum(energy, 0).sum(axis=1)
    matched = np.minimum(drawn, fed)
    return float((problem.import_eur_per_kwh * (drawn - matched)
                  - problem.export_eur_per_kwh * (fed - matched)
                  + LOCAL * matched + LEVIES * drawn).sum())


@pytest.fixture(scope="module")
def problem():
    scenario = build_scenario(parse_scenario(SCENARIO))
    base = CommunityProblem.from_scenario(scenario)
    rules = rule_schedules(base.load_p_kw, base.pv_p_kw, base.kinds, base.dt_h)
    return replace(base, local_network_eur_per_kwh=LOCAL, levies_eur_per_kwh=LEVIES,
                   kinds_final_state={"battery": rules.soc_kwh[-1]}), rules


def objective(problem: CommunityProblem, result) -> float:
    lp_ch = problem.curtailment_eur_per_kwh * (1 - problem.batteries.eta_charge) \
        + problem.battery_wear_eur_per_kwh
    lp_dis = problem.curtailment_eur_per_kwh * (1 / problem.batteries.eta_discharge - 1) \
        + problem.battery_wear_eur_per_kwh
    dt = problem.dt_h
    return (members_bill(problem, result.schedule_kw)
            + float((result.curtailment_kw * problem.curtailment_eur_per_kwh * dt).sum())
            + float((result.charge_kw * lp_ch * dt).sum() + (result.discharge_kw * lp_dis * dt).sum()))


@pytest.mark.parametrize("wear", [0.001, 0.2])
def test_objective_equals_the_member_level_lp(problem, wear):
    """With the reference row (at most the business-as-usual bill) and ends exactly where the
    rules leave the batteries. With wear at 0.20 EUR/kWh the manager would rather not cycle the
    batteries at all and let members pay more than alone; the row keeps the bill down."""
    base, rules = problem
    net = (base.pv_p_kw - base.load_p_kw
           + to_owners(rules.battery_kw, base.batteries.owner, base.shape[1])
           - to_owners(rules.window_kw, base.windows.owner, base.shape[1]))
    reference = members_bill(base, net)
    p = replace(base, battery_wear_eur_per_kwh=wear, reference_cost_eur=reference)
    result = solve_community(p)
    independent, independent_money = members_bill_lp(p)
    assert objective(p, result) == pytest.approx(independent, rel=1e-7, abs=1e-6)
    assert members_bill(p, result.schedule_kw) <= reference + 1e-6
    np.testing.assert_allclose(result.soc_kwh[-1], rules.soc_kwh[-1], atol=1e-6)
    if wear > 0.1:
        free = solve_community(replace(p, reference_cost_eur=None))
        assert members_bill(p, free.schedule_kw) > reference + 0.01  # the row binds
        assert independent_money == pytest.approx(reference, abs=1e-6)
