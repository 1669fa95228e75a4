"""Community market against an independent formulation (PuLP + CBC), balances and batteries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lemgrid.errors import InfeasibleError
from lemgrid.market.community import CommunityOptions, CommunityProblem, solve_community
from lemgrid.scenario import build_scenario, parse_scenario

SCENARIO = """
grid: {grid}
start: 2016-06-06
days: 1
scale: {{pv: 2.0}}
assets:
  - {{type: battery, every: 3, capacity_kwh: 10, power_kw: 5, efficiency: 0.9}}
  - {{type: ev, every: 5, power_kw: 11, energy_kwh: 12, arrival: "17:00", departure: "07:30"}}
  - {{type: flexible_load, every: 4, energy_kwh: 2, power_kw: 2, window_start: "09:00", window_end: "18:00"}}
"""


def scenario_for(grid: str, **tariffs):
    text = SCENARIO.format(grid=grid)
    if tariffs:
        text += "tariffs: {" + ", ".join(f"{k}: {v}" for k, v in tariffs.items()) + "}\n"
    return build_scenario(parse_scenario(text))


@pytest.mark.parametrize("grid", ["simbench:1-LV-rural1--0-sw", "simbench:1-LV-semiurb4--0-sw"])
def test_welfare_equals_independent_formulation(grid, independent_cost):
    problem = CommunityProblem.from_scenario(scenario_for(grid))
    assert len(problem.batteries) and len(problem.windows)
    result = solve_community(problem)
    assert -result.welfare_eur == pytest.approx(independent_cost(problem), rel=1e-7, abs=1e-6)


def test_energy_balance_and_member_accounts():
    problem = CommunityProblem.from_scenario(scenario_for("simbench:1-LV-rural1--0-sw"))
    r = solve_community(problem)
    dt = problem.dt_h
    # Per interval: members' injections plus the exchange with the retailer balance to 1e-6 kWh.
    assert np.abs((r.schedule_kw.sum(axis=1) + r.import_kw - r.export_kw) * dt).max() < 1e-6
    # Each member's injection is its PV, load, battery and flexible consumption.
    b = problem.batteries
    battery = np.zeros_like(r.schedule_kw)
    np.add.at(battery, (slice(None), b.owner), r.discharge_kw - r.charge_kw)
    expected = problem.pv_p_kw - r.curtailment_kw - problem.load_p_kw + battery - r.window_kw
    assert np.abs(expected - r.schedule_kw).max() * dt < 1e-6
    # Sessions get their energy; batteries end at their final state of charge.
    assert r.window_kw.sum() * dt == pytest.approx(problem.windows.energy_kwh.sum(), rel=1e-9)
    assert np.all(r.soc_kwh[-1] >= b.soc_final * b.capacity_kwh - 1e-6)
    # Members pay exactly what the community pays the retailer (budget balance).
    assert r.member_cost_eur.sum() == pytest.approx(r.retailer_cost_eur, abs=1e-6)
    # The internal price lies between the feed-in tariff and the retail price.
    assert np.all(r.price_eur_per_kwh >= problem.export_eur_per_kwh - 1e-9)
    assert np.all(r.price_eur_per_kwh <= problem.import_eur_per_kwh + 1e-9)


def _tiny_problem(n_t: int = 12) -> CommunityProblem:
    """Two members, one battery; being paid to import makes burning energy in losses pay."""
    from lemgrid.assets.tables import Batteries, EnergyWindows

    rng = np.random.default_rng(11)
    paid_to_import = np.arange(n_t) < n_t // 2  # a long spell of negative prices
    pv = np.where(paid_to_import[:, None], 0.0, rng.uniform(0.0, 3.0, (n_t, 2)))
    battery = Batteries(
        owner=np.array([0]), name=np.array(["b0"]), capacity_kwh=np.array([6.0]),
        power_kw=np.array([3.0]), eta_charge=np.array([0.9]), eta_discharge=np.array([0.9]),
        soc_min=np.array([0.1]), soc_max=np.array([1.0]), soc_initial=np.array([0.9]),
        soc_final=np.array([0.5]))
    return CommunityProblem(
        ids=np.array(["a", "b"]), bus=np.array([0, 1]), dt_h=0.5,
        load_p_kw=rng.uniform(0.5, 2.0, (n_t, 2)), pv_p_kw=pv,
        kinds={"battery": battery, "energy_window": EnergyWindows.empty()},
        import_eur_per_kwh=np.where(paid_to_import, -0.15, 0.30),
        export_eur_per_kwh=np.where(paid_to_import, -0.20, 0.05),
        curtailment_eur_per_kwh=0.0, battery_wear_eur_per_kwh=0.0)


def test_no_simultaneous_charge_and_discharge_when_burning_pays(independent_cost):
    """Paid to import, the LP relaxation charges and discharges at once to burn energy in
    losses; the clearing must not, and must still be optimal among schedules that do not (an
    independent MILP with a binary mode per battery and interval, PuLP + CBC)."""
    problem = _tiny_problem()
    result = solve_community(problem)
    assert result.lp_solves > 1  # the LP alone did burn energy
    both = (result.charge_kw > 1e-6) & (result.discharge_kw > 1e-6)
    assert not both.any()
    # HiGHS stops within 1e-3 relative gap of the MILP optimum.
    assert -result.welfare_eur == pytest.approx(independent_cost(problem, binary_modes=True),
                                                rel=1e-3, abs=1e-6)


def test_infeasible_session_and_battery_are_named():
    problem = CommunityProblem.from_scenario(scenario_for("simbench:1-LV-rural1--0-sw"))
    s = problem.windows
    greedy = replace(s, energy_kwh=np.where(np.arange(len(s)) == 0, 500.0, s.energy_kwh))
    with pytest.raises(InfeasibleError, match=f"ev '{s.name[0]}'"):
        solve_community(replace(problem, kinds={**problem.kinds, "energy_window": greedy}))
    b = problem.batteries
    full = replace(b, soc_initial=np.zeros(len(b)), soc_final=np.ones(len(b)),
                   power_kw=np.full(len(b), 0.1))
    with pytest.raises(InfeasibleError, match=f"battery '{b.name[0]}'"):
        solve_community(replace(problem, kinds={**problem.kinds, "battery": full}))


def test_nan_profile_is_rejected():
    from lemgrid.errors import InputError

    problem = CommunityProblem.from_scenario(scenario_for("simbench:1-LV-rural1--0-sw"))
    load = problem.load_p_kw.copy()
    load[3, 2] = np.nan
    with pytest.raises(InputError, match=f"member '{problem.ids[2]}' at interval 3"):
        solve_community(replace(problem, load_p_kw=load))
