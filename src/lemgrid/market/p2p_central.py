"""Centralised reference for the P2P market: the whole problem as one convex QP solved by HiGHS.

Variables per interval: the quantity ``x_k`` of every product (``0 <= x_k <=`` its capacity) and
every peer's energy ``e_n`` (``e_min <= e_n <= e_max``); one equality row per peer,
``e_n - sum_{k sold by n} x_k + sum_{k bought by n} x_k = 0``; objective
``sum_n (a_n / dt_h) e_n^2 + b_n e_n + sum_k (c_seller_k + c_buyer_k) x_k``. All intervals go into
one block-diagonal model built with ``scipy.sparse`` (no loops over peers, products or intervals);
the Hessian is the diagonal ``2 a_n / dt_h`` on the energy columns, passed to HiGHS as a sparse
triangular matrix.

Prices: the dual of peer ``n``'s row is its marginal value of energy ``mu_n`` [EUR/kWh]; a traded
product's price is ``mu_seller + c_seller = mu_buyer - c_buyer`` (both sides indifferent at the
margin), and for an untraded product we report the seller's reservation price ``mu_seller +
c_seller``.

References
----------
.. [1] T. Sorin, L. Bobo, P. Pinson, "Consensus-based approach to peer-to-peer electricity markets
   with product differentiation", IEEE Trans. Power Systems 34(2), 994-1004, 2019 (centralised
   formulation, Sec. II).
.. [2] Q. Huangfu, J. A. J. Hall, "Parallelizing the dual revised simplex method", Mathematical
   Programming Computation 10(1), 119-142, 2018 (HiGHS).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from lemgrid.errors import InfeasibleError
from lemgrid.market.p2p_problem import P2PProblem, P2PResult, check_feasible, welfare_eur

__all__ = ["solve_p2p_central", "diagnose_infeasible"]


def _balance_matrix(problem: P2PProblem, extra_cols: int = 0) -> sp.csc_matrix:
    """Block-diagonal peer-balance rows over ``[x (K), e (N), extra]`` per interval."""
    n_int, n_peers, n_k = problem.n_intervals, problem.n_peers, problem.n_products
    n_var = n_k + n_peers + extra_cols
    row0 = (np.arange(n_int) * n_peers)[:, None]
    col0 = (np.arange(n_int) * n_var)[:, None]
    k = np.arange(n_k)
    n = np.arange(n_peers)
    rows = np.concatenate(
        [(row0 + problem.seller).ravel(), (row0 + problem.buyer).ravel(), (row0 + n).ravel()]
    )
    cols = np.concatenate([(col0 + k).ravel(), (col0 + k).ravel(), (col0 + n_k + n).ravel()])
    vals = np.concatenate(
        [np.full(n_int * n_k, -1.0), np.full(n_int * n_k, 1.0), np.ones(n_int * n_peers)]
    )
    return sp.csc_matrix((vals, (rows, cols)), shape=(n_int * n_peers, n_int * n_var))


def _highs(lp_cols, a_matrix: sp.csc_matrix, row_lo, row_hi, hess_diag=None):
    """Build and run a HiGHS model; ``lp_cols`` = (cost, lower, upper) flat arrays."""
    import highspy

    cost, lower, upper = lp_cols
    lp = highspy.HighsLp()
    lp.num_col_ = cost.size
    lp.num_row_ = row_lo.size
    lp.col_cost_ = cost
    lp.col_lower_ = lower
    lp.col_upper_ = upper
    lp.row_lower_ = row_lo
    lp.row_upper_ = row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a_matrix.indptr
    lp.a_matrix_.index_ = a_matrix.indices
    lp.a_matrix_.value_ = a_matrix.data
    model = highspy.HighsModel()
    model.lp_ = lp
    if hess_diag is not None and np.any(hess_diag > 0):
        q = sp.diags(hess_diag).tocsc()
        q.eliminate_zeros()
        hess = highspy.HighsHessian()
        hess.dim_ = cost.size
        hess.format_ = highspy.HessianFormat.kTriangular
        hess.start_ = q.indptr
        hess.index_ = q.indices
        hess.value_ = q.data
        model.hessian_ = hess
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(model)
    h.run()
    return h


def solve_p2p_central(problem: P2PProblem) -> P2PResult:
    """Clear every interval's P2P market centrally, as one QP solved by HiGHS.

    Parameters
    ----------
    problem : P2PProblem

    Returns
    -------
    P2PResult
        ``method = "central"``; both views of every trade are equal; ``iterations`` is HiGHS's
        QP (or simplex) iteration count for the whole batch.

    Raises
    ------
    InfeasibleError
        No schedule meets every peer's bounds; the message names the peers.
    """
    import highspy

    t_start = time.perf_counter()
    check_feasible(problem)
    n_int, n_peers, n_k = problem.n_intervals, problem.n_peers, problem.n_products
    cap = problem.capacity_kwh()
    cost = np.concatenate(
        [
            np.broadcast_to(problem.seller_cost_eur_per_kwh + problem.buyer_cost_eur_per_kwh, (n_int, n_k)),
            problem.b_eur_per_kwh,
        ],
        axis=1,
    ).ravel()
    lower = np.concatenate([np.zeros((n_int, n_k)), problem.e_min_kwh], axis=1).ravel()
    upper = np.concatenate([cap, problem.e_max_kwh], axis=1).ravel()
    hess = np.concatenate([np.zeros((n_int, n_k)), 2.0 * problem.a_eur_per_kwh2], axis=1).ravel()
    zeros = np.zeros(n_int * n_peers)
    h = _highs((cost, lower, upper), _balance_matrix(problem), zeros, zeros, hess)
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        diagnose_infeasible(problem)
    if status != highspy.HighsModelStatus.kOptimal:
        raise InfeasibleError(f"the centralised P2P solve ended with HiGHS status {h.modelStatusToString(status)}")
    sol = h.getSolution()
    values = np.asarray(sol.col_value).reshape(n_int, n_k + n_peers)
    x = np.clip(values[:, :n_k], 0.0, cap)
    e = values[:, n_k:]
    mu = np.asarray(sol.row_dual).reshape(n_int, n_peers)
    info = h.getInfo()
    iterations = info.qp_iteration_count + info.simplex_iteration_count
    return P2PResult(
        peer_ids=problem.peer_ids,
        seller=problem.seller,
        buyer=problem.buyer,
        dt_h=problem.dt_h,
        p_kw=e / problem.dt_h,
        quantity_kwh=x,
        seller_view_kwh=x,
        buyer_view_kwh=x,
        price_eur_per_kwh=mu[:, problem.seller] + problem.seller_cost_eur_per_kwh,
        welfare_eur=welfare_eur(problem, e, x, x),
        iterations=np.full(n_int, iterations, dtype=np.int64),
        primal_residual_kwh=np.zeros(n_int),
        dual_residual_eur_per_kwh=np.zeros(n_int),
        converged=np.ones(n_int, dtype=bool),
        method="central",
        seconds=time.perf_counter() - t_start,
    )


def diagnose_infeasible(problem: P2PProblem, tol_kwh: float = 1e-7) -> None:
    """Find the peers whose bounds no schedule can meet and raise :class:`InfeasibleError`.

    Solves an elastic LP: every peer's energy may leave its bounds at a cost of one per kWh;
    peers (and intervals) with a positive violation at the optimum are named. Returns normally if
    the problem is feasible.

    Parameters
    ----------
    problem : P2PProblem
    tol_kwh : float
        Violations below this [kWh] count as zero.
    """
    import highspy

    n_int, n_peers, n_k = problem.n_intervals, problem.n_peers, problem.n_products
    n_var = n_k + 3 * n_peers  # x, e (free), above e_max, below e_min
    balance = _balance_matrix(problem, extra_cols=2 * n_peers)
    # e - above <= e_max and e + below >= e_min, block-diagonal like the balance rows.
    col0 = (np.arange(n_int) * n_var)[:, None] + n_k
    e_col = (col0 + np.arange(n_peers)).ravel()
    rows = np.arange(n_int * n_peers)
    upper_rows = sp.csc_matrix(
        (np.concatenate([np.ones(rows.size), -np.ones(rows.size)]),
         (np.concatenate([rows, rows]), np.concatenate([e_col, e_col + n_peers]))),
        shape=(rows.size, n_int * n_var),
    )
    lower_rows = sp.csc_matrix(
        (np.ones(2 * rows.size),
         (np.concatenate([rows, rows]), np.concatenate([e_col, e_col + 2 * n_peers]))),
        shape=(rows.size, n_int * n_var),
    )
    a_matrix = sp.vstack([balance, upper_rows, lower_rows]).tocsc()
    zeros = np.zeros(rows.size)
    inf = np.full(rows.size, highspy.kHighsInf)
    row_lo = np.concatenate([zeros, -inf, problem.e_min_kwh.ravel()])
    row_hi = np.concatenate([zeros, problem.e_max_kwh.ravel(), inf])
    cost = np.concatenate(
        [np.zeros((n_int, n_k + n_peers)), np.ones((n_int, 2 * n_peers))], axis=1
    ).ravel()
    lower = np.concatenate(
        [np.zeros((n_int, n_k)), np.full((n_int, n_peers), -np.inf), np.zeros((n_int, 2 * n_peers))],
        axis=1,
    ).ravel()
    upper = np.concatenate(
        [problem.capacity_kwh(), np.full((n_int, 3 * n_peers), np.inf)], axis=1
    ).ravel()
    h = _highs((cost, lower, upper), a_matrix, row_lo, row_hi)
    values = np.asarray(h.getSolution().col_value).reshape(n_int, n_var)
    violation = values[:, n_k + n_peers : n_k + 2 * n_peers] + values[:, n_k + 2 * n_peers :]
    bad = violation > tol_kwh
    if not bad.any():
        return
    intervals, peers = np.nonzero(bad)
    names = sorted({problem.peer_ids[n] for n in peers})
    shown = ", ".join(f"'{p}'" for p in names[:10]) + (" ..." if len(names) > 10 else "")
    raise InfeasibleError(
        f"no P2P schedule meets every peer's bounds: peers {shown} cannot be matched "
        f"(first in interval {intervals[0]}, short by {violation[intervals[0], peers[0]]:.4g} kWh); "
        "their must-sell or must-buy energy exceeds what their trading partners can take"
    )
