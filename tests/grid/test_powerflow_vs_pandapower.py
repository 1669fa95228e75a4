"""The batched power flow against pandapower's Newton-Raphson (the independent reference):
max |dV| <= 1e-6 p.u. at randomly drawn intervals of real SimBench grids, radial and meshed."""

from __future__ import annotations

import numpy as np
import pytest

from lemgrid.grid.powerflow import run_powerflow
from lemgrid.grid.sources import grid_from_pandapower, load_grid

TOL_VM_PU = 1e-6
RNG = np.random.default_rng(20161231)
LV_CODES = ["1-LV-rural1--0-sw", "1-LV-semiurb4--0-sw", "1-LV-urban6--0-sw", "1-LV-rural2--2-sw"]
MV_CODES = ["1-MV-semiurb--0-sw", "1-MV-comm--1-sw"]


def _draw_intervals(n_total: int, n: int = 3) -> list[int]:
    return sorted(RNG.choice(n_total, size=n, replace=False).tolist())


def _compare(grid, net, pandapower_reference, intervals, pv_scale=1.0):
    profiles = grid.profiles
    if pv_scale != 1.0:
        from dataclasses import replace

        profiles = replace(profiles, sgen_p_kw=profiles.sgen_p_kw * pv_scale)
    p, q = profiles.bus_injections(grid.network)
    result = run_powerflow(grid.network, p[intervals], q[intervals])
    assert result.converged.all()
    for row, k in enumerate(intervals):
        vm, loading, losses_kw, p_slack_kw = pandapower_reference(net, profiles, k)
        assert np.nanmax(np.abs(result.vm_pu[row] - vm)) <= TOL_VM_PU, (grid.spec, k)
        np.testing.assert_allclose(result.loading_percent[row], loading, atol=1e-4)
        assert result.losses_kw[row] == pytest.approx(losses_kw, abs=1e-4)
        assert result.p_slack_kw[row] == pytest.approx(p_slack_kw, abs=1e-4)


@pytest.mark.parametrize("code", LV_CODES)
def test_lv_grids_match_pandapower(code, pandapower_reference, pandapower_net):
    grid = load_grid(f"simbench:{code}")
    net = pandapower_net(f"simbench:{code}")
    _compare(grid, net, pandapower_reference, _draw_intervals(len(grid.profiles.time_index)))


@pytest.mark.slow
@pytest.mark.parametrize("code", MV_CODES)
def test_mv_grids_match_pandapower(code, pandapower_reference, pandapower_net):
    grid = load_grid(f"simbench:{code}")
    net = pandapower_net(f"simbench:{code}")
    _compare(grid, net, pandapower_reference, _draw_intervals(len(grid.profiles.time_index), 2))


@pytest.mark.slow
def test_meshed_mv_grid_matches_pandapower(pandapower_reference, pandapower_net):
    """Closing SimBench's open ring switches turns the MV feeder into a meshed grid."""
    spec = "simbench:1-MV-comm--0-sw"
    net = pandapower_net(spec)
    net.switch["closed"] = True
    meshed = grid_from_pandapower(net, "meshed-mv-comm")
    assert meshed.network.n_meshes > 2
    _compare(meshed, net, pandapower_reference, _draw_intervals(len(meshed.profiles.time_index), 2))


def test_heavy_pv_lv_grid_matches_pandapower(pandapower_reference, pandapower_net):
    """Reverse flow with voltage rise: PV scaled x4 on a rural feeder."""
    spec = "simbench:1-LV-rural1--0-sw"
    grid, net = load_grid(spec), pandapower_net(spec)
    noon = [int(np.argmax(grid.profiles.sgen_p_kw.sum(axis=1)))]
    _compare(grid, net, pandapower_reference, noon, pv_scale=4.0)


def test_newton_fallback_matches_pandapower(pandapower_reference, pandapower_net):
    """Intervals the fixed point leaves unconverged are solved by Newton-Raphson."""
    spec = "simbench:1-LV-semiurb4--0-sw"
    grid, net = load_grid(spec), pandapower_net(spec)
    intervals = _draw_intervals(len(grid.profiles.time_index), 2)
    p, q = grid.profiles.bus_injections(grid.network)
    result = run_powerflow(grid.network, p[intervals], q[intervals], max_iter=1)
    assert result.newton_intervals == len(intervals)
    assert result.converged.all()
    for row, k in enumerate(intervals):
        vm, *_ = pandapower_reference(net, grid.profiles, k)
        assert np.nanmax(np.abs(result.vm_pu[row] - vm)) <= TOL_VM_PU


def test_whole_year_batch_equals_single_intervals():
    """Chunking over time must not change results: a year in one call equals single calls."""
    grid = load_grid("simbench:1-LV-rural1--0-sw")
    p, q = grid.profiles.bus_injections(grid.network)
    year = run_powerflow(grid.network, p, q)
    assert year.vm_pu.shape == (35136, grid.network.n_bus)
    for k in _draw_intervals(35136, 4):
        single = run_powerflow(grid.network, p[k], q[k])
        np.testing.assert_allclose(year.vm_pu[k], single.vm_pu[0], atol=1e-12)


def test_bad_injections_are_rejected():
    from lemgrid.errors import InputError

    grid = load_grid("simbench:1-LV-rural1--0-sw")
    n = grid.network.n_bus
    with pytest.raises(InputError, match="shape"):
        run_powerflow(grid.network, np.zeros((2, n + 1)), np.zeros((2, n + 1)))
    p = np.zeros((2, n))
    p[1, 3] = np.nan
    with pytest.raises(InputError, match="interval 1"):
        run_powerflow(grid.network, p, np.zeros((2, n)))
