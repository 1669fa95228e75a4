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
``rho`` needs no rescaling. By default the pairs' ``(z, lambda)`` are extrapolated with Nesterov
momentum and restarted whenever the combined residual stops falling (fast ADMM, Goldstein et al.
2014). Stopping, restart and rebalancing need only one aggregate residual per interval over the
peers, not any private data.

References
----------
.. [1] T. Sorin, L. Bobo, P. Pinson, "Consensus-based approach to peer-to-peer electricity markets
   with product differentiation", IEEE Trans. Power Systems 34(2), 994-1004, 2019.
.. [2] S. Boyd, N. Parikh, E. Chu, B. Peleato, J. Eckstein, "Distributed optimization and
   statistical learning via the alternating direction method of multipliers", Foundations and
   Trends in Machine Learning 3(1), 1-122, 2011.
.. [3] B. Stellato, G. Banjac, P. Goulart, A. Bemporad, S. Boyd, "OSQP: an operator splitting
   solver for quadratic programs", Mathematical Programming Computation 12, 637-672, 2020.
.. [4] T. Goldstein, B. O'Donoghue, S. Setzer, R. Baraniuk, "Fast alternating direction
   optimization methods", SIAM J. Imaging Sciences 7(3), 1588-1623, 2014.
.. [5] R. Cominetti, W. F. Mascarenhas, P. J. S. Silva, "A Newton's method for the continuous
   quadratic knapsack problem", Mathematical Programming Computation 6, 151-169, 2014.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lemgrid.market.p2p.problem import P2PProblem, P2PResult, check_feasible, welfare_eur

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
    w0, lo, hi, rho, a_kwh2, b_kwh, e_min, e_max, starts, counts, mu0=None, max_steps: int = 100
):
    """Solve many peers' local sub-problems exactly, vectorised over peers (and intervals).

    For each peer ``j`` owning the contiguous entries ``starts[j] .. starts[j] + counts[j] - 1``
    of the flat arrays, solve::

        min_t  a e^2 + b e + sum_l rho/2 (t_l - w0_l)^2   s.t.  e = sum_l t_l,
               lo_l <= t_l <= hi_l,  e_min <= e <= e_max

    (the linear terms of the ADMM sub-problem are folded into ``w0``). This is a continuous
    quadratic knapsack problem; it is solved by a safeguarded semismooth Newton method on the
    multiplier ``mu`` of ``e = sum t`` (Cominetti, Mascarenhas & Silva 2014), exact once the
    active set settles. Peers that have converged drop out of later steps.

    Parameters
    ----------
    w0, lo, hi : ndarray, shape (E,)
        Unconstrained targets and bounds of the signed trades ``t`` [kWh] (sales positive).
    rho : ndarray, shape (J,)
        ADMM penalty of each peer's sub-problem [EUR/kWh^2].
    a_kwh2, b_kwh, e_min, e_max : ndarray, shape (J,)
        Cost ``a e^2 + b e`` [EUR/kWh^2, EUR/kWh] and bounds of the peer's energy [kWh].
    starts, counts : ndarray of int, shape (J,)
        Entry blocks of the peers (each ``counts >= 1``).
    mu0 : ndarray, shape (J,), optional
        Warm start for the multiplier [EUR/kWh].
    max_steps : int
        Newton/bisection steps.

    Returns
    -------
    mu : ndarray, shape (J,)
        The peer's marginal value of energy [EUR/kWh].
    t : ndarray, shape (E,)
        Optimal signed trades [kWh].
    e : ndarray, shape (J,)
        ``sum t`` per peer [kWh].

    Notes
    -----
    Requires ``sum lo <= e_max`` and ``sum hi >= e_min`` per peer (checked before solving).

    References
    ----------
    .. [1] R. Cominetti, W. F. Mascarenhas, P. J. S. Silva, "A Newton's method for the continuous
       quadratic knapsack problem", Mathematical Programming Computation 6, 151-169, 2014.
    """
    a_pos = a_kwh2 > 0
    inv_2a = np.divide(0.5, a_kwh2, out=np.zeros_like(a_kwh2), where=a_pos)
    tol = 1e-11 * (1.0 + np.abs(e_min) + np.abs(e_max))
    mu = np.zeros(starts.size) if mu0 is None else np.array(mu0, dtype=float)
    # A peer with linear cost is indifferent to e exactly at mu = b: try that point first.
    mu[~a_pos] = b_kwh[~a_pos]
    low = np.full(starts.size, -np.inf)
    high = np.full(starts.size, np.inf)
    t = np.empty_like(w0)
    e = np.empty(starts.size)
    # The working set: peers still iterating and their entries (all of them at first).
    peer = np.arange(starts.size)
    ent = None
    sub = (w0, lo, hi)
    sub_starts, sub_counts = starts, counts
    for step in range(max_steps + 1):
        w_0, l_o, h_i = sub
        m, r = mu[peer], rho[peer]
        w = w_0 - np.repeat(m / r, sub_counts)
        ts = np.minimum(np.maximum(w, l_o), h_i)
        es = np.add.reduceat(ts, sub_starts)
        if ent is None:
            t[:] = ts
        else:
            t[ent] = ts
        e[peer] = es
        y = (m - b_kwh[peer]) * inv_2a[peer]
        lin = ~a_pos[peer]
        own = np.clip(y, e_min[peer], e_max[peer])
        if lin.any():  # linear cost: e jumps from e_min to e_max at mu = b
            bl = b_kwh[peer][lin]
            own[lin] = np.where(m[lin] < bl, e_min[peer][lin],
                                np.where(m[lin] > bl, e_max[peer][lin],
                                         np.clip(es[lin], e_min[peer][lin], e_max[peer][lin])))
        phi = es - own
        done = np.abs(phi) <= tol[peer]
        if done.all() or step == max_steps:
            break
        free = np.add.reduceat(np.equal(ts, w), sub_starts, dtype=np.float64)
        slope_own = np.where(~lin & (y > e_min[peer]) & (y < e_max[peer]), inv_2a[peer], 0.0)
        dphi = -free / r - slope_own
        lo_p = np.where(phi > 0, np.maximum(low[peer], m), low[peer])
        hi_p = np.where(phi < 0, np.minimum(high[peer], m), high[peer])
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = m - phi / dphi
        inside = (dphi < 0) & (newton > lo_p) & (newton < hi_p)
        need = ~done & ~inside & ~(np.isfinite(lo_p) & np.isfinite(hi_p))
        if need.any():
            # Flat or overshooting step without a finite bracket: bracket these peers by their
            # breakpoints (below every breakpoint all t are at hi and e at e_min, so phi >= 0).
            bl_, bh_ = _bracket(sub, sub_starts, r, a_kwh2[peer], b_kwh[peer], e_min[peer], e_max[peer])
            lo_p = np.where(need, np.maximum(lo_p, bl_), lo_p)
            hi_p = np.where(need, np.minimum(hi_p, bh_), hi_p)
        low[peer], high[peer] = lo_p, hi_p
        with np.errstate(invalid="ignore"):
            mu[peer] = np.where(done, m, np.where(inside, newton, 0.5 * (lo_p + hi_p)))
        if done.sum() * 2 >= done.size:  # shrink the working set to the unfinished peers
            keep = ~done
            sel = np.repeat(keep, sub_counts)
            ent = np.flatnonzero(sel) if ent is None else ent[sel]
            peer = peer[keep]
            sub_counts = sub_counts[keep]
            sub_starts = np.r_[0, np.cumsum(sub_counts)[:-1]].astype(np.int64)
            sub = tuple(v[sel] for v in sub)
    return mu, t, e


