"""Decentralised consensus ADMM for the P2P market, vectorised over peers, products and intervals.

Every peer ``n`` keeps its own proposal ``x_nk`` for each of its products ``k`` and solves only its
own sub-problem (its private cost, its bounds, its own differentiation costs) given, per product,
the consensus quantity ``z_k`` (the mean of the two sides' last proposals) and the pair price
``lambda_k``::

    min_x  C_n(e_n) + sum_k [ (c_nk -/+ lambda_k) x_nk + rho/2 (x_nk - z_k)^2 ]
    s.t.   e_n = sum_{k sold} x_nk - sum_{k bought} x_nk,  e_min_n <= e_n <= e_max_n,  x_nk >= 0

(``- lambda`` for a product the peer sells: it earns the price; ``+ lambda`` for one it buys). The
two sides of a product then exchange their proposals only and both update, identically::

    z_k      <- alpha (x_seller + x_buyer) / 2 + (1 - alpha) z_k
    lambda_k <- lambda_k + alpha rho / 2 (x_buyer - x_seller)

so the price rises while the buyer asks more than the seller offers. This is the consensus ADMM of
Sorin et al. (2019, Sec. III), in product form, with over-relaxation ``alpha`` (Boyd et al. 2011,
Sec. 3.4.3; ``alpha = 1`` is Sorin's scheme). Nobody sees another peer's cost function; prices are
each pair's own dual variables.

The local sub-problem is solved exactly: for a multiplier ``mu`` on the peer's energy balance every
trade is ``x(mu) = clip(w0 - mu / rho)`` in closed form, the peer's own cost gives
``e(mu) = clip((mu - b) / 2a)``, and ``mu`` is the root of the monotone piecewise-linear
``sum x(mu) - e(mu)``, found by a safeguarded Newton method that is exact on a piecewise-linear
function once the active set settles (a few steps, warm-started from the previous iteration).

Stopping: the primal residual is the largest reciprocity mismatch ``|x_seller - x_buyer|`` [kWh];
the dual residual is ``rho * |z_new - z_old|`` [EUR/kWh] (Boyd et al. 2011, Sec. 3.3). Each
interval stops when both are below tolerance and is then frozen. Optionally ``rho`` is rebalanced
per interval (residual balancing, Boyd et al. 2011, Sec. 3.4.1, with the residuals normalised as in
OSQP, Stellato et al. 2020) a limited number of times; the prices are unscaled duals, so a change of
``rho`` needs no rescaling. In a deployment this only needs each peer to publish its largest local
residual, not any private data.

References
----------
.. [1] T. Sorin, L. Bobo, P. Pinson, "Consensus-based approach to peer-to-peer electricity markets
   with product differentiation", IEEE Trans. Power Systems 34(2), 994-1004, 2019.
.. [2] S. Boyd, N. Parikh, E. Chu, B. Peleato, J. Eckstein, "Distributed optimization and
   statistical learning via the alternating direction method of multipliers", Foundations and
   Trends in Machine Learning 3(1), 1-122, 2011.
.. [3] B. Stellato, G. Banjac, P. Goulart, A. Bemporad, S. Boyd, "OSQP: an operator splitting
   solver for quadratic programs", Mathematical Programming Computation 12, 637-672, 2020.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lemgrid.market.p2p_problem import P2PProblem, P2PResult, check_feasible, welfare_eur

__all__ = ["solve_p2p_admm", "solve_local_subproblems", "local_bounds_kwh"]


@dataclass(frozen=True)
class _Layout:
    """Both sides of every product as *entries*, sorted by the peer that owns them.

    Each peer's entries are contiguous, so per-peer sums are ``np.add.reduceat`` and per-peer
    values spread to entries by ``np.repeat``: no Python loop over peers or products.
    """

    order: np.ndarray  # entry position -> index into concat(seller side, buyer side)
    pos_sell: np.ndarray  # product -> position of its seller entry
    pos_buy: np.ndarray  # product -> position of its buyer entry
    starts: np.ndarray  # first entry of each peer that has entries
    counts: np.ndarray
    peers: np.ndarray  # those peers' indices


def _layout(problem: P2PProblem) -> _Layout:
    k = problem.n_products
    owner = np.concatenate([problem.seller, problem.buyer])
    order = np.argsort(owner, kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(2 * k)
    peers, starts, counts = np.unique(owner[order], return_index=True, return_counts=True)
    return _Layout(order, inverse[:k], inverse[k:], starts, counts, peers)


def local_bounds_kwh(problem: P2PProblem) -> tuple[np.ndarray, np.ndarray]:
    """Each side's own bound on each product [kWh], shape (I, K) each.

    The seller may offer up to its own largest sale, the buyer ask up to its own largest purchase,
    in intervals where the product is open (both peers announce whether they can sell / buy; no
    other private data is shared). Consensus enforces the tighter of the two.
    """
    open_ = problem.is_open()
    return (
        np.where(open_, problem.max_sale_kwh[:, problem.seller], 0.0),
        np.where(open_, problem.max_purchase_kwh[:, problem.buyer], 0.0),
    )


def solve_local_subproblems(
    w0, lo, hi, rho, a_kwh2, b_kwh, e_min, e_max, starts, counts, mu0=None, max_steps: int = 80
):
    """Solve many peers' local sub-problems exactly, vectorised.

    For each row ``i`` and peer ``j`` (owning the contiguous entries ``starts[j] ..
    starts[j] + counts[j] - 1``) solve::

        min_t  a e^2 + b e + sum_l rho/2 (t_l - w0_l)^2   s.t.  e = sum_l t_l,
               lo_l <= t_l <= hi_l,  e_min <= e <= e_max

    (the linear terms of the ADMM sub-problem are folded into ``w0``).

    Parameters
    ----------
    w0, lo, hi : ndarray, shape (R, L)
        Unconstrained targets and bounds of the signed trades ``t`` [kWh] (sales positive).
    rho : ndarray, shape (R, 1)
        ADMM penalty [EUR/kWh^2].
    a_kwh2, b_kwh, e_min, e_max : ndarray, shape (R, J)
        Cost ``a e^2 + b e`` [EUR/kWh^2, EUR/kWh] and bounds of the peer's energy [kWh].
    starts, counts : ndarray of int, shape (J,)
        Entry blocks of the peers.
    mu0 : ndarray, shape (R, J), optional
        Warm start for the multiplier [EUR/kWh].
    max_steps : int
        Newton/bisection steps; the bracket halves at least every other step.

    Returns
    -------
    mu : ndarray, shape (R, J)
        The peer's marginal value of energy [EUR/kWh].
    t : ndarray, shape (R, L)
        Optimal signed trades [kWh].
    e : ndarray, shape (R, J)
        ``sum t`` per peer [kWh].

    Notes
    -----
    Requires ``sum lo <= e_max`` and ``sum hi >= e_min`` per peer (checked before solving).
    """
    rho_b = np.broadcast_to(rho, (w0.shape[0], 1))
    a_pos = a_kwh2 > 0
    inv_2a = np.divide(0.5, a_kwh2, out=np.zeros_like(a_kwh2), where=a_pos)
    # Bracket: below `low` every trade sits at its upper bound and e at e_min, so phi >= 0;
    # above `high` the opposite. Newton steps that leave the bracket fall back to bisection.
    low = np.minimum(
        np.minimum.reduceat(rho_b * (w0 - hi), starts, axis=1), b_kwh + 2 * a_kwh2 * e_min
    )
    high = np.maximum(
        np.maximum.reduceat(rho_b * (w0 - lo), starts, axis=1), b_kwh + 2 * a_kwh2 * e_max
    )
    if mu0 is None:
        mu = 0.5 * (low + high)
    else:
        mu = np.clip(mu0, low, high)
    # A peer with linear cost is indifferent to e exactly at mu = b: try that point first.
    mu = np.where(a_pos, mu, np.clip(b_kwh, low, high))
    tol = 1e-11 * (1.0 + np.abs(e_min) + np.abs(e_max))
    w = np.empty_like(w0)
    t = np.empty_like(w0)
    for step in range(max_steps + 1):
        np.subtract(w0, np.repeat(mu / rho_b, counts, axis=1), out=w)
        np.minimum(np.maximum(w, lo, out=t), hi, out=t)
        e = np.add.reduceat(t, starts, axis=1)
        if a_pos.all():
            y = (mu - b_kwh) * inv_2a
            e_own = np.clip(y, e_min, e_max)
            slope_own = np.where((y > e_min) & (y < e_max), inv_2a, 0.0)
        else:
            y = (mu - b_kwh) * inv_2a
            e_lin = np.where(mu < b_kwh, e_min, np.where(mu > b_kwh, e_max, np.clip(e, e_min, e_max)))
            e_own = np.where(a_pos, np.clip(y, e_min, e_max), e_lin)
            slope_own = np.where(a_pos & (y > e_min) & (y < e_max), inv_2a, 0.0)
        phi = e - e_own
        done = np.abs(phi) <= tol
        if done.all() or step == max_steps:
            break
        free = np.add.reduceat(np.equal(t, w), starts, axis=1, dtype=np.float64)
        dphi = -free / rho_b - slope_own
        low = np.where(phi > 0, np.maximum(low, mu), low)
        high = np.where(phi < 0, np.minimum(high, mu), high)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = mu - phi / dphi
        inside = (dphi < 0) & (newton > low) & (newton < high)
        mu = np.where(done, mu, np.where(inside, newton, 0.5 * (low + high)))
    return mu, t, e


def solve_p2p_admm(
    problem: P2PProblem,
    *,
    rho_eur_per_kwh2: float | None = None,
    alpha: float = 1.0,
    tol_primal_kwh: float = 1e-4,
    tol_dual_eur_per_kwh: float = 1e-4,
    max_iter: int = 10_000,
    adaptive_rho: bool = True,
    price0_eur_per_kwh=0.0,
) -> P2PResult:
    """Clear the P2P market of every interval by decentralised consensus ADMM.

    Parameters
    ----------
    problem : P2PProblem
    rho_eur_per_kwh2 : float, optional
        Initial ADMM penalty [EUR/kWh^2]; default scales with the peers' cost curvature.
    alpha : float
        Over-relaxation in [1, 1.9); 1 is the plain scheme of Sorin et al. (2019).
    tol_primal_kwh : float
        Stop when every reciprocity mismatch is below this [kWh] ...
    tol_dual_eur_per_kwh : float
        ... and every ``rho * |z_new - z_old|`` below this [EUR/kWh].
    max_iter : int
        Iteration limit; intervals not converged by then are flagged ``converged = False``.
    adaptive_rho : bool
        Rebalance ``rho`` per interval from the normalised residuals (at most 10 times).
    price0_eur_per_kwh : float or array_like, shape (I,) or (I, K)
        Starting pair prices [EUR/kWh] (e.g. the previous interval's clearing price).

    Returns
    -------
    P2PResult
        ``method = "admm"``; ``iterations`` per interval.

    Raises
    ------
    InfeasibleError
        A peer that must sell or buy cannot (see :func:`check_feasible`), or the iterations show
        the problem has no feasible schedule (confirmed by an LP, naming the peers).
    """
    t_start = time.perf_counter()
    check_feasible(problem)
    n_int, n_peers, n_k = problem.n_intervals, problem.n_peers, problem.n_products
    lay = _layout(problem)
    sell_cap, buy_cap = local_bounds_kwh(problem)
    ent = np.concatenate([np.zeros_like(sell_cap), -buy_cap], axis=1)[:, lay.order]
    hi_all = np.concatenate([sell_cap, np.zeros_like(buy_cap)], axis=1)[:, lay.order]
    lo_all = ent
    a_all = problem.a_eur_per_kwh2[:, lay.peers]
    b_all = problem.b_eur_per_kwh[:, lay.peers]
    emin_all = problem.e_min_kwh[:, lay.peers]
    emax_all = problem.e_max_kwh[:, lay.peers]
    c_s = problem.seller_cost_eur_per_kwh
    c_b = problem.buyer_cost_eur_per_kwh

    if rho_eur_per_kwh2 is None:
        rho_eur_per_kwh2 = _default_rho(problem, lay)
    rho = np.full((n_int, 1), float(rho_eur_per_kwh2))
    lam = np.array(np.broadcast_to(_as_interval_array(price0_eur_per_kwh, n_int), (n_int, n_k)))
    z = np.zeros((n_int, n_k))
    mu = np.broadcast_to(lam.mean(axis=1, keepdims=True) if n_k else 0.0, (n_int, lay.peers.size))
    mu = np.array(mu)

    out = {
        "xs": np.zeros((n_int, n_k)),
        "xb": np.zeros((n_int, n_k)),
        "lam": np.zeros((n_int, n_k)),
        "e": np.zeros((n_int, n_peers)),
        "it": np.zeros(n_int, dtype=np.int64),
        "r": np.zeros(n_int),
        "s": np.zeros(n_int),
        "conv": np.zeros(n_int, dtype=bool),
    }
    active = np.arange(n_int)  # intervals still iterating
    lo, hi, a, b, emin, emax = lo_all, hi_all, a_all, b_all, emin_all, emax_all
    adapt_left = np.full(n_int, 10 if adaptive_rho else 0)
    r_max = np.full(n_int, np.inf)
    s_max = np.full(n_int, np.inf)
    xs = xb = np.zeros((n_int, n_k))
    e = np.zeros((n_int, lay.peers.size))
    for it in range(1, max_iter + 1):
        if n_k == 0 or active.size == 0:
            break
        # Targets of both sides; the linear terms (own cost -/+ price) are folded into w0.
        w_s = z - (c_s - lam) / rho
        w_b = -z + (c_b + lam) / rho
        w0 = np.concatenate([w_s, w_b], axis=1)[:, lay.order]
        mu, t, e = solve_local_subproblems(
            w0, lo, hi, rho, a, b, emin, emax, lay.starts, lay.counts, mu0=mu
        )
        xs = t[:, lay.pos_sell]
        xb = -t[:, lay.pos_buy]
        z_old = z
        z = alpha * 0.5 * (xs + xb) + (1.0 - alpha) * z_old
        lam = lam + (0.5 * alpha) * rho * (xb - xs)
        r_max = np.abs(xs - xb).max(axis=1)
        s_max = rho[:, 0] * np.abs(z - z_old).max(axis=1)
        finished = (r_max <= tol_primal_kwh) & (s_max <= tol_dual_eur_per_kwh)
        if adaptive_rho and it % 25 == 0:
            rho, adapt_left = _rebalance(rho, adapt_left, r_max, s_max, xs, xb, lam)
        if finished.any() or it == max_iter:
            stop = finished | (it == max_iter)
            idx = active[stop]
            out["xs"][idx], out["xb"][idx], out["lam"][idx] = xs[stop], xb[stop], lam[stop]
            out["e"][idx[:, None], lay.peers[None, :]] = e[stop]
            out["it"][idx], out["r"][idx], out["s"][idx] = it, r_max[stop], s_max[stop]
            out["conv"][idx] = finished[stop]
            keep = ~stop
            active = active[keep]
            z, lam, rho, mu, adapt_left = z[keep], lam[keep], rho[keep], mu[keep], adapt_left[keep]
            lo, hi, a, b, emin, emax = (v[keep] for v in (lo, hi, a, b, emin, emax))

    xs_o, xb_o = out["xs"], out["xb"]
    result = P2PResult(
        peer_ids=problem.peer_ids,
        seller=problem.seller,
        buyer=problem.buyer,
        dt_h=problem.dt_h,
        p_kw=out["e"] / problem.dt_h,
        quantity_kwh=0.5 * (xs_o + xb_o),
        seller_view_kwh=xs_o,
        buyer_view_kwh=xb_o,
        price_eur_per_kwh=out["lam"],
        welfare_eur=welfare_eur(problem, out["e"], xs_o, xb_o),
        iterations=out["it"],
        primal_residual_kwh=out["r"],
        dual_residual_eur_per_kwh=out["s"],
        converged=out["conv"] if n_k else np.ones(n_int, dtype=bool),
        method="admm",
        seconds=time.perf_counter() - t_start,
    )
    return result


def _as_interval_array(value, n_int: int) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    return arr


def _default_rho(problem: P2PProblem, lay: _Layout) -> float:
    """A penalty of the order of the peers' cost curvature per product [EUR/kWh^2]."""
    a = problem.a_eur_per_kwh2[:, lay.peers]
    curv = np.median(a[a > 0]) if (a > 0).any() else 1.0
    return float(2.0 * curv)


def _rebalance(rho, adapt_left, r_max, s_max, xs, xb, lam):
    """Residual balancing with OSQP-style normalisation; unscaled duals need no rescaling."""
    eps = 1e-12
    r_rel = r_max / (np.maximum(np.abs(xs).max(axis=1), np.abs(xb).max(axis=1)) + eps)
    s_rel = s_max / (np.abs(lam).max(axis=1) + eps)
    ratio = np.sqrt((r_rel + eps) / (s_rel + eps))
    change = (adapt_left > 0) & ((ratio > 5.0) | (ratio < 0.2))
    factor = np.where(change, np.clip(ratio, 0.1, 10.0), 1.0)
    return rho * factor[:, None], adapt_left - change
