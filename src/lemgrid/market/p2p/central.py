"""Centralised reference for the P2P market: the whole problem as one convex QP solved by Clarabel.

Variables per interval: the quantity ``x_k`` of every product (``0 <= x_k <=`` its capacity) and
every peer's energy ``e_n`` (``e_min <= e_n <= e_max``); one equality row per peer,
``e_n - sum_{k sold by n} x_k + sum_{k bought by n} x_k = 0``; objective
``sum_n (a_n / dt_h) e_n^2 + b_n e_n + sum_k (c_seller_k + c_buyer_k) x_k``. All intervals go into
one block-diagonal model built with ``scipy.sparse`` (no loops over peers, products or intervals);
the Hessian is the diagonal ``2 a_n / dt_h`` on the energy columns.

The QP goes to Clarabel, an interior-point solver, rather than HiGHS's active-set QP: the P2P QP is
almost linear (curvatures of 1e-4 EUR/(kW^2 h)) and massively degenerate (many products of equal
cost), and HiGHS 1.16's QP solver stops there with 'Solve error' (or does not stop) even on single
intervals of a SimBench feeder. The elastic LP that names infeasible peers stays with HiGHS.

Prices: the dual of peer ``n``'s row is its marginal value of energy ``mu_n`` [EUR/kWh]; a traded
product's price is ``mu_seller + c_seller = mu_buyer - c_buyer`` (both sides indifferent at the
margin), and for an untraded product we report the seller's reservation price ``mu_seller +
c_seller``.

References
----------
.. [1] T. Sorin, L. Bobo, P. Pinson, "Consensus-based approach to peer-to-peer electricity markets
   with product differentiation", IEEE Trans. Power Systems 34(2), 994-1004, 2019 (centralised
   formulation, Sec. II).
.. [2] P. J. Goulart, Y. Chen, "Clarabel: An interior-point solver for conic programs with
   quadratic objectives", arXiv:2405.12762, 2024.
.. [3] Q. Huangfu, J. A. J. Hall, "Parallelizing the dual revised simplex method", Mathematical
   Programming Computation 10(1), 119-142, 2018 (HiGHS, for the elastic LP).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lemgrid.errors import InfeasibleError
from lemgrid.market.lp import new_highs
from lemgrid.market.p2p.problem import P2PProblem, P2PResult, check_feasible, welfare_eur

__all__ = ["solve_p2p_central", "diagnose_infeasible"]


def _balance_matrix(problem: P2PProblem, cols_i, cols_k, extra_cols: int = 0) -> sp.csc_matrix:
    """Peer-balance rows (one per interval and peer) over the columns
    ``[x of the listed products (cols_i, cols_k), e (I*N, interval-major), extra]``."""
    n_int, n_peers = problem.n_intervals, problem.n_peers
    n_x, n_e = cols_i.size, n_int * n_peers
    row_s = cols_i * n_peers + problem.seller[cols_k]
    row_b = cols_i * n_peers + problem.buyer[cols_k]
    x_col = np.arange(n_x)
    rows = np.concatenate([row_s, row_b, np.arange(n_e)])
    cols = np.concatenate([x_col, x_col, n_x + np.arange(n_e)])
    vals = np.concatenate([np.full(n_x, -1.0), np.ones(n_x), np.ones(n_e)])
    return sp.csc_matrix((vals, (rows, cols)), shape=(n_e, n_x + n_e + extra_cols))


def _highs(lp_cols, a_matrix: sp.csc_matrix, row_lo, row_hi):
    """Build and run a HiGHS LP; ``lp_cols`` = (cost, lower, upper) flat arrays."""
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
    h = new_highs()
    h.passModel(lp)
    h.run()
    return h


@dataclass(frozen=True)
class _QPSolution:
    status: str  # 'optimal', 'infeasible' or Clarabel's status name
    x: np.ndarray
    row_dual: np.ndarray  # marginal value of each balance row [EUR/kWh]
    iterations: int


def _clarabel_qp(cost, lower, upper, hess_diag, a_eq: sp.csc_matrix, time_limit_s=None
                 ) -> _QPSolution:
    """``min 1/2 x' diag(h) x + c' x  s.t.  A_eq x = 0,  lower <= x <= upper`` with Clarabel.

    Clarabel's constraints are ``A x + s = b, s in K``: the equalities in the zero cone, the finite
    bounds as ``x + s = upper`` and ``-x + s = -lower`` in the non-negative cone. Its dual ``z``
    satisfies ``P x + c + A' z = 0``, so the balance rows' marginal values are ``-z``.
    """
    import clarabel

    n = cost.size
    eye = sp.identity(n, format="csr")
    up, lo = np.flatnonzero(np.isfinite(upper)), np.flatnonzero(np.isfinite(lower))
    a_matrix = sp.vstack([a_eq, eye[up], -eye[lo]]).tocsc()
    b = np.concatenate([np.zeros(a_eq.shape[0]), upper[up], -lower[lo]])
    p_matrix = sp.diags(hess_diag).tocsc()
    p_matrix.eliminate_zeros()
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-10
    if time_limit_s is not None:
        settings.time_limit = float(time_limit_s)
    cones = [clarabel.ZeroConeT(a_eq.shape[0]), clarabel.NonnegativeConeT(up.size + lo.size)]
    solution = clarabel.DefaultSolver(p_matrix, cost, a_matrix, b, cones, settings).solve()
    status = str(solution.status).rsplit(".", 1)[-1]
    if status in ("Solved", "AlmostSolved"):
        status = "optimal"
    elif status in ("PrimalInfeasible", "AlmostPrimalInfeasible"):
        status = "infeasible"
    return _QPSolution(status=status, x=np.asarray(solution.x),
                       row_dual=-np.asarray(solution.z)[: a_eq.shape[0]],
                       iterations=int(solution.iterations))


def _solve_restricted(problem: P2PProblem, cols_i, cols_k, cap, time_limit_s):
    """The QP over a subset of product columns (all energy columns)."""
    n_int, n_peers = problem.n_intervals, problem.n_peers
    c_k = problem.seller_cost_eur_per_kwh + problem.buyer_cost_eur_per_kwh
    cost = np.concatenate([c_k[cols_k], problem.b_eur_per_kwh.ravel()])
    lower = np.concatenate([np.zeros(cols_i.size), problem.e_min_kwh.ravel()])
    upper = np.concatenate([cap[cols_i, cols_k], problem.e_max_kwh.ravel()])
    hess = np.concatenate([np.zeros(cols_i.size), 2.0 * problem.a_eur_per_kwh2.ravel()])
    return _clarabel_qp(cost, lower, upper, hess, _balance_matrix(problem, cols_i, cols_k),
                        time_limit_s)


def _top_per_group(score, group, mask, m):
    """Flat indices of the ``m`` smallest ``score`` entries of each group among ``mask``."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return idx
    order = np.lexsort((score[idx], group[idx]))
    g = group[idx][order]
    first = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    rank = np.arange(g.size) - np.repeat(first, np.diff(np.r_[first, g.size]))
    return idx[order[rank < m]]