def _bracket(sub, starts, rho, a, b, e_min, e_max):
    """Multiplier interval [low, high] that contains each peer's root."""
    w0, lo, hi = sub
    r = np.repeat(rho, np.diff(np.r_[starts, w0.size]))
    low = np.minimum(np.minimum.reduceat(r * (w0 - hi), starts), b + 2 * a * e_min)
    high = np.maximum(np.maximum.reduceat(r * (w0 - lo), starts), b + 2 * a * e_max)
    return low, high


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
    accelerate: bool = True,
    callback=None,
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
    accelerate : bool
        Nesterov extrapolation with restart (Goldstein et al. 2014); use with ``alpha = 1``.
    callback : callable, optional
        Called after every iteration as ``callback(iteration, state)``, ``state`` a dict of the
        still-active intervals' ``intervals``, ``seller_kwh``, ``buyer_kwh``,
        ``price_eur_per_kwh``, ``rho``, ``primal_residual_kwh``, ``dual_residual_eur_per_kwh``.

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
    c_s = problem.seller_cost_eur_per_kwh
    c_b = problem.buyer_cost_eur_per_kwh
    if rho_eur_per_kwh2 is None:
        rho_eur_per_kwh2 = _default_rho(problem, lay)
    lam0 = np.broadcast_to(_as_interval_array(price0_eur_per_kwh, n_int), (n_int, n_k))

    # Per-interval state; rows are dropped as intervals converge.
    st = {
        "lo": np.concatenate([np.zeros_like(sell_cap), -buy_cap], axis=1)[:, lay.order],
        "hi": np.concatenate([sell_cap, np.zeros_like(buy_cap)], axis=1)[:, lay.order],
        "a": problem.a_eur_per_kwh2[:, lay.peers],
        "b": problem.b_eur_per_kwh[:, lay.peers],
        "emin": problem.e_min_kwh[:, lay.peers],
        "emax": problem.e_max_kwh[:, lay.peers],
        "rho": np.full((n_int, 1), float(rho_eur_per_kwh2)),
        "z": np.zeros((n_int, n_k)),  # consensus quantity
        "lam": np.array(lam0),  # pair prices
        "z_hat": np.zeros((n_int, n_k)),  # extrapolated point the peers respond to
        "lam_hat": np.array(lam0),
        "mom": np.ones((n_int, 1)),  # Nesterov momentum coefficient
        "combined": np.full(n_int, np.inf),  # last combined residual, for the restart test
        "mu": np.zeros((n_int, lay.peers.size)),
        "adapt_left": np.full(n_int, 10 if adaptive_rho else 0),
        "active": np.arange(n_int),
    }
    st["mu"] += lam0.mean(axis=1, keepdims=True) if n_k else 0.0
    out_xs = np.zeros((n_int, n_k))
    out_xb = np.zeros((n_int, n_k))
    out_lam = np.array(lam0)
    out_it = np.zeros(n_int, dtype=np.int64)
    out_r = np.zeros(n_int)
    out_s = np.zeros(n_int)
    out_conv = np.zeros(n_int, dtype=bool) if n_k else np.ones(n_int, dtype=bool)
    for it in range(1, max_iter + 1):
        if n_k == 0 or st["active"].size == 0:
            break
        rho, z_hat, lam_hat = st["rho"], st["z_hat"], st["lam_hat"]
        # Each peer's targets; its linear terms (own cost -/+ price) are folded into w0.
        w0 = np.concatenate(
            [z_hat - (c_s - lam_hat) / rho, -z_hat + (c_b + lam_hat) / rho], axis=1
        )[:, lay.order]
        n_rows, n_ent = w0.shape
        mu, t, _ = solve_local_subproblems(
            w0.ravel(), st["lo"].ravel(), st["hi"].ravel(),
            np.repeat(rho[:, 0], lay.peers.size), st["a"].ravel(), st["b"].ravel(),
            st["emin"].ravel(), st["emax"].ravel(),
            (np.arange(n_rows)[:, None] * n_ent + lay.starts).ravel(),
            np.tile(lay.counts, n_rows), mu0=st["mu"].ravel(),
        )
        st["mu"] = mu.reshape(n_rows, -1)
        t = t.reshape(n_rows, n_ent)
        xs = t[:, lay.pos_sell]
        xb = -t[:, lay.pos_buy]
        # Messages exchanged; both sides of each product update consensus and price alike.
        z_new = alpha * 0.5 * (xs + xb) + (1.0 - alpha) * z_hat
        lam_new = lam_hat + (0.5 * alpha) * rho * (xb - xs)
        r_max = np.abs(xs - xb).max(axis=1)
        s_max = rho[:, 0] * np.abs(z_new - z_hat).max(axis=1)
        if accelerate:
            _accelerate(st, z_new, lam_new)
        else:
            st["z_hat"], st["lam_hat"] = z_new, lam_new
        st["z"], st["lam"] = z_new, lam_new
        finished = (r_max <= tol_primal_kwh) & (s_max <= tol_dual_eur_per_kwh)
        if callback is not None:
            callback(it, {"intervals": st["active"], "seller_kwh": xs, "buyer_kwh": xb,
                          "price_eur_per_kwh": lam_new, "rho": rho[:, 0],
                          "primal_residual_kwh": r_max, "dual_residual_eur_per_kwh": s_max})
        if adaptive_rho and it % 25 == 0:
            _rebalance(st, r_max, s_max, xs, xb)
        stop = finished | (it == max_iter)
        if stop.any():
            idx = st["active"][stop]
            out_xs[idx], out_xb[idx], out_lam[idx] = xs[stop], xb[stop], lam_new[stop]
            out_it[idx], out_r[idx], out_s[idx] = it, r_max[stop], s_max[stop]
            out_conv[idx] = finished[stop]
            keep = ~stop
            st = {key: value[keep] for key, value in st.items()}

    # The settled schedule is the agreed quantity of every product (mean of the two views), so
    # trades are exactly reciprocal and the peers' positions add up to zero.
    quantity = 0.5 * (out_xs + out_xb)
    e = _net_energy(problem, quantity)
    result = P2PResult(
        peer_ids=problem.peer_ids,
        seller=problem.seller,
        buyer=problem.buyer,
        dt_h=problem.dt_h,
        p_kw=e / problem.dt_h,
        quantity_kwh=quantity,
        seller_view_kwh=out_xs,
        buyer_view_kwh=out_xb,
        price_eur_per_kwh=out_lam,
        welfare_eur=welfare_eur(problem, e, quantity, quantity),
        iterations=out_it,
        primal_residual_kwh=out_r,
        dual_residual_eur_per_kwh=out_s,
        converged=out_conv,
        method="admm",
        seconds=time.perf_counter() - t_start,
    )
    if not result.converged.all():
        from lemgrid.market.p2p.central import diagnose_infeasible

        diagnose_infeasible(problem)  # raises if no schedule exists; otherwise report as is
    return result


