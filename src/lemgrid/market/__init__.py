"""The market layer: orders and the designs that clear them.

Order-based designs share one input (:class:`OrderBatch`) and one output (:class:`ClearingResult`):

- :func:`clear_uniform`: uniform-price double auction (pay-as-clear, k-rule);
- :func:`clear_pay_as_bid`: discriminatory double auction (pay-as-bid);
- :func:`clear_continuous_double_auction`: continuous double auction (:class:`OrderBook` per
  market).

:func:`clear` picks one by name. The price rules are documented in ``docs/market-auctions.md``.
"""

from __future__ import annotations

from typing import Literal, get_args

from lemgrid.errors import InputError
from lemgrid.market.auction import clear_pay_as_bid, clear_uniform
from lemgrid.market.continuous import Fill, OrderBook, clear_continuous_double_auction
from lemgrid.market.orders import (
    BUY,
    DEFAULT_PRICE_BAND_EUR_PER_KWH,
    PRODUCTS,
    SELL,
    Order,
    OrderBatch,
    read_orders_csv,
)
from lemgrid.market.results import ClearingResult

#: The order-book clearing mechanisms of :func:`clear` (the designs that use them are in
#: :mod:`lemgrid.designs`).
Mechanism = Literal["uniform", "pay-as-bid", "continuous"]


def clear(orders: OrderBatch, mechanism: Mechanism = "uniform", *,
          k: float | None = None) -> ClearingResult:
    """Clear ``orders`` with the named mechanism.

    Parameters
    ----------
    orders : OrderBatch
        Bids and offers of any number of intervals and products.
    mechanism : {'uniform', 'pay-as-bid', 'continuous'}
    k : float, optional
        Price-rule weight in [0, 1] (see :func:`clear_uniform`, default 0.5, and
        :func:`clear_pay_as_bid`, default 1.0); continuous trading has none.
    """
    if mechanism == "uniform":
        return clear_uniform(orders, k=0.5 if k is None else k)
    if mechanism == "pay-as-bid":
        return clear_pay_as_bid(orders, k=1.0 if k is None else k)
    if mechanism == "continuous":
        if k is not None:
            raise InputError("k has no meaning for continuous trading (trades are at the "
                             "resting order's price)")
        return clear_continuous_double_auction(orders)
    raise InputError(f"mechanism must be one of {', '.join(get_args(Mechanism))}, "
                     f"got {mechanism!r}")


__all__ = [
    "BUY", "SELL", "PRODUCTS", "DEFAULT_PRICE_BAND_EUR_PER_KWH", "Mechanism",
    "Order", "OrderBatch", "read_orders_csv", "ClearingResult",
    "clear", "clear_uniform", "clear_pay_as_bid", "clear_continuous_double_auction", "OrderBook",
    "Fill",
]
