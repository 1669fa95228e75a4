"""The one result type of every order-based clearing mechanism.

Uniform, pay-as-bid and continuous trading all return a :class:`ClearingResult`, so designs are
compared in one table and settlement reads one shape: the trades, each order's fill and cash flow,
and one row per market (an interval of one product) with its price, volume and welfare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lemgrid.market.orders import BUY, PRODUCTS, OrderBatch, split_market_key


@dataclass(frozen=True, eq=False)
class ClearingResult:
    """Outcome of clearing an :class:`~lemgrid.market.orders.OrderBatch`.

    Trades refer to orders by position in :attr:`orders`; per-order arrays are aligned with it;
    per-market arrays have one element per market (interval, product) present in the batch,
    sorted by interval then product.

    Attributes
    ----------
    mechanism : str
        ``'uniform'``, ``'pay-as-bid'`` or ``'continuous'``.
    price_rule : str
        The price rule in words, including its parameters (e.g. ``k``).
    orders : OrderBatch
        The cleared orders.
    trade_buy, trade_sell : ndarray of int64
        Positions in :attr:`orders` of each trade's buy and sell order.
    trade_quantity_kwh : ndarray of float64
        Traded energy [kWh], > 0.
    trade_price_eur_per_kwh : ndarray of float64
        Price the buyer pays and the seller receives [EUR/kWh].
    filled_kwh : ndarray of float64
        Traded energy of each order [kWh] (0 <= filled <= quantity).
    cash_flow_eur : ndarray of float64
        Money each order receives [EUR]: positive for sellers, negative for buyers (at positive
        prices).
    order_market : ndarray of int64
        Index of each order's market in the per-market arrays.
    market_interval : ndarray of int64
        Interval of each market.
    market_product : ndarray of int8
        Product index of each market (see :data:`~lemgrid.market.orders.PRODUCTS`).
    price_eur_per_kwh : ndarray of float64
        Price of each market [EUR/kWh]: the uniform clearing price, or for discriminatory and
        continuous trading the volume-weighted average trade price; NaN where nothing trades.
    volume_kwh : ndarray of float64
        Traded energy per market [kWh].
    welfare_eur : ndarray of float64
        Gains from trade per market [EUR]: sum over trades of (buyer limit - seller limit) x
        quantity.
    """

    mechanism: str
    price_rule: str
    orders: OrderBatch
    trade_buy: np.ndarray
    trade_sell: np.ndarray
    trade_quantity_kwh: np.ndarray
    trade_price_eur_per_kwh: np.ndarray
    filled_kwh: np.ndarray
    cash_flow_eur: np.ndarray
    order_market: np.ndarray
    market_interval: np.ndarray
    market_product: np.ndarray
    price_eur_per_kwh: np.ndarray
    volume_kwh: np.ndarray
    welfare_eur: np.ndarray

    @classmethod
    def from_trades(
        cls,
        *,
        mechanism: str,
        price_rule: str,
        orders: OrderBatch,
        order_market: np.ndarray,
        market_key: np.ndarray,
        trade_buy: np.ndarray,
        trade_sell: np.ndarray,
        trade_quantity_kwh: np.ndarray,
        trade_price_eur_per_kwh: np.ndarray,
        price_eur_per_kwh: np.ndarray | None = None,
    ) -> ClearingResult:
        """Derive fills, cash flows and per-market figures from a list of trades.

        Parameters
        ----------
        order_market : ndarray of int64
            Market index of each order (0 .. len(market_key) - 1).
        market_key : ndarray of int64
            :attr:`OrderBatch.market_key` of each market, ascending.
        trade_buy, trade_sell, trade_quantity_kwh, trade_price_eur_per_kwh : ndarray
            The trades (positions into ``orders``, [kWh], [EUR/kWh]).
        price_eur_per_kwh : ndarray, optional
            Per-market price [EUR/kWh]; default: volume-weighted average trade price.
        """
        n, n_markets = len(orders), market_key.shape[0]
        money = trade_quantity_kwh * trade_price_eur_per_kwh
        filled = (np.bincount(trade_buy, trade_quantity_kwh, n)
                  + np.bincount(trade_sell, trade_quantity_kwh, n))
        cash = np.bincount(trade_sell, money, n) - np.bincount(trade_buy, money, n)
        trade_market = order_market[trade_buy]
        volume = np.bincount(trade_market, trade_quantity_kwh, n_markets)
        limits = orders.price_eur_per_kwh
        gains = (limits[trade_buy] - limits[trade_sell]) * trade_quantity_kwh
        welfare = np.bincount(trade_market, gains, n_markets)
        if price_eur_per_kwh is None:
            with np.errstate(invalid="ignore", divide="ignore"):
                price_eur_per_kwh = np.bincount(trade_market, money, n_markets) / volume
        price_eur_per_kwh = np.where(volume > 0, price_eur_per_kwh, np.nan)
        interval, product = split_market_key(market_key)
        return cls(mechanism, price_rule, orders, trade_buy, trade_sell, trade_quantity_kwh,
                   trade_price_eur_per_kwh, filled, cash, order_market, interval, product,
                   price_eur_per_kwh, volume, welfare)

    # ---------------------------------------------------------------- derived figures

    @property
    def unmatched_kwh(self) -> np.ndarray:
        """Quantity of each order left unmatched [kWh] (expired at gate closure)."""
        return np.maximum(self.orders.quantity_kwh - self.filled_kwh, 0.0)

    @property
    def trade_interval(self) -> np.ndarray:
        """Delivery interval of each trade."""
        return self.orders.interval[self.trade_buy]

    @property
    def total_volume_kwh(self) -> float:
        """Energy traded over all markets [kWh]."""
        return float(self.volume_kwh.sum())

    @property
    def total_welfare_eur(self) -> float:
        """Gains from trade over all markets [EUR]."""
        return float(self.welfare_eur.sum())

    @property
    def operator_surplus_eur(self) -> float:
        """Money left with the market operator [EUR] (0 when every trade has one price)."""
        return float(-self.cash_flow_eur.sum()) + 0.0  # + 0.0 turns -0.0 into 0.0

    # ---------------------------------------------------------------- tables

    def trades_frame(self) -> pd.DataFrame:
        """One row per trade: buy/sell order id, quantity [kWh], price [EUR/kWh], interval."""
        ids = self.orders.order_id
        frame = pd.DataFrame({
            "buy_order_id": ids[self.trade_buy],
            "sell_order_id": ids[self.trade_sell],
            "quantity_kwh": self.trade_quantity_kwh,
            "price_eur_per_kwh": self.trade_price_eur_per_kwh,
            "interval": self.trade_interval,
        })
        if np.any(self.market_product != 0):
            frame["product"] = np.asarray(PRODUCTS, dtype=object)[
                self.orders.product[self.trade_buy]]
        return frame

    def fills_frame(self) -> pd.DataFrame:
        """One row per order: its fill, unmatched remainder [kWh] and cash flow [EUR]."""
        o = self.orders
        return pd.DataFrame({
            "order_id": o.order_id,
            "participant": o.participant,
            "side": np.where(o.side == BUY, "buy", "sell"),
            "interval": o.interval,
            "quantity_kwh": o.quantity_kwh,
            "price_eur_per_kwh": o.price_eur_per_kwh,
            "filled_kwh": self.filled_kwh,
            "unmatched_kwh": self.unmatched_kwh,
            "cash_flow_eur": self.cash_flow_eur,
        })

    def markets_frame(self) -> pd.DataFrame:
        """One row per market: interval, product, price [EUR/kWh], volume [kWh], welfare [EUR]."""
        return pd.DataFrame({
            "interval": self.market_interval,
            "product": np.asarray(PRODUCTS, dtype=object)[self.market_product],
            "price_eur_per_kwh": self.price_eur_per_kwh,
            "volume_kwh": self.volume_kwh,
            "welfare_eur": self.welfare_eur,
        })

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals and per-market figures (NaN becomes None)."""
        volume = self.total_volume_kwh
        money = float(np.dot(self.trade_quantity_kwh, self.trade_price_eur_per_kwh))
        is_buy = self.orders.is_buy
        markets = [
            {"interval": int(i), "product": PRODUCTS[int(p)], "price_eur_per_kwh": _num(price),
             "volume_kwh": float(v), "welfare_eur": float(w)}
            for i, p, price, v, w in zip(self.market_interval, self.market_product,
                                         self.price_eur_per_kwh, self.volume_kwh,
                                         self.welfare_eur)
        ]
        return {
            "mechanism": self.mechanism,
            "price_rule": self.price_rule,
            "orders": len(self.orders),
            "trades": int(self.trade_quantity_kwh.shape[0]),
            "volume_kwh": volume,
            "welfare_eur": self.total_welfare_eur,
            "price_eur_per_kwh": _num(money / volume) if volume > 0 else None,
            "operator_surplus_eur": self.operator_surplus_eur,
            "unmatched_buy_kwh": float(self.unmatched_kwh[is_buy].sum()),
            "unmatched_sell_kwh": float(self.unmatched_kwh[~is_buy].sum()),
            "markets": markets,
        }


def _num(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
