"""Batched AC power flow: every interval of a horizon in one vectorised solve.

The solver is the implicit Z-bus fixed-point iteration on the bus-injection model (a Gauss-type
method; see e.g. Chen et al., "Distribution system power flow analysis - a rigid approach",
IEEE Trans. Power Delivery 6(3), 1991): with the slack voltages fixed,

    Y_pp V_p = conj(S_p / V_p) - Y_ps V_s,

so each iteration is one linear solve with the same matrix ``Y_pp`` for all intervals. The inverse
(or LU factors) of ``Y_pp`` is computed once; the intervals are the columns of one matrix product.
For distribution feeders (radial or weakly meshed) it converges in a handful of iterations; any
interval that has not converged after ``max_iter`` is solved by Newton-Raphson (polar form, sparse
Jacobian as in MATPOWER's ``newtonpf``).

Time is processed in chunks of a few thousand intervals so that the working arrays stay in cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lemgrid.errors import InputError
from lemgrid.grid.network import Network

#: Above this many non-slack nodes, sparse LU solves replace the dense inverse of Y_pp.
DENSE_MAX_NODES = 400
#: Target number of complex entries of a chunk's voltage array (intervals x nodes).
CHUNK_ENTRIES = 300_000


@dataclass(frozen=True, eq=False)
class PowerFlowResult:
    """Results of a batched AC power flow over T intervals.

    Attributes
    ----------
    vm_pu, va_degree : ndarray, shape (T, n_bus)
        Voltage magnitude [p.u.] and angle [degrees] of every bus; NaN where a bus is not
        energised or the interval did not converge.
    loading_percent, i_ka : ndarray, shape (T, n_branch)
        Branch loading [%] (pandapower's definition) and the larger end current [kA].
    p_slack_kw, q_slack_kvar : ndarray, shape (T,)
        Power drawn from the upstream grid at the slack (import positive) [kW], [kvar].
    losses_kw : ndarray, shape (T,)
        Active losses of the whole network [kW].
    converged : ndarray of bool, shape (T,)
    iterations : int
        Fixed-point iterations of the slowest chunk.
    newton_intervals : int
        Intervals that needed the Newton-Raphson fallback.
    v_node : ndarray of complex, shape (T, n_node), or None
        Complex node voltages [p.u.] (only when asked for: they are what linearisations need).
    """

    vm_pu: np.ndarray
    va_degree: np.ndarray
    loading_percent: np.ndarray
    i_ka: np.ndarray
    p_slack_kw: np.ndarray
    q_slack_kvar: np.ndarray
    losses_kw: np.ndarray
    converged: np.ndarray
    iterations: int
    newton_intervals: int
    v_node: np.ndarray | None = None


class _Solver:
    """Pre-factorised fixed-point solver for one network."""

    def __init__(self, network: Network) -> None:
        n = network.n_node
        self.slack = network.slack_nodes
        self.pq = np.setdiff1d(np.arange(n), self.slack)
        ybus = network.ybus.tocsr()
        y_pp = ybus[self.pq][:, self.pq].tocsc()
        y_ps = ybus[self.pq][:, self.slack]
        self.v_slack = network.v_slack_pu
        self.i_slack = -(y_ps @ self.v_slack)  # constant current injected by the slack
        if len(self.pq) <= DENSE_MAX_NODES:
            # Row-major intervals x nodes: V_new = I @ Z^T.
            self.zt: np.ndarray | None = np.ascontiguousarray(np.linalg.inv(y_pp.toarray()).T)
            self.lu = None
        else:
            import scipy.sparse.linalg as spla

            self.zt = None
            self.lu = spla.splu(y_pp)
        self.v_noload = self._solve(self.i_slack[None, :])[0]

    def _solve(self, current: np.ndarray) -> np.ndarray:
        if self.lu is None:
            return current @ self.zt
        return self.lu.solve(np.asfortranarray(current.T)).T

    def fixed_point(self, s_pq: np.ndarray, tol: float, max_iter: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Solve all rows of ``s_pq`` (intervals x non-slack nodes, p.u., injection positive)."""
        s_conj = np.conj(s_pq)
        v = np.broadcast_to(self.v_noload, s_pq.shape).copy()
        current = np.empty_like(v)
        step = np.empty(v.shape[0])
        converged = np.zeros(v.shape[0], dtype=bool)
        iterations = 0
        for iterations in range(1, max_iter + 1):
            np.divide(s_conj, np.conj(v), out=current)  # conj(S / V)
            current += self.i_slack
            v_new = self._solve(current)
            np.subtract(v_new, v, out=current)
            np.max(np.abs(current.view(float)), axis=1, out=step)
            v = v_new
            converged = step < tol
            if converged.all():
                break
        return v, converged, iterations


def _newton(ybus: sp.csr_matrix, s_bus: np.ndarray, v0: np.ndarray, pq: np.ndarray,
            tol: float = 1e-10, max_iter: int = 30) -> tuple[np.ndarray, bool]:
    """Newton-Raphson power flow in polar coordinates for one interval (slack and PQ nodes only).

    The Jacobian blocks follow the complex-matrix formulas of MATPOWER's ``dSbus_dV``
    (Zimmerman, "AC power flows, generalized OPF costs and their derivatives", MATPOWER TN2).
    """
    import scipy.sparse.linalg as spla

    v = v0.copy()
    npq = len(pq)
    for _ in range(max_iter):
        mismatch = v * np.conj(ybus @ v) - s_bus
        f = np.concatenate([mismatch[pq].real, mismatch[pq].imag])
        if np.max(np.abs(f)) < tol:
            return v, True
        i_bus = ybus @ v
        diag_v = sp.diags(v)
        diag_i = sp.diags(i_bus)
        diag_vnorm = sp.diags(v / np.abs(v))
        ds_dvm = diag_v @ np.conj(ybus @ diag_vnorm) + np.conj(diag_i) @ diag_vnorm
        ds_dva = 1j * diag_v @ np.conj(diag_i - ybus @ diag_v)
        j = sp.vstack([
            sp.hstack([ds_dva[pq][:, pq].real, ds_dvm[pq][:, pq].real]),
            sp.hstack([ds_dva[pq][:, pq].imag, ds_dvm[pq][:, pq].imag]),
        ]).tocsc()
        dx = spla.spsolve(j, -f)
        va = np.angle(v)
        vm = np.abs(v)
        va[pq] += dx[:npq]
        vm[pq] += dx[npq:]
        v = vm * np.exp(1j * va)
    return v, False


def run_powerflow(
    network: Network,
    p_inj_kw: np.ndarray,
    q_inj_kvar: np.ndarray,
    *,
    tol_pu: float = 1e-10,
    max_iter: int = 50,
    progress: Callable[[int, int], None] | None = None,
    keep_node_voltages: bool = False,
) -> PowerFlowResult:
    """AC power flow of every interval at once.

    Parameters
    ----------
    network : Network
    p_inj_kw, q_inj_kvar : array_like, shape (T, n_bus)
        Net active [kW] / reactive [kvar] injection at each bus in each interval, generation
        positive (a household consuming 3 kW has -3). A 1-D array is one interval.
    tol_pu : float
        Largest change of any node voltage (real or imaginary part) [p.u.] at convergence.
    max_iter : int
        Fixed-point iterations before an interval is handed to Newton-Raphson.
    progress : callable, optional
        Called as ``progress(done_intervals, total_intervals)`` after each chunk.
    keep_node_voltages : bool
        Also return the complex node voltages (``PowerFlowResult.v_node``).

    Returns
    -------
    PowerFlowResult
    """
    p = np.atleast_2d(np.asarray(p_inj_kw, dtype=float))
    q = np.atleast_2d(np.asarray(q_inj_kvar, dtype=float))
    if p.shape != q.shape or p.shape[1] != network.n_bus:
        raise InputError(
            f"power flow: injections must have shape (intervals, {network.n_bus} buses); "
            f"got p {p.shape}, q {q.shape}"
        )
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        bad = np.argwhere(~(np.isfinite(p) & np.isfinite(q)))[0]
        raise InputError(
            f"power flow: injection at interval {bad[0]}, bus {network.bus_names[bad[1]]!r} is not "
            "a finite number"
        )

    n_t = p.shape[0]
    energised = network.bus_node >= 0
    # bus -> node aggregation (fused buses share a node); scaled to p.u. on base_mva.
    to_node = sp.csr_matrix(
        (np.full(int(energised.sum()), 1e-3 / network.base_mva),
         (np.flatnonzero(energised), network.bus_node[energised])),
        shape=(network.n_bus, network.n_node),
    )
    solver = _Solver(network)
    n_pq = len(solver.pq)
    chunk = max(64, CHUNK_ENTRIES // max(n_pq, 1))

    vm = np.full((n_t, network.n_bus), np.nan)
    va = np.full((n_t, network.n_bus), np.nan)
    loading = np.empty((n_t, network.n_branch))
    i_ka = np.empty((n_t, network.n_branch))
    p_slack = np.empty(n_t)
    q_slack = np.empty(n_t)
    losses = np.empty(n_t)
    converged = np.empty(n_t, dtype=bool)
    v_node = np.empty((n_t, network.n_node), dtype=complex) if keep_node_voltages else None
    max_iterations = 0
    newton_count = 0
    ybus = network.ybus.tocsr()
    yf_t = network.yf.T.tocsr()
    yt_t = network.yt.T.tocsr()
    ybus_t = ybus.T.tocsr()
    bus_nodes = network.bus_node[energised]

    for start in range(0, n_t, chunk):
        stop = min(start + chunk, n_t)
        s_node = (to_node.T @ (p[start:stop] + 1j * q[start:stop]).T).T  # (Tc, n_node)
        v_pq, ok, iterations = solver.fixed_point(s_node[:, solver.pq], tol_pu, max_iter)
        max_iterations = max(max_iterations, iterations)
        v = np.empty((stop - start, network.n_node), dtype=complex)
        v[:, solver.pq] = v_pq
        v[:, solver.slack] = solver.v_slack
        for row in np.flatnonzero(~ok):
            newton_count += 1
            v_row, ok[row] = _newton(ybus, s_node[row], v[row], solver.pq)
            v[row] = v_row if ok[row] else np.nan
        converged[start:stop] = ok
        if v_node is not None:
            v_node[start:stop] = v

        i_node = v @ ybus_t  # (Tc, n_node) = (Ybus V)^T
        s_all = v * np.conj(i_node)
        s_slack = s_all[:, solver.slack].sum(axis=1) * network.base_mva * 1e3
        p_slack[start:stop] = s_slack.real
        q_slack[start:stop] = s_slack.imag
        losses[start:stop] = s_all.sum(axis=1).real * network.base_mva * 1e3
        v_bus = v[:, bus_nodes]
        vm[start:stop, energised] = np.abs(v_bus)
        va[start:stop, energised] = np.angle(v_bus, deg=True)
        i_from = np.abs(v @ yf_t)
        i_to = np.abs(v @ yt_t)
        loading[start:stop] = np.maximum(i_from * network.branch_loading_from,
                                         i_to * network.branch_loading_to)
        i_ka[start:stop] = np.maximum(i_from * network.branch_ka_from, i_to * network.branch_ka_to)
        if progress is not None:
            progress(stop, n_t)

    return PowerFlowResult(
        vm_pu=vm, va_degree=va, loading_percent=loading, i_ka=i_ka, p_slack_kw=p_slack,
        q_slack_kvar=q_slack, losses_kw=losses, converged=converged,
        iterations=max_iterations, newton_intervals=newton_count, v_node=v_node,
    )
