"""Grid KPIs (issue 10, items 1 and 10): an interval whose power flow does not converge is a
violation of its own, never within limits; voltage KPIs are those of the studied buses, the slack
apart. References: pandapower's Newton-Raphson (``runpp``) on the same grid and injections."""

from __future__ import annotations

import numpy as np
import pytest

from lemgrid.dso.operator import describe_violations
from lemgrid.grid.kpis import (
    NONCONVERGED_REASON,
    VOLTAGE_TOLERANCE_PU,
    GridLimits,
    grid_kpis,
    studied_buses,
    validate_ac,
    violated_intervals,
)
from lemgrid.grid.powerflow import run_powerflow
from lemgrid.grid.sources import load_grid


def _ieee33(load_factors: list[float]):
    """Baran & Wu's feeder with its published loads scaled by each factor (one interval each)."""
    network = load_grid("ieee33").network
    loads = network.loads
    factors = np.asarray(load_factors)[:, None]
    p = -factors * loads.to_buses(loads.p_kw, network.n_bus).reshape(1, -1)
    q = -factors * loads.to_buses(loads.q_kvar, network.n_bus).reshape(1, -1)
    return network, p, q


def test_pandapower_finds_no_solution_of_ieee33_at_four_times_its_loads(pandapower_net):
    import pandapower as pp

    net = pandapower_net("ieee33")
    net.load["scaling"] = 4.0
    with pytest.raises(pp.LoadflowNotConverged):
        pp.runpp(net, max_iteration=100, numba=False)
    network, p, q = _ieee33([4.0])
    assert not run_powerflow(network, p, q).converged.any()


def test_nonconverged_interval_is_a_violation_and_never_within_limits():
    network, p, q = _ieee33([1.0, 4.0])  # the base case (within 0.90-1.10 p.u.) and a collapse
    limits = GridLimits()
    result = run_powerflow(network, p, q)
    assert list(result.converged) == [True, False]

    kpis = grid_kpis(network, result, limits, dt_h=1.0)
    assert kpis.nonconverged_intervals == 1
    assert kpis.voltage_violation_intervals == 0 and kpis.overload_intervals == 0
    assert kpis.violation_intervals == 1
    assert list(violated_intervals(network, result, limits)) == [False, True]
    # Extremes over the converged interval only: Baran & Wu's 0.9131 p.u. at bus 18.
    assert kpis.vm_min_pu == pytest.approx(0.9131, abs=5e-5) and kpis.vm_min_bus == "18"
    assert kpis.losses_kwh == pytest.approx(202.7, abs=0.1)

    check = validate_ac(network, p, q, limits)
    assert not check.within()
    assert list(check.violated) == [False, True] and check.nonconverged_intervals == 1
    assert np.isnan(check.voltage_excess_pu[1]).all()
    assert np.isnan(check.loading_excess_percent[1]).all()
    assert check.max_voltage_excess_pu == 0.0  # the converged interval is within the band

    bad, reasons, services = describe_violations(network, result, limits)
    assert list(bad) == [False, True]
    assert reasons[1] == NONCONVERGED_REASON and services[1] == ""


def test_kpis_of_a_run_that_never_converged_are_not_a_crash():
    network, p, q = _ieee33([4.0, 5.0])
    kpis = grid_kpis(network, run_powerflow(network, p, q), GridLimits(), dt_h=1.0)
    assert kpis.nonconverged_intervals == kpis.violation_intervals == 2
    assert np.isnan(kpis.vm_min_pu) and np.isnan(kpis.vm_max_pu) and kpis.vm_max_bus == ""


LV_SPEC = "simbench:1-LV-rural1--0-sw"


def _winter_peak():
    """The LV feeder at the interval of its highest load: grid, interval and its injections."""
    grid = load_grid(LV_SPEC)
    k = int(np.argmax(grid.profiles.load_p_kw.sum(axis=1)))
    p, q = grid.profiles.bus_injections(grid.network)
    return grid, k, p[k:k + 1], q[k:k + 1]