def solve_p2p_central(
    problem: P2PProblem,
    *,
    column_generation: bool = True,
    columns_per_peer: int = 10,
    time_limit_s: float | None = None,
) -> P2PResult:
    """Clear every interval's P2P market centrally, as one QP solved by Clarabel.

    Parameters
    ----------
    problem : P2PProblem
    column_generation : bool
        If true (default), solve the QP over a growing subset of products: after each solve,
        price every left-out product with the peers' row duals (reduced cost
        ``c_seller + c_buyer + mu_seller - mu_buyer``) and add the most negative ones, until none
        is negative. Exact (the final reduced-cost check certifies the optimum of the full
        problem) and far faster than the full QP when the mesh is dense, because an optimal P2P
        schedule uses few of the products. If false, one QP over every product.
    columns_per_peer : int
        How many products per peer and interval enter the first QP and each pricing round.
    time_limit_s : float, optional
        Clarabel time limit per solve [s].

    Returns
    -------
    P2PResult
        ``method = "central"``; both views of every trade are equal; ``iterations`` is Clarabel's
        interior-point iteration count summed over the column-generation rounds.

    Raises
    ------
    InfeasibleError
        No schedule meets every peer's bounds (the message names the peers), or Clarabel stopped
        without an optimum (e.g. at the time limit).
    """
    t_start = time.perf_counter()
    check_feasible(problem)
    n_int, n_peers, n_k = problem.n_intervals, problem.n_peers, problem.n_products
    cap = problem.capacity_kwh()
    open_ = cap > 0
    c_k = problem.seller_cost_eur_per_kwh + problem.buyer_cost_eur_per_kwh
    interval = np.repeat(np.arange(n_int), n_k)
    if column_generation:
        # Start from each buyer's cheapest and each seller's best-paying products, judged by the
        # marginal cost / utility at zero plus the differentiation costs.
        landed = (problem.b_eur_per_kwh[:, problem.seller] + c_k).ravel()
        netback = (c_k - problem.b_eur_per_kwh[:, problem.buyer]).ravel()
        by_buyer = (interval * n_peers + np.tile(problem.buyer, n_int))
        by_seller = (interval * n_peers + np.tile(problem.seller, n_int))
        flat = np.union1d(
            _top_per_group(landed, by_buyer, open_.ravel(), columns_per_peer),
            _top_per_group(netback, by_seller, open_.ravel(), columns_per_peer),
        )
    else:
        flat = np.flatnonzero(open_.ravel())
    iterations = 0
    while True:
        cols_i, cols_k = np.divmod(flat, n_k) if n_k else (flat, flat)
        sol = _solve_restricted(problem, cols_i, cols_k, cap, time_limit_s)
        iterations += sol.iterations
        if sol.status == "infeasible":
            if flat.size < open_.sum():  # the subset may be too small: retry with every product
                flat = np.flatnonzero(open_.ravel())
                continue
            diagnose_infeasible(problem)
        if sol.status != "optimal":
            raise InfeasibleError(
                f"the centralised P2P solve stopped without an optimum: Clarabel status "
                f"'{sol.status}'"
            )
        mu = sol.row_dual.reshape(n_int, n_peers)
        if not column_generation:
            break
        reduced = c_k + mu[:, problem.seller] - mu[:, problem.buyer]
        candidate = open_.ravel() & (reduced.ravel() < -1e-7)
        candidate[flat] = False
        if not candidate.any():
            break
        by_buyer = interval * n_peers + np.tile(problem.buyer, n_int)
        flat = np.union1d(flat, _top_per_group(reduced.ravel(), by_buyer, candidate, columns_per_peer))

    values = sol.x
    x = np.zeros((n_int, n_k))
    x[cols_i, cols_k] = values[: flat.size]
    x = np.clip(x, 0.0, cap)
    e = values[flat.size :].reshape(n_int, n_peers)
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

    n_int, n_peers = problem.n_intervals, problem.n_peers
    cap = problem.capacity_kwh()
    cols_i, cols_k = np.nonzero(cap > 0)
    n_x, n_e = cols_i.size, n_int * n_peers
    # Columns: x, e (free), above e_max, below e_min; rows: balance, e - above <= e_max,
    # e + below >= e_min.
    balance = _balance_matrix(problem, cols_i, cols_k, extra_cols=2 * n_e)
    e_col = n_x + np.arange(n_e)
    rows = np.arange(n_e)
    shape = (n_e, n_x + 3 * n_e)
    upper_rows = sp.csc_matrix(
        (np.r_[np.ones(n_e), -np.ones(n_e)], (np.r_[rows, rows], np.r_[e_col, e_col + n_e])),
        shape=shape,
    )
    lower_rows = sp.csc_matrix(
        (np.ones(2 * n_e), (np.r_[rows, rows], np.r_[e_col, e_col + 2 * n_e])), shape=shape
    )
    a_matrix = sp.vstack([balance, upper_rows, lower_rows]).tocsc()
    inf = np.full(n_e, highspy.kHighsInf)
    row_lo = np.r_[np.zeros(n_e), -inf, problem.e_min_kwh.ravel()]
    row_hi = np.r_[np.zeros(n_e), problem.e_max_kwh.ravel(), inf]
    cost = np.r_[np.zeros(n_x + n_e), np.ones(2 * n_e)]
    lower = np.r_[np.zeros(n_x), -inf, np.zeros(2 * n_e)]
    upper = np.r_[cap[cols_i, cols_k], inf, inf, inf]
    h = _highs((cost, lower, upper), a_matrix, row_lo, row_hi)
    values = np.asarray(h.getSolution().col_value)
    violation = (values[n_x + n_e : n_x + 2 * n_e] + values[n_x + 2 * n_e :]).reshape(n_int, n_peers)
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
