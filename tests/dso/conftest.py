"""A real feeder at its PV peak with one binding voltage limit: the shared case of the DSO's
flexibility-market tests."""

from __future__ import annotations

import numpy as np
import pytest

from lemgrid.dso.flex_market import GridNeed
from lemgrid.dso.flexibility import DOWN, FlexOffers
from lemgrid.grid.kpis import GridLimits
from lemgrid.grid.sensitivity import linearize
from lemgrid.grid.sources import load_grid


@pytest.fixture
def one_constraint_case():
    """The real rural feeder at its PV peak (PV x2.5): the voltage at the end of the feeder is
    just above the limit; offers to lower injection (down) at five buses, whose effect on that
    voltage differs by their electrical distance to it."""
    grid = load_grid("simbench:1-LV-rural1--0-sw")
    net = grid.network
    p, q = grid.profiles.bus_injections(net)
    k = int(np.argmax(grid.profiles.sgen_p_kw.sum(axis=1)))
    p = p[k:k + 1] + net.sgens.to_buses(grid.profiles.sgen_p_kw[k:k + 1] * 1.5, net.n_bus)
    lin = linearize(net, p, q[k:k + 1])
    order = np.argsort(-np.nan_to_num(lin.vm_pu[0]))
    far = int(order[0])
    # Only the highest voltage is above the limit (by 0.0002 p.u.).
    limits = GridLimits(0.9, float(lin.vm_pu[0, order[1]]) + 1e-5, 1000.0)
    monitored = np.flatnonzero(net.bus_node >= 0)
    need = GridNeed(np.array([0]), lin, limits, np.zeros((1, net.n_bus)),
                    np.zeros((1, net.n_branch)), monitored, np.array(["VM"]))
    buses = np.array([far, 8, 1, 3, 5])
    m = len(buses)
    offers = FlexOffers(
        provider=np.array([f"p{i}" for i in range(m)]), participant=np.arange(m),
        kind=np.array(["battery"] * m), asset=np.arange(m), bus=buses,
        interval=np.zeros(m, int), direction=np.full(m, DOWN), kw=np.full(m, 0.6),
        price_eur_per_kwh=np.array([0.06, 0.04, 0.03, 0.025, 0.05]),
        availability_eur_per_kw_h=np.zeros(m), window_start=np.zeros(m, int),
        window_stop=np.ones(m, int))
    return lin, need, offers, far
