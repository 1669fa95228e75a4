"""A power flow that does not converge is a violation of its own (issue 10, item 1): red in the
DSO's traffic light with the reason "power flow did not converge", counted in the KPIs of
``simulate`` and ``optimize``, and shown in the report, never green.

The case: Baran & Wu's 33-bus feeder with household profiles and seven times its loads; at the
midday peak (16 MW against the published 3.7 MW) the feeder has no power-flow solution, which
pandapower's Newton-Raphson confirms (``runpp`` raises LoadflowNotConverged)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lemgrid.grid.kpis import NONCONVERGED_REASON
from lemgrid.grid.powerflow import run_powerflow
from lemgrid.scenario import build_scenario, parse_scenario
from lemgrid.sim.outputs import write_simulation
from lemgrid.sim.runner import optimize, simulate

COLLAPSE = """
name: ieee33-collapse
grid: ieee33
start: 2016-01-11
days: 1
resolution: 60min
default_profiles: {load: H0-A, pv: PV3}
scale: {load: 7}
market: {design: none}
dso: {}
"""


@pytest.fixture(scope="module")
def collapse():
    scenario = build_scenario(parse_scenario(COLLAPSE))
    flow = run_powerflow(scenario.network,
                         *scenario.bus_injections(scenario.participants.net_p_kw))
    return scenario, ~flow.converged


def test_pandapower_has_no_solution_at_the_peak(collapse):
    import pandapower as pp

    from lemgrid.grid.sources import load_pandapower_net

    scenario, collapsed = collapse
    t = int(np.flatnonzero(collapsed)[0])
    p_kw, q_kvar = scenario.bus_injections(scenario.participants.net_p_kw)
    net = load_pandapower_net("ieee33")
    net.load.drop(net.load.index, inplace=True)
    position = {str(name): k for k, name in enumerate(scenario.network.bus_names)}
    for index, name in zip(net.bus.index, net.bus.name.astype(str), strict=True):
        k = position[name]
        if p_kw[t, k] or q_kvar[t, k]:
            pp.create_load(net, index, p_mw=-p_kw[t, k] / 1e3, q_mvar=-q_kvar[t, k] / 1e3)
    assert net.load.p_mw.sum() > 15.0  # MW, four times the published 3.7 MW
    with pytest.raises(pp.LoadflowNotConverged):
        pp.runpp(net, max_iteration=100, numba=False)


def test_a_collapsed_interval_is_red_counted_and_reported(collapse, tmp_path):
    scenario, collapsed = collapse
    assert 0 < collapsed.sum() < len(collapsed)
    result = simulate(scenario)
    state = result.tables["grid_state"]
    assert (state.state[collapsed] == "red").all()
    assert all(NONCONVERGED_REASON in r for r in state.reason[collapsed])
    k = result.kpis
    assert k["nonconverged_intervals"] == collapsed.sum()
    assert k["bau_nonconverged_intervals"] == k["scheduled_nonconverged_intervals"] \
        == collapsed.sum()
    # Every violated interval at delivery, the collapsed ones included, is red and counted.
    assert k["violation_intervals"] == k["red_intervals"] == int((state.state == "red").sum())
    assert k["violation_intervals"] >= k["voltage_violation_intervals"] + collapsed.sum()
    assert np.isfinite(k["vm_min_pu"])  # over the converged intervals

    paths = write_simulation(result, tmp_path)
    written = json.loads(paths["kpis"].read_text())
    assert written["nonconverged_intervals"] == collapsed.sum()
    html = paths["report"].read_text(encoding="utf-8")
    assert f"did not converge in {collapsed.sum()} of {len(collapsed)} intervals" in html
    assert f"{scenario.time_index[np.flatnonzero(collapsed)[0]]:%Y-%m-%d %H:%M}" in html


def test_optimize_counts_the_collapse(collapse):
    scenario, collapsed = collapse
    k = optimize(scenario, "community").kpis
    assert k["scheduled_nonconverged_intervals"] == k["nonconverged_intervals"] \
        == collapsed.sum()
    assert k["violation_intervals"] >= k["voltage_violation_intervals"] + collapsed.sum()
    assert np.isfinite(k["vm_min_pu"]) and k["vm_max_pu"] < 1.0
