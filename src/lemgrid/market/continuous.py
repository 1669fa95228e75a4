"""Continuous double auction: a limit order book with price-time priority.

Each market (one interval of one product) has its own :class:`OrderBook`. An incoming order
trades immediately against the best resting orders of the other side for as long as the prices
cross, always at the resting order's price, and rests with whatever is left. Orders leave the
book when filled, cancelled, past their validity, or at gate closure. The rules are stated in
``docs/market-auctions.md``.

Each side of a book is a binary heap keyed by (price, arrival sequence) with lazy deletion:
cancelled, modified and filled orders are dropped from the heap only when they reach its top, so
submit, cancel and modify all cost O(log n).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from typing import NamedTuple

import numpy as np

from lemgrid.errors import InputError
from lemgrid.market.orders import OrderBatch, lexsort
from lemgrid.market.results import ClearingResult

#: Remainders below this are treated as filled [kWh]; guards against float sums like
#: 0.3 - 0.1 - 0.2 = 5.6e-17 leaving dust in the book.
QUANTITY_TOL_KWH = 1e-9

_REMAINING, _SEQ = 1, 2  # fields of a live order's state list (see OrderBook.__init__)


class Fill(NamedTuple):
    """One trade: the buy and sell order ids, quantity [kWh] and price [EUR/kWh]."""

    buy_order_id: Hashable
    sell_order_id: Hashable
    quantity_kwh: float
    price_eur_per_kwh: float


class OrderBook:
    """Limit order book of one market with price-time priority.

    Priority: better price first (highest bid, lowest ask); at equal price, earlier arrival
    first. An incoming order trades at the resting order's price; a partial fill leaves the
    remainder resting with its original priority.

    Examples
    --------
    >>> book = OrderBook()
    >>> book.submit("s1", "sell", 2.0, 0.20)
    []
    >>> book.submit("b1", "buy", 3.0, 0.25)
    [Fill(buy_order_id='b1', sell_order_id='s1', quantity_kwh=2.0, price_eur_per_kwh=0.2)]
    >>> book.best_bid()
    (0.25, 1.0)
    """

    __slots__ = ("_bids", "_asks", "_live", "_expiry", "_seq")

    def __init__(self) -> None:
        self._bids: list[tuple[float, int, Hashable]] = []  # (-price, seq, id)
        self._asks: list[tuple[float, int, Hashable]] = []  # (price, seq, id)
        # id -> [is_buy, remaining_kwh, seq, price_eur_per_kwh, valid_until_s]
        self._live: dict[Hashable, list] = {}
        self._expiry: list[tuple[float, int, Hashable]] = []  # (valid_until_s, seq, id)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, order_id: Hashable) -> bool:
        return order_id in self._live

    # ---------------------------------------------------------------- public API

    def submit(
        self,
        order_id: Hashable,
        side: str,
        quantity_kwh: float,
        price_eur_per_kwh: float,
        valid_until_s: float = math.inf,
    ) -> list[Fill]:
        """Enter a limit order; return the trades it makes at once.

        Parameters
        ----------
        order_id : hashable
            Unique among the orders in the book.
        side : {'buy', 'sell'}
        quantity_kwh : float
            Quantity [kWh], > 0.
        price_eur_per_kwh : float
            Limit price [EUR/kWh].
        valid_until_s : float, default inf
            The order leaves the book at the first :meth:`expire` with a later time [s].
        """
        if side not in ("buy", "sell"):
            raise InputError(f"order {order_id!r}: side must be 'buy' or 'sell', got {side!r}")
        if not (quantity_kwh > 0 and math.isfinite(quantity_kwh)):
            raise InputError(f"order {order_id!r}: quantity_kwh must be a finite number > 0, "
                             f"got {quantity_kwh!r}")
        if not math.isfinite(price_eur_per_kwh):
            raise InputError(f"order {order_id!r}: price_eur_per_kwh must be finite, "
                             f"got {price_eur_per_kwh!r}")
        if order_id in self._live:
            raise InputError(f"order {order_id!r} is already in the book")
        buys: list = []
        sells: list = []
        qtys: list = []
        prices: list = []
        self._enter(order_id, side == "buy", float(quantity_kwh), float(price_eur_per_kwh),
                    valid_until_s, buys, sells, qtys, prices)
        return [Fill(*f) for f in zip(buys, sells, qtys, prices)]

    def cancel(self, order_id: Hashable) -> float:
        """Remove a resting order; return its cancelled remainder [kWh]."""
        state = self._live.pop(order_id, None)
        if state is None:
            raise InputError(f"order {order_id!r} is not in the book (unknown, filled or expired)")
        return state[_REMAINING]

    def modify(
        self,
        order_id: Hashable,
        *,
        quantity_kwh: float | None = None,
        price_eur_per_kwh: float | None = None,
    ) -> list[Fill]:
        """Change a resting order's remaining quantity and/or limit price.

        Reducing only the quantity keeps the order's time priority. Any other change (a new
        price, or a larger quantity) is a cancel plus a new order with new time priority, which
        may trade at once; its trades are returned.

        Parameters
        ----------
        quantity_kwh : float, optional
            New remaining quantity [kWh], > 0.
        price_eur_per_kwh : float, optional
            New limit price [EUR/kWh].
        """
        state = self._live.get(order_id)
        if state is None:
            raise InputError(f"order {order_id!r} is not in the book (unknown, filled or expired)")
        is_buy, remaining, _, price, valid_until = state
        new_qty = remaining if quantity_kwh is None else quantity_kwh
        new_price = price if price_eur_per_kwh is None else price_eur_per_kwh
        if not (new_qty > 0 and math.isfinite(new_qty)):
            raise InputError(f"order {order_id!r}: quantity_kwh must be a finite number > 0, "
                             f"got {new_qty!r}")
        if not math.isfinite(new_price):
            raise InputError(f"order {order_id!r}: price_eur_per_kwh must be finite, "
                             f"got {new_price!r}")
        if new_price == price and new_qty <= remaining:
            state[_REMAINING] = float(new_qty)
            return []
        del self._live[order_id]
        return self.submit(order_id, "buy" if is_buy else "sell", new_qty, new_price, valid_until)

    def expire(self, now_s: float) -> list[tuple[Hashable, float]]:
        """Remove orders whose validity ended before ``now_s`` [s]; return (id, remainder) pairs."""
        gone = []
        expiry, live = self._expiry, self._live
        while expiry and expiry[0][0] < now_s:
            _, seq, oid = heapq.heappop(expiry)
            state = live.get(oid)
            if state is not None and state[_SEQ] == seq:
                del live[oid]
                gone.append((oid, state[_REMAINING]))
        return gone

    def close(self) -> list[tuple[Hashable, float]]:
        """Gate closure: every resting order expires; return (id, remainder) pairs."""
        gone = [(oid, state[_REMAINING]) for oid, state in self._live.items()]
        self.__init__()  # type: ignore[misc]  # an empty book of the same class
        return gone

    def best_bid(self) -> tuple[float, float] | None:
        """(price [EUR/kWh], remaining [kWh]) of the first bid in priority, or None."""
        top = self._top(self._bids)
        return None if top is None else (-top[0], self._live[top[2]][_REMAINING])

    def best_ask(self) -> tuple[float, float] | None:
        """(price [EUR/kWh], remaining [kWh]) of the first ask in priority, or None."""
        top = self._top(self._asks)
        return None if top is None else (top[0], self._live[top[2]][_REMAINING])

    def resting(self) -> list[tuple[Hashable, str, float, float]]:
        """Resting orders as (id, side, price [EUR/kWh], remaining [kWh]), each side in priority
        order, bids first."""
        out = []
        for heap, side, sign in ((self._bids, "buy", -1.0), (self._asks, "sell", 1.0)):
            for key, seq, oid in sorted(heap):
                state = self._live.get(oid)
                if state is not None and state[_SEQ] == seq:
                    out.append((oid, side, sign * key, state[_REMAINING]))
        return out

    # ---------------------------------------------------------------- matching engine

    def _top(self, heap: list) -> tuple | None:
        live = self._live
        while heap:
            entry = heap[0]
            state = live.get(entry[2])
            if state is not None and state[_SEQ] == entry[1]:
                return entry
            heapq.heappop(heap)
        return None

    def _enter(self, oid, is_buy, qty, price, valid_until, buys, sells, qtys, prices) -> None:
        """Match an incoming order, then rest its remainder; trades go to the four lists.

        The hot path of :func:`clear_continuous_double_auction`: plain lists and tuples, no
        per-trade objects.
        """
        live = self._live
        heappop = heapq.heappop
        if is_buy:
            book = self._asks
            while book:
                rest_price, seq, rid = book[0]
                state = live.get(rid)
                if state is None or state[_SEQ] != seq:
                    heappop(book)
                    continue
                if rest_price > price:
                    break
                rem = state[_REMAINING]
                buys.append(oid)
                sells.append(rid)
                prices.append(rest_price)
                if rem <= qty + QUANTITY_TOL_KWH:  # the resting order is used up
                    fill = rem if rem <= qty else qty
                    qtys.append(fill)
                    heappop(book)
                    del live[rid]
                    qty -= fill
                    if qty <= QUANTITY_TOL_KWH:
                        return
                else:
                    qtys.append(qty)
                    state[_REMAINING] = rem - qty
                    return
        else:
            book = self._bids
            while book:
                neg_price, seq, rid = book[0]
                state = live.get(rid)
                if state is None or state[_SEQ] != seq:
                    heappop(book)
                    continue
                if -neg_price < price:
                    break
                rem = state[_REMAINING]
                buys.append(rid)
                sells.append(oid)
                prices.append(-neg_price)
                if rem <= qty + QUANTITY_TOL_KWH:  # the resting order is used up
                    fill = rem if rem <= qty else qty
                    qtys.append(fill)
                    heappop(book)
                    del live[rid]
                    qty -= fill
                    if qty <= QUANTITY_TOL_KWH:
                        return
                else:
                    qtys.append(qty)
                    state[_REMAINING] = rem - qty
                    return
        seq = self._seq
        self._seq = seq + 1
        live[oid] = [is_buy, qty, seq, price, valid_until]
        if is_buy:
            heapq.heappush(self._bids, (-price, seq, oid))
        else:
            heapq.heappush(self._asks, (price, seq, oid))
        if valid_until != math.inf:
            heapq.heappush(self._expiry, (valid_until, seq, oid))


def clear_continuous_double_auction(orders: OrderBatch) -> ClearingResult:
    """Run every market's orders through its own order book, in arrival order.

    Orders of one market (interval, product) arrive in the order of ``timestamp_s`` (ties: position
    in the batch). Before each arrival, resting orders whose ``valid_until_s`` lies before it
    expire; after the last one, gate closure expires the rest (their remainders are the result's
    ``unmatched_kwh``).

    Parameters
    ----------
    orders : OrderBatch
        Bids and offers of any number of intervals and products.

    Returns
    -------
    ClearingResult
        Trades at the resting orders' prices; ``price_eur_per_kwh`` per market is the
        volume-weighted average trade price.
    """
    n = len(orders)
    market_key, market = orders.markets()
    keys = [market] if orders.arrival_is_row_order else [orders.timestamp_s, market]
    order = lexsort(keys)
    new_market = np.ones(n, bool)
    new_market[1:] = market[order][1:] != market[order][:-1]

    buys: list[int] = []
    sells: list[int] = []
    qtys: list[float] = []
    prices: list[float] = []
    has_expiry = bool(np.isfinite(orders.valid_until_s).any())
    book = OrderBook()
    rows = zip(order.tolist(), new_market.tolist(), orders.is_buy[order].tolist(),
               orders.quantity_kwh[order].tolist(), orders.price_eur_per_kwh[order].tolist(),
               orders.timestamp_s[order].tolist(), orders.valid_until_s[order].tolist())
    for i, first, is_buy, qty, price, arrival, valid_until in rows:
        if first:
            book = OrderBook()
        elif has_expiry:
            book.expire(arrival)
        book._enter(i, is_buy, qty, price, valid_until, buys, sells, qtys, prices)

    return ClearingResult.from_trades(
        mechanism="continuous",
        price_rule=("continuous double auction: price-time priority; each trade at the resting "
                    "order's price; remainders expire at gate closure"),
        orders=orders,
        order_market=market.astype(np.int64),
        market_key=market_key,
        trade_buy=np.asarray(buys, dtype=np.int64),
        trade_sell=np.asarray(sells, dtype=np.int64),
        trade_quantity_kwh=np.asarray(qtys, dtype=np.float64),
        trade_price_eur_per_kwh=np.asarray(prices, dtype=np.float64),
    )
