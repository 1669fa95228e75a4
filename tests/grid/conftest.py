"""pandapower as the independent reference: set element powers of an interval, run its
Newton-Raphson, return its results."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest


@pytest.fixture(scope="session")
def pandapower_reference():
    return run_pandapower


@functools.lru_cache(maxsize=8)
def _pandapower_net(spec: str):
    from lemgrid.grid.sources import load_pandapower_net

    return load_pandapower_net(spec)


@pytest.fixture(scope="session")
def pandapower_net():
    """Loads each pandapower net once per session; returns a private copy."""
    return lambda spec: copy.deepcopy(_pandapower_net(spec))


def run_pandapower(net, profiles, k: int):
    """Run pandapower's runpp on interval ``k`` of ``profiles`` (a GridProfiles aligned with
    the in-service elements of ``net``); returns (vm_pu, loading_percent, losses_kw, p_slack_kw)."""
    import pandapower as pp

    net = copy.deepcopy(net)
    for table, p, q in (("load", profiles.load_p_kw, profiles.load_q_kvar),
                        ("sgen", profiles.sgen_p_kw, None),
                        ("storage", profiles.storage_p_kw, None)):
        df = net[table]
        if not len(df):
            continue
        on = df["in_service"].astype(bool).to_numpy()
        df.loc[on, "p_mw"] = p[k] / 1e3
        if q is not None:
            df.loc[on, "q_mvar"] = q[k] / 1e3
        df["scaling"] = 1.0
    pp.runpp(net, tolerance_mva=1e-11, numba=False)
    lines = net.res_line.loading_percent.to_numpy()[net.line.in_service.to_numpy(bool)]
    trafos = net.res_trafo.loading_percent.to_numpy()[net.trafo.in_service.to_numpy(bool)]
    losses = (net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum()) * 1e3
    return (net.res_bus.vm_pu.to_numpy(), np.concatenate([lines, trafos]), losses,
            net.res_ext_grid.p_mw.sum() * 1e3)
