"""Sensitivities against finite differences of the AC power flow; electrical distance against
Baran & Wu's line impedances."""

from __future__ import annotations

import numpy as np
import pytest

from lemgrid.grid.distance import electrical_distance_ohm
from lemgrid.grid.powerflow import run_powerflow
from lemgrid.grid.sensitivity import linearize
from lemgrid.grid.sources import load_grid


@pytest.mark.parametrize("spec, step_kw", [("simbench:1-LV-rural1--0-sw", 1e-3),
                                           ("simbench:1-MV-semiurb--0-sw", 0.5)])
def test_sensitivities_match_finite_differences(spec, step_kw):
    grid = load_grid(spec)
    net = grid.network
    p, q = grid.profiles.bus_injections(net)
    intervals = [4000, 21000]
    lin = linearize(net, p[intervals], q[intervals])
    rng = np.random.default_rng(3)
    for row, k in enumerate(intervals):
        for j in rng.choice(np.flatnonzero(net.bus_node >= 0), 3, replace=False):
            shifted = np.tile(p[k], (2, 1))
            shifted[0, j] += step_kw
            shifted[1, j] -= step_kw
            r = run_powerflow(net, shifted, np.tile(q[k], (2, 1)))
            # Central differences: O(h^2) truncation error.
            fd_vm = (r.vm_pu[0] - r.vm_pu[1]) / (2 * step_kw)
            fd_slack = (r.p_slack_kw[0] - r.p_slack_kw[1]) / (2 * step_kw)
            fd_loading = (r.loading_percent[0] - r.loading_percent[1]) / (2 * step_kw)
            scale_v = max(np.nanmax(np.abs(fd_vm)), 1e-12)
            assert np.nanmax(np.abs(fd_vm - lin.dvm_dp[row, :, j])) <= 1e-3 * scale_v
            assert fd_slack == pytest.approx(lin.dpslack_dp[row, j], abs=1e-4)
            scale_l = max(np.abs(fd_loading).max(), 1e-12)
            assert np.abs(fd_loading - lin.dloading_dp[row, :, j]).max() <= 2e-3 * scale_l


# Baran & Wu (1989), Table: branch resistance and reactance [ohm] of the main feeder 1-18.
BW_MAIN_FEEDER_OHM = [
    (0.0922, 0.0470), (0.4930, 0.2511), (0.3660, 0.1864), (0.3811, 0.1941), (0.8190, 0.7070),
    (0.1872, 0.6188), (0.7114, 0.2351), (1.0300, 0.7400), (1.0440, 0.7400), (0.1966, 0.0650),
    (0.3744, 0.1238), (1.4680, 1.1550), (0.5416, 0.7129), (0.5910, 0.5260), (0.7463, 0.5450),
    (1.2890, 1.7210), (0.7320, 0.5740),
]


def test_electrical_distance_is_the_path_impedance_on_a_radial_feeder():
    """On a radial feeder (line charging neglected in case33bw) the Thevenin impedance between two
    buses of the main feeder is the series impedance of the path between them."""
    grid = load_grid("ieee33")
    net = grid.network
    buses = np.array([net.bus_position(str(b)) for b in range(1, 19)])
    d = electrical_distance_ohm(net, buses)
    z = np.array([complex(r, x) for r, x in BW_MAIN_FEEDER_OHM])
    for i, j in [(0, 17), (2, 9), (5, 6), (10, 15)]:
        assert d[i, j] == pytest.approx(abs(z[i:j].sum()), rel=1e-3)
        assert d[j, i] == d[i, j]
    assert np.all(np.diag(d) == 0)
