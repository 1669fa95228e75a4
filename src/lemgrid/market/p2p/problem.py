"""The peer-to-peer market with product differentiation: problem data, validation, welfare, result.

Model (Sorin, Bobo & Pinson 2019, with distance-based network charges after Baroche et al. 2019).
For every interval ``i`` (an independent market; intervals are a batch axis) and peer ``n``:

* net position ``p_n`` in kW over an interval of ``dt_h`` hours, injection (selling) positive;
  its energy is ``e_n = p_n * dt_h`` in kWh;
* private cost ``C_n = dt_h * (a_n * p_n**2 + b_n * p_n)`` in EUR, so the marginal cost of energy is
  ``2 a_n p_n + b_n`` EUR/kWh. For a consumer (``p_n < 0``) ``-C_n`` is its utility: ``b_n`` is
  its marginal utility at zero consumption and ``a_n`` how fast it falls;
* bounds ``p_min_n <= p_n <= p_max_n``. A peer with ``p_min > 0`` must sell, one with
  ``p_max < 0`` must buy; one whose bounds straddle zero is a prosumer and may do both.

Trades are *products*: a product ``k`` is energy sold by peer ``seller[k]`` to peer ``buyer[k]``,
``x_k >= 0`` kWh. Products exist for the ordered pairs of the communication set (full mesh by
default) whose seller can sell (``p_max > 0``) and whose buyer can buy (``p_min < 0``) in at least
one interval; a product is *open* in an interval when both hold there, otherwise ``x_k = 0``. For a
producer–consumer pair this is exactly Sorin's signed trade ``t_nm = -t_mn``; two prosumers get one
product per direction, which keeps every sign constraint linear. Peer ``n``'s energy is
``e_n = sum(x sold by n) - sum(x bought by n)``.

Product differentiation: each side of a product carries a private cost per kWh it trades on it,
``seller_cost_eur_per_kwh[k]`` and ``buyer_cost_eur_per_kwh[k]`` (negative = a premium the peer is
willing to pay, e.g. for local or green energy or a chosen peer; positive = a dislike or a network
charge it must pay). :func:`differentiation_costs` builds them from a preference matrix and a
distance-based network charge ``gamma * d_nm``.

The market solves ``min sum_n C_n + sum_k (seller_cost_k + buyer_cost_k) x_k``; the *social welfare*
is minus that optimum, in EUR per interval: total utility of consumption minus production cost minus
differentiation costs (network charges count as a cost because peers pay them to the grid operator).
Trade prices ``price_eur_per_kwh[k]`` (the pair's dual variable ``lambda_k``) are transfers between
the two peers and cancel out of the welfare.

References
----------
.. [1] T. Sorin, L. Bobo, P. Pinson, "Consensus-based approach to peer-to-peer electricity markets
   with product differentiation", IEEE Trans. Power Systems 34(2), 994-1004, 2019,
   doi:10.1109/TPWRS.2018.2872880.
.. [2] T. Baroche, P. Pinson, R. Le Goff Latimier, H. Ben Ahmed, "Exogenous cost allocation in
   peer-to-peer electricity markets", IEEE Trans. Power Systems 34(4), 2553-2564, 2019,
   doi:10.1109/TPWRS.2019.2896654.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lemgrid.errors import InfeasibleError, InputError

__all__ = [
    "P2PProblem",
    "P2PResult",
    "make_p2p_problem",
    "differentiation_costs",
    "welfare_eur",
    "check_feasible",
]

_TRADES_COLUMNS = ["interval", "seller", "buyer", "quantity_kwh", "price_eur_per_kwh"]


@dataclass(frozen=True, eq=False)
class P2PProblem:
    """One P2P market per interval, all sharing the peers and the product (pair) structure.

    Build it with :func:`make_p2p_problem`, which validates the input. Arrays of shape
    ``(intervals, peers)`` or ``(products,)``; products are sorted by seller, then buyer.

    Attributes
    ----------
    peer_ids : tuple of str
        Peer names, length ``N``.
    dt_h : float
        Interval length [h].
    a_eur_per_kw2h, b_eur_per_kwh : ndarray, shape (I, N)
        Cost coefficients: ``C = dt_h (a p^2 + b p)`` [EUR] with ``p`` in kW; ``a`` in
        EUR/(kW^2 h), ``b`` in EUR/kWh.
    p_min_kw, p_max_kw : ndarray, shape (I, N)
        Bounds of the net position [kW], injection positive.
    seller, buyer : ndarray of int, shape (K,)
        Peer index of each product's seller and buyer.
    seller_cost_eur_per_kwh, buyer_cost_eur_per_kwh : ndarray, shape (K,)
        Differentiation cost each side attaches to a kWh traded on the product [EUR/kWh].
    """

    peer_ids: tuple[str, ...]
    dt_h: float
    a_eur_per_kw2h: np.ndarray
    b_eur_per_kwh: np.ndarray
    p_min_kw: np.ndarray
    p_max_kw: np.ndarray
    seller: np.ndarray
    buyer: np.ndarray
    seller_cost_eur_per_kwh: np.ndarray
    buyer_cost_eur_per_kwh: np.ndarray

    @property
    def n_intervals(self) -> int:
        return self.p_min_kw.shape[0]

    @property
    def n_peers(self) -> int:
        return len(self.peer_ids)

    @property
    def n_products(self) -> int:
        return self.seller.shape[0]

    @property
    def a_eur_per_kwh2(self) -> np.ndarray:
        """Quadratic cost coefficient on energy, ``a / dt_h`` [EUR/kWh^2], shape (I, N)."""
        return self.a_eur_per_kw2h / self.dt_h

    @property
    def e_min_kwh(self) -> np.ndarray:
        return self.p_min_kw * self.dt_h

    @property
    def e_max_kwh(self) -> np.ndarray:
        return self.p_max_kw * self.dt_h

    @property
    def max_sale_kwh(self) -> np.ndarray:
        """Most energy each peer can sell, ``max(p_max, 0) dt_h`` [kWh], shape (I, N)."""
        return np.maximum(self.e_max_kwh, 0.0)

    @property
    def max_purchase_kwh(self) -> np.ndarray:
        """Most energy each peer can buy, ``max(-p_min, 0) dt_h`` [kWh], shape (I, N)."""
        return np.maximum(-self.e_min_kwh, 0.0)

    def is_open(self) -> np.ndarray:
        """Whether each product can trade in each interval (seller can sell, buyer can buy), (I, K)."""
        return (self.p_max_kw[:, self.seller] > 0) & (self.p_min_kw[:, self.buyer] < 0)

    def capacity_kwh(self) -> np.ndarray:
        """Largest possible quantity of each product [kWh], shape (I, K)."""
        return np.minimum(self.max_sale_kwh[:, self.seller], self.max_purchase_kwh[:, self.buyer])


@dataclass(frozen=True, eq=False)
class P2PResult:
    """Cleared P2P market: schedules, trades, prices and solver diagnostics.

    Attributes
    ----------
    peer_ids : tuple of str
    seller, buyer : ndarray of int, shape (K,)
        As in :class:`P2PProblem`.
    dt_h : float
        Interval length [h].
    p_kw : ndarray, shape (I, N)
        Net position of each peer [kW], injection positive: the sum of its own trade proposals.
    quantity_kwh : ndarray, shape (I, K)
        Agreed quantity of each product [kWh]: the mean of the seller's and the buyer's view.
    seller_view_kwh, buyer_view_kwh : ndarray, shape (I, K)
        Quantity each side of the product settled on [kWh]; they differ by at most the primal
        residual (equal for the centralised solve).
    price_eur_per_kwh : ndarray, shape (I, K)
        Price the buyer pays the seller for the product, the pair's dual variable [EUR/kWh];
        differentiation costs come on top (buyer) or are deducted (seller).
    welfare_eur : ndarray, shape (I,)
        Social welfare per interval [EUR] (see module docstring), from each peer's own view.
    iterations : ndarray of int, shape (I,)
        ADMM iterations per interval (solver iterations for the centralised solve).
    primal_residual_kwh : ndarray, shape (I,)
        Largest reciprocity mismatch ``|seller_view - buyer_view|`` [kWh].
    dual_residual_eur_per_kwh : ndarray, shape (I,)
        Largest last change of the consensus quantity times rho [EUR/kWh] (0 for the central solve).
    converged : ndarray of bool, shape (I,)
    method : str
        ``"admm"`` or ``"central"``.
    seconds : float
        Wall-clock solve time [s].
    """

    peer_ids: tuple[str, ...]
    seller: np.ndarray
    buyer: np.ndarray
    dt_h: float
    p_kw: np.ndarray
    quantity_kwh: np.ndarray
    seller_view_kwh: np.ndarray
    buyer_view_kwh: np.ndarray
    price_eur_per_kwh: np.ndarray
    welfare_eur: np.ndarray
    iterations: np.ndarray
    primal_residual_kwh: np.ndarray
    dual_residual_eur_per_kwh: np.ndarray
    converged: np.ndarray
    method: str
    seconds: float

    @property
    def total_welfare_eur(self) -> float:
        return float(self.welfare_eur.sum())

    def trades_table(self, min_quantity_kwh: float = 1e-6):
        """Long table of the trades, one row per interval and traded product.

        Parameters
        ----------
        min_quantity_kwh : float
            Trades with a smaller agreed quantity [kWh] are left out (ADMM leaves dust).

        Returns
        -------
        pandas.DataFrame
            Columns ``interval`` (int), ``seller``, ``buyer`` (peer ids), ``quantity_kwh``,
            ``price_eur_per_kwh``.
        """
        import pandas as pd

        interval, product = np.nonzero(self.quantity_kwh > min_quantity_kwh)
        ids = np.asarray(self.peer_ids, dtype=object)
        return pd.DataFrame(
            {
                "interval": interval.astype(np.int64),
                "seller": ids[self.seller[product]],
                "buyer": ids[self.buyer[product]],
                "quantity_kwh": self.quantity_kwh[interval, product],
                "price_eur_per_kwh": self.price_eur_per_kwh[interval, product],
            },
            columns=_TRADES_COLUMNS,
        )


def _float_array(name: str, value, shape: tuple[int, ...], peer_ids=None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric, got {value!r}") from exc
    try:
        arr = np.broadcast_to(arr, shape)
    except ValueError as exc:
        raise InputError(f"{name} has shape {arr.shape}, expected {shape} or broadcastable") from exc
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad)[0]
        where = _where(idx, peer_ids)
        raise InputError(f"{name}{where} must be a finite number, got {arr[tuple(idx)]}")
    return np.ascontiguousarray(arr)


def _where(idx, peer_ids) -> str:
    """Human-readable position of an (interval, peer) entry."""
    if peer_ids is not None and len(idx) == 2:
        return f": peer '{peer_ids[idx[1]]}', interval {idx[0]},"
    return f" at index {tuple(int(i) for i in idx)}"


def make_p2p_problem(
    *,
    a_eur_per_kw2h,
    b_eur_per_kwh,
    p_min_kw,
    p_max_kw,
    dt_h: float = 0.25,
    peer_ids=None,
    pairs=None,
    pair_cost_eur_per_kwh=None,
    distance=None,
    network_charge_eur_per_kwh_per_unit: float = 0.0,
    seller_share: float = 0.5,
) -> P2PProblem:
    """Validate the peers' data and build a :class:`P2PProblem`.

    Parameters
    ----------
    a_eur_per_kw2h, b_eur_per_kwh : array_like, shape (N,) or (I, N)
        Cost ``C = dt_h (a p^2 + b p)`` [EUR] of each peer, ``p`` in kW; ``a >= 0``
        [EUR/(kW^2 h)], ``b`` [EUR/kWh]. A 1-D array applies to every interval.
    p_min_kw, p_max_kw : array_like, shape (N,) or (I, N)
        Bounds of each peer's net position [kW], injection positive.
    dt_h : float
        Interval length [h].
    peer_ids : sequence of str, optional
        Unique peer names; default ``"0" .. "N-1"``.
    pairs : array_like of int, shape (P, 2), optional
        Communication set: unordered peer-index pairs allowed to trade. Default: full mesh.
    pair_cost_eur_per_kwh : array_like, shape (N, N), optional
        ``[n, m]``: cost peer ``n`` attaches to each kWh it trades with ``m`` [EUR/kWh];
        negative for a preferred peer (local, green, chosen).
    distance : array_like, shape (N, N), optional
        Electrical distance between peers [any unit, e.g. km or ohm]; with
        ``network_charge_eur_per_kwh_per_unit`` gives a network charge ``gamma * d_nm`` per kWh.
    network_charge_eur_per_kwh_per_unit : float
        ``gamma`` [EUR/kWh per distance unit].
    seller_share : float
        Share of the network charge paid by the seller, the rest by the buyer.

    Returns
    -------
    P2PProblem

    Raises
    ------
    InputError
        Non-finite values, ``a < 0``, ``p_min > p_max``, pairs out of range or self-pairs, bad
        shapes, duplicate peer ids.
    """
    inputs = (a_eur_per_kw2h, b_eur_per_kwh, p_min_kw, p_max_kw)
    if np.ndim(p_min_kw) not in (1, 2):
        raise InputError(
            f"p_min_kw must be 1-D (peers) or 2-D (intervals, peers), got {np.ndim(p_min_kw)}-D"
        )
    n_peers = np.shape(p_min_kw)[-1]
    n_int = max((np.shape(v)[0] for v in inputs if np.ndim(v) == 2), default=1)
    if n_peers == 0:
        raise InputError("the market has no peers")
    if peer_ids is None:
        peer_ids = tuple(str(i) for i in range(n_peers))
    peer_ids = tuple(str(p) for p in peer_ids)
    if len(peer_ids) != n_peers:
        raise InputError(f"peer_ids has {len(peer_ids)} names for {n_peers} peers")
    if len(set(peer_ids)) != n_peers:
        dup = next(p for p in peer_ids if peer_ids.count(p) > 1)
        raise InputError(f"peer_ids: '{dup}' appears more than once")
    if not (np.isfinite(dt_h) and dt_h > 0):
        raise InputError(f"dt_h must be > 0 hours, got {dt_h}")

    shape = (n_int, n_peers)
    a = _float_array("a_eur_per_kw2h", a_eur_per_kw2h, shape, peer_ids)
    b = _float_array("b_eur_per_kwh", b_eur_per_kwh, shape, peer_ids)
    pmin = _float_array("p_min_kw", p_min_kw, shape, peer_ids)
    pmax = _float_array("p_max_kw", p_max_kw, shape, peer_ids)
    neg = a < 0
    if neg.any():
        i, n = np.argwhere(neg)[0]
        raise InputError(
            f"a_eur_per_kw2h: peer '{peer_ids[n]}', interval {i}, must be >= 0 (convex cost), got {a[i, n]}"
        )
    crossed = pmin > pmax
    if crossed.any():
        i, n = np.argwhere(crossed)[0]
        raise InputError(
            f"peer '{peer_ids[n]}', interval {i}: p_min_kw {pmin[i, n]} > p_max_kw {pmax[i, n]}"
        )

    seller, buyer = _products(pairs, n_peers, pmin, pmax)
    seller_cost, buyer_cost = differentiation_costs(
        seller,
        buyer,
        n_peers,
        pair_cost_eur_per_kwh=pair_cost_eur_per_kwh,
        distance=distance,
        network_charge_eur_per_kwh_per_unit=network_charge_eur_per_kwh_per_unit,
        seller_share=seller_share,
    )
    return P2PProblem(
        peer_ids=peer_ids,
        dt_h=float(dt_h),
        a_eur_per_kw2h=a,
        b_eur_per_kwh=b,
        p_min_kw=pmin,
        p_max_kw=pmax,
        seller=seller,
        buyer=buyer,
        seller_cost_eur_per_kwh=seller_cost,
        buyer_cost_eur_per_kwh=buyer_cost,
    )


def _products(pairs, n_peers: int, pmin: np.ndarray, pmax: np.ndarray):
    """Ordered (seller, buyer) products of the communication set, sorted by seller then buyer."""
    can_sell = np.asarray((pmax > 0).any(axis=0))
    can_buy = np.asarray((pmin < 0).any(axis=0))
    if pairs is None:
        s, b = np.nonzero(can_sell[:, None] & can_buy[None, :])
        keep = s != b
        return s[keep].astype(np.int64), b[keep].astype(np.int64)
    try:
        pr = np.asarray(pairs)
        if pr.size == 0:
            pr = pr.reshape(0, 2)
        ok = pr.ndim == 2 and pr.shape[1] == 2 and np.all(np.equal(np.mod(pr, 1), 0))
    except TypeError:
        ok = False
    if not ok:
        raise InputError(f"pairs must be an integer array of shape (P, 2), got {np.asarray(pairs).shape}")
    pr = pr.astype(np.int64)
    out = (pr < 0) | (pr >= n_peers)
    if out.any():
        row = int(np.argwhere(out)[0][0])
        raise InputError(
            f"pairs row {row}: peer index {pr[row].tolist()} out of range 0..{n_peers - 1}"
        )
    self_pair = pr[:, 0] == pr[:, 1]
    if self_pair.any():
        row = int(np.argmax(self_pair))
        raise InputError(f"pairs row {row}: a peer cannot trade with itself ({pr[row, 0]})")
    both = np.concatenate([pr, pr[:, ::-1]])  # each unordered pair gives up to two products
    both = both[can_sell[both[:, 0]] & can_buy[both[:, 1]]]
    both = np.unique(both, axis=0)  # also sorts by seller, then buyer
    return both[:, 0].copy(), both[:, 1].copy()


def differentiation_costs(
    seller,
    buyer,
    n_peers: int,
    *,
    pair_cost_eur_per_kwh=None,
    distance=None,
    network_charge_eur_per_kwh_per_unit: float = 0.0,
    seller_share: float = 0.5,
):
    """Per-product differentiation costs of the seller and the buyer [EUR/kWh].

    ``seller_cost[k] = pair_cost[s, b] + seller_share * gamma * d[s, b]`` and
    ``buyer_cost[k] = pair_cost[b, s] + (1 - seller_share) * gamma * d[s, b]``, with
    ``s, b = seller[k], buyer[k]``: the preference each side attaches to its counterpart
    (Sorin et al. 2019) plus its share of the distance-based network charge (Baroche et al. 2019).

    Parameters
    ----------
    seller, buyer : ndarray of int, shape (K,)
    n_peers : int
    pair_cost_eur_per_kwh : array_like, shape (N, N), optional
        ``[n, m]`` = cost peer ``n`` attaches to a kWh traded with ``m`` [EUR/kWh].
    distance : array_like, shape (N, N), optional
        Electrical distance [unit of the caller's choice], ``>= 0``.
    network_charge_eur_per_kwh_per_unit : float
        Charge per kWh and distance unit [EUR/kWh/unit].
    seller_share : float
        Share of the network charge paid by the seller, in [0, 1].

    Returns
    -------
    seller_cost_eur_per_kwh, buyer_cost_eur_per_kwh : ndarray, shape (K,)
    """
    shape = (n_peers, n_peers)
    seller_cost = np.zeros(seller.shape[0])
    buyer_cost = np.zeros(seller.shape[0])
    if pair_cost_eur_per_kwh is not None:
        pc = _float_array("pair_cost_eur_per_kwh", pair_cost_eur_per_kwh, shape)
        seller_cost += pc[seller, buyer]
        buyer_cost += pc[buyer, seller]
    gamma = float(network_charge_eur_per_kwh_per_unit)
    if not np.isfinite(gamma):
        raise InputError(f"network_charge_eur_per_kwh_per_unit must be finite, got {gamma}")
    if not 0.0 <= seller_share <= 1.0:
        raise InputError(f"seller_share must be in [0, 1], got {seller_share}")
    if distance is not None:
        d = _float_array("distance", distance, shape)
        if (d < 0).any():
            n, m = np.argwhere(d < 0)[0]
            raise InputError(f"distance[{n}, {m}] must be >= 0, got {d[n, m]}")
        charge = gamma * d[seller, buyer]
        seller_cost += seller_share * charge
        buyer_cost += (1.0 - seller_share) * charge
    elif gamma != 0.0:
        raise InputError("network_charge_eur_per_kwh_per_unit is set but no distance matrix is given")
    return seller_cost, buyer_cost


def welfare_eur(problem: P2PProblem, e_kwh, seller_kwh, buyer_kwh) -> np.ndarray:
    """Social welfare per interval [EUR] of a schedule, from each peer's own view of its trades.

    Parameters
    ----------
    problem : P2PProblem
    e_kwh : ndarray, shape (I, N)
        Net energy of each peer [kWh], injection positive.
    seller_kwh, buyer_kwh : ndarray, shape (I, K)
        Quantity of each product as the seller and as the buyer sees it [kWh].

    Returns
    -------
    ndarray, shape (I,)
        ``-(sum_n a_n e_n^2 / dt_h + b_n e_n) - sum_k (c_seller x_seller + c_buyer x_buyer)``.
    """
    cost = (problem.a_eur_per_kwh2 * e_kwh**2 + problem.b_eur_per_kwh * e_kwh).sum(axis=1)
    cost += seller_kwh @ problem.seller_cost_eur_per_kwh + buyer_kwh @ problem.buyer_cost_eur_per_kwh
    return -cost


def check_feasible(problem: P2PProblem) -> None:
    """Raise :class:`InfeasibleError` naming a peer that no trade can satisfy.

    A peer that must sell (``p_min > 0``) needs open products whose buyers can take ``p_min``
    together; a peer that must buy (``p_max < 0``) likewise. This per-peer test is necessary, not
    sufficient (several must-sell peers may compete for the same buyers); the solvers diagnose the
    rest with :func:`lemgrid.market.p2p.central.diagnose_infeasible`.
    """
    cap = problem.capacity_kwh()
    n_int, n_peers = problem.p_min_kw.shape
    sell_cap = np.zeros((n_int, n_peers))
    buy_cap = np.zeros((n_int, n_peers))
    # Sum each product's capacity into its seller and buyer: one bincount over (interval, peer).
    rows = np.arange(n_int)[:, None] * n_peers
    sell_cap.ravel()[:] = np.bincount((rows + problem.seller).ravel(), cap.ravel(), n_int * n_peers)
    buy_cap.ravel()[:] = np.bincount((rows + problem.buyer).ravel(), cap.ravel(), n_int * n_peers)
    tol = 1e-9 * (1.0 + np.abs(problem.e_min_kwh) + np.abs(problem.e_max_kwh))
    short_sell = problem.e_min_kwh > sell_cap + tol
    short_buy = -problem.e_max_kwh > buy_cap + tol
    for mask, verb, need, have in (
        (short_sell, "sell", problem.p_min_kw, sell_cap),
        (short_buy, "buy", -problem.p_max_kw, buy_cap),
    ):
        if mask.any():
            i, n = np.argwhere(mask)[0]
            raise InfeasibleError(
                f"peer '{problem.peer_ids[n]}', interval {i}: must {verb} at least {need[i, n]:g} kW "
                f"but its trading partners can take at most {have[i, n] / problem.dt_h:g} kW"
            )
