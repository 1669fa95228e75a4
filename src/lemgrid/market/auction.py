"""Call-market double auctions: uniform price (pay-as-clear) and discriminatory (pay-as-bid).

Both clear every market (interval, product) of a batch in one vectorised pass: one sort of all
orders by (market, price), cumulative sums for the merit order, and no Python loop over markets or
orders. Both trade the same, welfare-maximising volume with the same fills; they differ only in
the prices of the trades. The rules are stated in ``docs/market-auctions.md``:

- Volume: every unit whose bid is at least the ask it meets trades (the largest of the
  welfare-maximising volumes).
- Fills: price levels in merit order; at the marginal price level of each side, pro rata to the
  orders' quantities.
- Pairing into trades: along the merit order (highest bid with lowest ask); within a price level,
  earlier arrival (timestamp, then position in the batch) first.

References
----------
.. [1] Chatterjee, K. and Samuelson, W. (1983). Bargaining under incomplete information.
   Operations Research 31(5), 835-851.
.. [2] Rustichini, A., Satterthwaite, M. A. and Williams, S. R. (1994). Convergence to efficiency
   in a simple market with incomplete information. Econometrica 62(5), 1041-1063.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lemgrid.errors import InputError
from lemgrid.market.orders import OrderBatch, lexsort
from lemgrid.market.results import ClearingResult

#: Relative tolerance (of a market's bid plus ask quantity) under which two cumulative
#: quantities count as equal. A float sum of n terms errs by at most ~n x 1.1e-16 relative, so
#: this covers the worst case up to ~10^4 orders per market and the typical case far beyond.
REL_QUANTITY_TOL = 1e-12


def clear_uniform(orders: OrderBatch, *, k: float = 0.5) -> ClearingResult:
    """Clear every market with a uniform-price double auction (pay-as-clear, k-rule).

    In each market the welfare-maximising volume trades at one price
    ``p = (1 - k) * L + k * U``, where ``[L, U]`` is the market-clearing price interval of the
    stepwise supply and demand curves ([2]_, extended to divisible quantities):

    - ``L = max(marginal ask, highest bid with an unmatched remainder)``,
    - ``U = min(marginal bid, lowest ask with an unmatched remainder)``,

    the marginal bid (ask) being the lowest bid (highest ask) that trades. At any ``p`` in
    ``[L, U]`` no buyer pays above its limit, no seller receives below its limit, and no order
    with an unmatched remainder would gain from trading at ``p``. With a single buyer and seller
    this is the k-double auction of [1]_.

    Parameters
    ----------
    orders : OrderBatch
        Bids and offers of any number of intervals and products.
    k : float, default 0.5
        Weight of the upper end, 0 <= k <= 1: 0 favours buyers (price ``L``), 1 favours sellers
        (price ``U``), 0.5 is the midpoint.

    Returns
    -------
    ClearingResult
        ``price_eur_per_kwh`` per market is the uniform price (NaN where nothing trades).

    References
    ----------
    .. [1] Chatterjee and Samuelson (1983), Operations Research 31(5), 835-851.
    .. [2] Rustichini, Satterthwaite and Williams (1994), Econometrica 62(5), 1041-1063.
    """
    _check_k(k)
    m = _merit_order_match(orders)
    price = (1.0 - k) * m.lower_eur_per_kwh + k * m.upper_eur_per_kwh
    return ClearingResult.from_trades(
        mechanism="uniform",
        price_rule=(f"uniform price (pay-as-clear), k-rule with k={k:g}: p = (1-k)*L + k*U on the "
                    "market-clearing interval [L, U], "
                    "L = max(marginal ask, highest unmatched bid), "
                    "U = min(marginal bid, lowest unmatched ask)"),
        orders=orders,
        order_market=m.order_market,
        market_key=m.market_key,
        trade_buy=m.trade_buy,
        trade_sell=m.trade_sell,
        trade_quantity_kwh=m.trade_quantity_kwh,
        trade_price_eur_per_kwh=price[m.order_market[m.trade_buy]],
        price_eur_per_kwh=price,
    )


def clear_pay_as_bid(orders: OrderBatch, *, k: float = 1.0) -> ClearingResult:
    """Clear every market with a discriminatory double auction (pay-as-bid).

    Volume, fills and pairing are those of :func:`clear_uniform`; each matched pair of a bid ``b``
    and an ask ``a`` trades at its own price ``k * b + (1 - k) * a`` (so ``a <= price <= b``).

    Parameters
    ----------
    orders : OrderBatch
        Bids and offers of any number of intervals and products.
    k : float, default 1.0
        Weight of the bid, 0 <= k <= 1: 1 = each pair at the buyer's bid, 0 = at the seller's ask,
        0.5 = at the midpoint of the pair's limits.

    Returns
    -------
    ClearingResult
        ``price_eur_per_kwh`` per market is the volume-weighted average trade price.
    """
    _check_k(k)
    m = _merit_order_match(orders)
    limits = orders.price_eur_per_kwh
    bid, ask = limits[m.trade_buy], limits[m.trade_sell]
    names = {1.0: " (the buyer's bid)", 0.0: " (the seller's ask)", 0.5: " (midpoint)"}
    return ClearingResult.from_trades(
        mechanism="pay-as-bid",
        price_rule=(f"pay-as-bid (discriminatory): each matched pair trades at k*bid + (1-k)*ask "
                    f"with k={k:g}{names.get(float(k), '')}"),
        orders=orders,
        order_market=m.order_market,
        market_key=m.market_key,
        trade_buy=m.trade_buy,
        trade_sell=m.trade_sell,
        trade_quantity_kwh=m.trade_quantity_kwh,
        trade_price_eur_per_kwh=k * bid + (1.0 - k) * ask,
    )


def _check_k(k: float) -> None:
    if not 0.0 <= k <= 1.0:
        raise InputError(f"k must be within [0, 1], got {k!r}")


@dataclass(frozen=True)
class _Match:
    """Merit-order matching of all markets: trades plus each market's clearing-price interval."""

    order_market: np.ndarray
    market_key: np.ndarray
    trade_buy: np.ndarray
    trade_sell: np.ndarray
    trade_quantity_kwh: np.ndarray
    lower_eur_per_kwh: np.ndarray
    upper_eur_per_kwh: np.ndarray


