"""Electrical distance between buses: the Thevenin impedance between two buses.

``d(i, j) = |Z_ii + Z_jj - 2 Z_ij|`` with ``Z`` the bus impedance matrix with the slack grounded,
in ohm on the voltage level of the buses (the impedance a current injected at ``i`` and taken out at
``j`` sees). It is the distance used for distance-based network charges on peer-to-peer trades
(Baroche et al., "Exogenous cost allocation in peer-to-peer electricity markets", IEEE Trans.
Power Syst. 34(4), 2019; Kundur, "Power System Stability and Control", 1994, sec. 2.9 for Z-bus).
"""

from __future__ import annotations

import numpy as np

from lemgrid.grid.network import Network


def electrical_distance_ohm(network: Network, buses: np.ndarray | None = None) -> np.ndarray:
    """Thevenin impedance magnitude between buses [ohm].

    Parameters
    ----------
    network : Network
    buses : ndarray of int, optional
        Bus positions (default: all buses).

    Returns
    -------
    ndarray, shape (len(buses), len(buses))
        Symmetric, zero on the diagonal; NaN for unenergised buses. Buses on the slack node are at
        distance |Z_jj| from the others.
    """
    buses = np.arange(network.n_bus) if buses is None else np.asarray(buses)
    n = network.n_node
    pq = np.setdiff1d(np.arange(n), network.slack_nodes)
    z = np.zeros((n, n), dtype=complex)
    z[np.ix_(pq, pq)] = np.linalg.inv(network.ybus[pq][:, pq].toarray())
    node = network.bus_node[buses]
    energised = node >= 0
    zn = z[np.ix_(np.maximum(node, 0), np.maximum(node, 0))]
    diag = np.diag(zn)
    z_pu = np.abs(diag[:, None] + diag[None, :] - (zn + zn.T))  # exactly symmetric
    base_ohm = network.bus_vn_kv[buses] ** 2 / network.base_mva
    d = z_pu * np.sqrt(base_ohm[:, None] * base_ohm[None, :])
    d[~energised] = np.nan
    d[:, ~energised] = np.nan
    return d