def _net_energy(problem: P2PProblem, quantity_kwh: np.ndarray) -> np.ndarray:
    """Each peer's net energy [kWh] from product quantities: sales minus purchases, (I, N)."""
    n_int, n_peers = quantity_kwh.shape[0], problem.n_peers
    rows = (np.arange(n_int) * n_peers)[:, None]
    e = np.bincount((rows + problem.seller).ravel(), quantity_kwh.ravel(), n_int * n_peers)
    e -= np.bincount((rows + problem.buyer).ravel(), quantity_kwh.ravel(), n_int * n_peers)
    return e.reshape(n_int, n_peers)


def _accelerate(st: dict, z_new: np.ndarray, lam_new: np.ndarray, eta: float = 0.999) -> None:
    """Nesterov extrapolation of (z, lambda) with restart, per interval.

    Fast ADMM with restart (Goldstein et al. 2014, Alg. 8): extrapolate while the combined
    residual falls by the factor ``eta``, otherwise restart from the last iterate. Each pair
    extrapolates its own quantity and price; only the interval's combined residual (a sum over
    peers) is shared.
    """
    rho = st["rho"]
    combined = (
        np.square(lam_new - st["lam_hat"]).sum(axis=1) / rho[:, 0]
        + rho[:, 0] * np.square(z_new - st["z_hat"]).sum(axis=1)
    )
    ok = combined < eta * st["combined"]
    mom = st["mom"]
    mom_next = np.where(ok[:, None], 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * mom**2)), 1.0)
    beta = np.where(ok[:, None], (mom - 1.0) / mom_next, 0.0)
    # On restart, continue from the last iterate without momentum.
    st["z_hat"] = z_new + beta * (z_new - st["z"])
    st["lam_hat"] = lam_new + beta * (lam_new - st["lam"])
    st["mom"] = mom_next
    st["combined"] = np.where(ok, combined, st["combined"] / eta)


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


def _rebalance(st: dict, r_max, s_max, xs, xb) -> None:
    """Residual balancing with OSQP-style normalisation; unscaled duals need no rescaling."""
    eps = 1e-12
    r_rel = r_max / (np.maximum(np.abs(xs).max(axis=1), np.abs(xb).max(axis=1)) + eps)
    s_rel = s_max / (np.abs(st["lam"]).max(axis=1) + eps)
    ratio = np.sqrt((r_rel + eps) / (s_rel + eps))
    change = (st["adapt_left"] > 0) & ((ratio > 5.0) | (ratio < 0.2))
    st["rho"] = st["rho"] * np.where(change, np.clip(ratio, 0.1, 10.0), 1.0)[:, None]
    st["adapt_left"] = st["adapt_left"] - change
    # Momentum assumes a fixed rho: restart it where rho changed.
    st["mom"] = np.where(change[:, None], 1.0, st["mom"])
    st["combined"] = np.where(change, np.inf, st["combined"])