def _merit_order_match(orders: OrderBatch) -> _Match:
    """Welfare-maximising volume, pro-rata fills and merit-order pairing, for all markets at once.

    All orders are sorted once by (market, price, side with sells first, arrival). In that
    ascending order a cumulative sum gives, for every price level, the supply at or below it and
    the demand at or above it, and the traded volume of a market is
    ``Q* = max over bid levels b of min(demand >= b, supply <= b)``. Each side is then laid on an
    axis ``[0, Q*]`` in merit order (bids descending, asks ascending); the trades are the pieces
    of the common refinement of the two partitions.

    Positions on one axis come from one cumulative sum, so a level's end and the next level's
    start are the same float, and both sides' marginal levels end at the same float ``Q*``: no
    sliver trades. Across the two sides, quantities within :data:`REL_QUANTITY_TOL` of the
    market's gross quantity count as equal; an order can thereby be filled beyond its quantity
    by at most that rounding tolerance.
    """
    n = len(orders)
    if n == 0:
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
        return _Match(empty_i, empty_i, empty_i, empty_i, empty_f, empty_f, empty_f)
    market_key, market_all = orders.markets()
    is_buy_all = orders.is_buy
    # A sort pass on a constant key would be wasted: skip it for single-market batches.
    sort_keys = [is_buy_all, orders.price_eur_per_kwh] + ([market_all] if market_key.size > 1
                                                          else [])
    if not orders.arrival_is_row_order:
        sort_keys.insert(0, orders.timestamp_s)
    order = lexsort(sort_keys)
    market = market_all[order].astype(np.int64)
    price = orders.price_eur_per_kwh[order]
    is_buy = is_buy_all[order]
    qty = orders.quantity_kwh[order]

    new_market = np.empty(n, bool)
    new_market[0] = True
    np.not_equal(market[1:], market[:-1], out=new_market[1:])
    starts = np.flatnonzero(new_market)
    new_level = new_market.copy()
    new_level[1:] |= (price[1:] != price[:-1]) | (is_buy[1:] != is_buy[:-1])
    level_first = np.flatnonzero(new_level)
    level_last = np.append(level_first[1:] - 1, n - 1)
    level = np.cumsum(new_level) - 1

    def running(q_side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative quantity within each market: inclusive and exclusive of each position."""
        total = np.cumsum(q_side)
        before = np.empty(n)
        before[0] = 0.0
        before[1:] = total[:-1]
        base = before[starts][market]
        return total - base, before - base

    buy_in, buy_ex = running(np.where(is_buy, qty, 0.0))
    sell_in, sell_ex = running(np.where(is_buy, 0.0, qty))
    market_last = np.append(starts[1:] - 1, n - 1)
    market_demand = buy_in[market_last]
    # Quantities closer than this are equal: the two sides' cumulative sums are rounded
    # differently, so mathematically equal ends can differ by a few ulps.
    tol = (REL_QUANTITY_TOL * (market_demand + sell_in[market_last]))[market]

    # Level extents on each side's merit-order axis. Bids run from the highest price down:
    # a bid level spans [demand above its price, demand at or above its price].
    level_is_buy = is_buy[level_first]
    demand = market_demand[market[level_first]]
    level_start = np.where(level_is_buy, demand - buy_in[level_last], sell_ex[level_first])
    level_end = np.where(level_is_buy, demand - buy_ex[level_first], sell_in[level_last])

    # Volume: the best bid level's min(demand >= b, supply <= b); asks equal to b sort first.
    candidate = np.where(is_buy, np.minimum(level_end[level], sell_in), 0.0)
    q_star = np.maximum.reduceat(candidate, starts)[market]
    q_star = np.where(q_star > tol, q_star, 0.0)

    # Each order's end on its axis: levels before the margin in full, the marginal level (one per
    # side) pro rata up to exactly Q*, so that both sides end at the same float.
    ls, le = level_start[level], level_end[level]
    traded = ls < q_star - tol
    left = le > q_star + tol
    top = np.where(traded, np.where(le <= q_star - tol, le, q_star), ls)
    within_in = np.where(is_buy, buy_in, sell_in)
    within_ex = np.where(is_buy, buy_ex, sell_ex)
    level_base = within_ex[level_first][level]
    share = (within_in - level_base) / (within_in[level_last] - within_ex[level_first])[level]
    end = np.clip(top - (top - ls) * (1.0 - share), ls, top)
    start = np.empty(n)
    start[0] = 0.0
    start[1:] = end[:-1]
    start = np.where(new_level, ls, start)

    # Market-clearing price interval [L, U] from the marginal and first unmatched levels.
    inf = np.inf
    bid_last = np.minimum.reduceat(np.where(is_buy & traded, price, inf), starts)
    bid_next = np.maximum.reduceat(np.where(is_buy & left, price, -inf), starts)
    ask_last = np.maximum.reduceat(np.where(~is_buy & traded, price, -inf), starts)
    ask_next = np.minimum.reduceat(np.where(~is_buy & left, price, inf), starts)
    trades_any = q_star[starts] > 0
    lower = np.where(trades_any, np.maximum(ask_last, bid_next), np.nan)
    upper = np.where(trades_any, np.minimum(bid_last, ask_next), np.nan)

    pos = np.flatnonzero(end > start)
    piece_buy, piece_sell, piece_kwh = _pieces(market_all[order[pos]], end[pos], is_buy[pos],
                                               several_markets=market_key.size > 1)
    return _Match(
        order_market=market_all.astype(np.int64),
        market_key=market_key,
        trade_buy=order[pos[piece_buy]],
        trade_sell=order[pos[piece_sell]],
        trade_quantity_kwh=piece_kwh,
        lower_eur_per_kwh=lower,
        upper_eur_per_kwh=upper,
    )


def _pieces(market: np.ndarray, end: np.ndarray, is_buy: np.ndarray,
            several_markets: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each market's traded volume at every filled order's end on the merit-order axis.

    Parameters
    ----------
    market, end, is_buy : ndarray
        Of the filled orders: market index, end position [kWh] (each side's ends run up to the
        same ``Q*``), side.
    several_markets : bool
        False when all orders are in one market (saves a sort pass).

    Returns
    -------
    buy, sell : ndarray of int64
        Per piece, the index (into the inputs) of the bid and of the ask that own it: the first
        of each side whose end is at or beyond the piece's end.
    quantity_kwh : ndarray of float64
        Length of each piece.
    """
    order = lexsort([end, market] if several_markets else [end])
    market, end, is_buy = market[order], end[order], is_buy[order]
    size = order.size
    index = np.arange(size)
    next_buy = np.minimum.accumulate(np.where(is_buy, index, size)[::-1])[::-1]
    next_sell = np.minimum.accumulate(np.where(is_buy, size, index)[::-1])[::-1]
    distinct = np.ones(size, bool)
    distinct[1:] = (market[1:] != market[:-1]) | (end[1:] != end[:-1])
    cut = np.flatnonzero(distinct)
    cut_end = end[cut]
    cut_start = np.zeros(cut.size)
    cut_start[1:] = cut_end[:-1]
    first_in_market = np.ones(cut.size, bool)
    first_in_market[1:] = market[cut[1:]] != market[cut[:-1]]
    cut_start[first_in_market] = 0.0
    return order[next_buy[cut]], order[next_sell[cut]], cut_end - cut_start