def test_voltage_kpis_cover_the_studied_buses_not_the_slack(pandapower_reference, pandapower_net):
    """A winter evening on a SimBench LV feeder: every LV bus is below the MV slack's set-point,
    so the highest voltage of the grid is the slack's, which is not a result. The KPI must be the
    highest LV voltage, as pandapower computes it at the buses other than the external grid's."""
    grid, k, p, q = _winter_peak()
    network = grid.network
    kpis = grid_kpis(network, run_powerflow(network, p, q), GridLimits(), dt_h=0.25)

    net = pandapower_net(LV_SPEC)
    vm, _, _, _ = pandapower_reference(net, grid.profiles, k)
    studied = np.ones(len(vm), bool)
    studied[net.bus.index.get_indexer(net.ext_grid.bus)] = False
    studied &= np.isfinite(vm)
    slack_pu = float(net.ext_grid.vm_pu.iloc[0])
    assert np.nanmax(vm) == pytest.approx(slack_pu)  # the whole grid's maximum is the slack
    assert kpis.vm_max_pu == pytest.approx(vm[studied].max(), abs=1e-6)
    assert kpis.vm_min_pu == pytest.approx(vm[studied].min(), abs=1e-6)
    assert kpis.vm_max_pu < slack_pu - 1e-3
    position = list(network.bus_names).index(kpis.vm_max_bus)
    assert studied_buses(network)[position]


def test_a_slack_outside_a_tight_band_is_no_violation():
    """The slack's set-point is given, not caused by the grid's users: a band that excludes it
    (upper limit below the MV set-point) still judges only the studied buses."""
    grid, _, p, q = _winter_peak()
    network = grid.network
    result = run_powerflow(network, p, q)
    slack_pu = float(np.abs(network.v_slack_pu).max())
    studied_max = float(np.nanmax(result.vm_pu[0, studied_buses(network)]))
    limits = GridLimits(vm_min_pu=0.5, vm_max_pu=0.5 * (slack_pu + studied_max))
    assert grid_kpis(network, result, limits, dt_h=0.25).voltage_violation_intervals == 0
    assert validate_ac(network, p, q, limits).within()


def test_one_definition_of_a_violation_for_kpis_the_dso_and_the_ac_validation():
    """A limit set just below / just above what the feeder reaches: the KPIs, the DSO's traffic
    light and the AC validation of a clearing agree interval by interval, and a limit exceeded
    only within the stated tolerance is no violation anywhere."""
    from lemgrid.grid.kpis import LOADING_TOLERANCE_PERCENT, VOLTAGE_TOLERANCE_PU

    network, p, q = _ieee33([1.0, 1.0, 1.0, 1.0])
    flow = run_powerflow(network, p, q)
    vm_low = float(np.nanmin(np.where(studied_buses(network), flow.vm_pu[0], np.nan)))
    top = float(np.nanmax(flow.loading_percent[0]))
    cases = [  # (limits, violated?)
        (GridLimits(vm_min_pu=vm_low + 0.5 * VOLTAGE_TOLERANCE_PU), False),
        (GridLimits(vm_min_pu=vm_low + 2 * VOLTAGE_TOLERANCE_PU), True),
        (GridLimits(vm_min_pu=0.5, max_loading_percent=top - 0.5 * LOADING_TOLERANCE_PERCENT),
         False),
        (GridLimits(vm_min_pu=0.5, max_loading_percent=top - 2 * LOADING_TOLERANCE_PERCENT), True),
    ]
    for limits, expected in cases:
        k = grid_kpis(network, flow, limits, 1.0)
        bad, _, _ = describe_violations(network, flow, limits)
        check = validate_ac(network, p, q, limits)
        assert (k.violation_intervals == 4) is expected, limits
        assert bool(violated_intervals(network, flow, limits).all()) is expected
        assert bool(bad.all()) is expected and bool(bad.any()) is expected
        assert check.within() is (not expected)


def test_one_definition_of_a_violation_for_the_kpis_the_dso_and_the_ac_check():
    """Baran & Wu's base case reaches 0.9131 p.u.: with the lower limit just above it (less than
    the tolerance) no check calls it a violation; a little more and all three do."""
    network, p, q = _ieee33([1.0])
    result = run_powerflow(network, p, q)
    lowest = float(np.nanmin(np.where(studied_buses(network), result.vm_pu, np.nan)))
    for excess, expected in ((0.5 * VOLTAGE_TOLERANCE_PU, False),
                             (2 * VOLTAGE_TOLERANCE_PU, True)):
        limits = GridLimits(vm_min_pu=lowest + excess)
        assert violated_intervals(network, result, limits)[0] == expected
        assert describe_violations(network, result, limits)[0][0] == expected
        assert validate_ac(network, p, q, limits).violated[0] == expected
