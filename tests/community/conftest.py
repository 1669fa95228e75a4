"""An independent formulation of the community market in PuLP, solved with CBC."""

from __future__ import annotations

import numpy as np
import pulp
import pytest


def pulp_community_cost(problem, binary_modes: bool = False) -> float:
    """Minimum community cost, modelled element by element (loops, PuLP, CBC): the objective is
    imports at the import price, minus exports at the feed-in tariff, plus curtailed PV and battery
    losses at the curtailment value, plus battery wear."""
    n_t, n = problem.load_p_kw.shape
    dt = problem.dt_h
    b, s = problem.batteries, problem.windows
    m = pulp.LpProblem("community", pulp.LpMinimize)
    V = pulp.LpVariable
    curt = {(t, i): V(f"curt_{t}_{i}", 0, float(problem.pv_p_kw[t, i])) for t in range(n_t)
            for i in range(n)}
    ch = {(t, k): V(f"ch_{t}_{k}", 0, float(b.power_kw[k])) for t in range(n_t)
          for k in range(len(b))}
    dis = {(t, k): V(f"dis_{t}_{k}", 0, float(b.power_kw[k])) for t in range(n_t)
           for k in range(len(b))}
    soc = {(t, k): V(f"soc_{t}_{k}", float(b.soc_min[k] * b.capacity_kwh[k]),
                     float(b.soc_max[k] * b.capacity_kwh[k])) for t in range(n_t)
           for k in range(len(b))}
    ses = {(k, t): V(f"ses_{k}_{t}", 0, float(s.power_kw[k])) for k in range(len(s))
           for t in range(int(s.start[k]), int(s.stop[k]))}
    imp = {t: V(f"imp_{t}", 0) for t in range(n_t)}
    exp = {t: V(f"exp_{t}", 0) for t in range(n_t)}
    value, wear = problem.curtailment_eur_per_kwh, problem.battery_wear_eur_per_kwh
    m += pulp.lpSum(
        [dt * (problem.import_eur_per_kwh[t] * imp[t] - problem.export_eur_per_kwh[t] * exp[t])
         for t in range(n_t)]
        + [dt * value * v for v in curt.values()]
        + [dt * (value * (1 - b.eta_charge[k]) + wear) * ch[t, k]
           + dt * (value * (1 / b.eta_discharge[k] - 1) + wear) * dis[t, k]
           for t in range(n_t) for k in range(len(b))])
    for t in range(n_t):
        supply = pulp.lpSum(problem.pv_p_kw[t, i] - curt[t, i] - problem.load_p_kw[t, i]
                            for i in range(n))
        storage = pulp.lpSum(dis[t, k] - ch[t, k] for k in range(len(b)))
        flexible = pulp.lpSum(ses[k, t] for k in range(len(s)) if (k, t) in ses)
        m += supply + storage - flexible + imp[t] - exp[t] == 0
        for k in range(len(b)):
            before = soc[t - 1, k] if t else float(b.soc_initial[k] * b.capacity_kwh[k])
            m += soc[t, k] == before + dt * (b.eta_charge[k] * ch[t, k]
                                              - dis[t, k] / b.eta_discharge[k])
            if binary_modes:
                mode = V(f"mode_{t}_{k}", cat="Binary")
                m += ch[t, k] <= float(b.power_kw[k]) * mode
                m += dis[t, k] <= float(b.power_kw[k]) * (1 - mode)
    for k in range(len(b)):
        m += soc[n_t - 1, k] >= float(b.soc_final[k] * b.capacity_kwh[k])
    for k in range(len(s)):
        m += pulp.lpSum(dt * ses[k, t] for t in range(int(s.start[k]), int(s.stop[k]))) == float(
            s.energy_kwh[k])
    status = m.solve(pulp.PULP_CBC_CMD(msg=False, gapRel=1e-4 if binary_modes else None))
    assert pulp.LpStatus[status] == "Optimal"
    return float(pulp.value(m.objective))


@pytest.fixture(scope="session")
def independent_cost():
    return pulp_community_cost


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(7)
