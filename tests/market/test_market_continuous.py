"""Continuous double auction: crafted sequences with hand-computed outcomes.

Expected fills are worked out by hand from the rules in docs/market-auctions.md (price-time
priority, trade at the resting order's price, partial fills, cancel/modify, expiry).
"""

from __future__ import annotations

import numpy as np
import pytest

from lemgrid.errors import InputError
from lemgrid.market import Fill, OrderBatch, OrderBook, clear_continuous_double_auction


def test_price_then_time_priority_and_partial_fill_of_resting_order():
    book = OrderBook()
    assert book.submit("s1", "sell", 1.0, 0.20) == []
    assert book.submit("s2", "sell", 1.0, 0.20) == []
    assert book.submit("s3", "sell", 1.0, 0.18) == []
    fills = book.submit("b1", "buy", 2.5, 0.25)
    # best price first (s3 at 0.18), then the earlier of the two at 0.20 (s1), then s2 in part
    assert fills == [Fill("b1", "s3", 1.0, 0.18), Fill("b1", "s1", 1.0, 0.20),
                     Fill("b1", "s2", 0.5, 0.20)]
    assert book.resting() == [("s2", "sell", 0.20, 0.5)]


def test_incoming_remainder_rests_and_trades_happen_at_the_resting_price():
    book = OrderBook()
    book.submit("s1", "sell", 1.0, 0.20)
    assert book.submit("b1", "buy", 3.0, 0.22) == [Fill("b1", "s1", 1.0, 0.20)]
    assert book.best_bid() == (0.22, 2.0)
    assert book.best_ask() is None
    # an aggressive seller gets the resting bid's price, not its own 0.05
    assert book.submit("s2", "sell", 0.5, 0.05) == [Fill("b1", "s2", 0.5, 0.22)]
    assert book.best_bid() == (0.22, 1.5)


def test_equal_prices_cross_and_non_crossing_orders_rest():
    book = OrderBook()
    book.submit("b1", "buy", 1.0, 0.20)
    assert book.submit("s1", "sell", 2.0, 0.21) == []  # 0.21 > 0.20: no trade
    assert book.submit("s2", "sell", 0.4, 0.20) == [Fill("b1", "s2", 0.4, 0.20)]
    assert book.resting() == [("b1", "buy", 0.20, pytest.approx(0.6)), ("s1", "sell", 0.21, 2.0)]


def test_cancel_removes_the_order_and_reports_its_remainder():
    book = OrderBook()
    book.submit("s1", "sell", 1.0, 0.10)
    book.submit("s2", "sell", 1.0, 0.12)
    book.submit("b0", "buy", 0.25, 0.20)  # takes 0.25 of s1
    assert book.cancel("s1") == pytest.approx(0.75)
    assert book.submit("b1", "buy", 1.0, 0.20) == [Fill("b1", "s2", 1.0, 0.12)]
    assert len(book) == 0
    with pytest.raises(InputError, match="'s1' is not in the book"):
        book.cancel("s1")


def test_modify_quantity_down_keeps_priority_other_changes_lose_it():
    book = OrderBook()
    book.submit("s1", "sell", 2.0, 0.20)
    book.submit("s2", "sell", 2.0, 0.20)
    assert book.modify("s1", quantity_kwh=1.0) == []  # keeps its place ahead of s2
    assert book.submit("b1", "buy", 1.5, 0.20) == [Fill("b1", "s1", 1.0, 0.20),
                                                   Fill("b1", "s2", 0.5, 0.20)]
    book.submit("s3", "sell", 1.0, 0.20)
    # s2 (1.5 left) raises its quantity: it goes behind s3
    assert book.modify("s2", quantity_kwh=3.0) == []
    assert book.submit("b2", "buy", 1.0, 0.20) == [Fill("b2", "s3", 1.0, 0.20)]
    # a new price is a new order: lowering s2's ask to cross the resting bid trades at once
    book.submit("b3", "buy", 1.0, 0.19)
    assert book.modify("s2", price_eur_per_kwh=0.18) == [Fill("b3", "s2", 1.0, 0.19)]
    assert book.resting() == [("s2", "sell", 0.18, 2.0)]


def test_expiry_and_gate_closure():
    book = OrderBook()
    book.submit("s1", "sell", 1.0, 0.20, valid_until_s=100.0)
    book.submit("s2", "sell", 1.0, 0.25)
    assert book.expire(100.0) == []  # still valid at its valid_until
    assert book.expire(100.5) == [("s1", 1.0)]
    assert book.submit("b1", "buy", 0.5, 0.30) == [Fill("b1", "s2", 0.5, 0.25)]
    assert book.close() == [("s2", 0.5)]
    assert len(book) == 0 and book.best_ask() is None


def test_book_rejects_bad_orders():
    book = OrderBook()
    book.submit("a", "buy", 1.0, 0.2)
    with pytest.raises(InputError, match="already in the book"):
        book.submit("a", "buy", 1.0, 0.2)
    with pytest.raises(InputError, match="side must be"):
        book.submit("b", "bid", 1.0, 0.2)
    with pytest.raises(InputError, match="quantity_kwh"):
        book.submit("c", "sell", 0.0, 0.2)
    with pytest.raises(InputError, match="price_eur_per_kwh"):
        book.submit("d", "sell", 1.0, float("nan"))


def test_no_dust_from_float_sums():
    book = OrderBook()
    book.submit("s1", "sell", 0.1, 0.2)
    book.submit("s2", "sell", 0.2, 0.2)
    fills = book.submit("b1", "buy", 0.3, 0.2)  # 0.3 - 0.1 - 0.2 != 0 in floats
    assert [f.sell_order_id for f in fills] == ["s1", "s2"]
    assert len(book) == 0


def test_clear_continuous_uses_timestamps_and_separate_books_per_interval():
    # rows are not in arrival order; interval 1 has its own book
    orders = OrderBatch.from_orders([
        dict(order_id="b1", participant="A", side="buy", quantity_kwh=2, price_eur_per_kwh=0.30,
             timestamp=3.0),
        dict(order_id="s1", participant="B", side="sell", quantity_kwh=1, price_eur_per_kwh=0.20,
             timestamp=1.0),
        dict(order_id="s2", participant="C", side="sell", quantity_kwh=1, price_eur_per_kwh=0.25,
             timestamp=2.0),
        dict(order_id="x1", participant="D", side="sell", quantity_kwh=5, price_eur_per_kwh=0.01,
             interval=1, timestamp=0.0),
        dict(order_id="b2", participant="E", side="buy", quantity_kwh=1, price_eur_per_kwh=0.40,
             timestamp=4.0, valid_until=4.0),
    ])
    result = clear_continuous_double_auction(orders)
    trades = result.trades_frame()
    # b1 arrives after both asks: takes s1 at 0.20 and s2 at 0.25 (resting prices)
    assert trades[["buy_order_id", "sell_order_id", "quantity_kwh", "price_eur_per_kwh",
                   "interval"]].values.tolist() == [["b1", "s1", 1.0, 0.20, 0],
                                                     ["b1", "s2", 1.0, 0.25, 0]]
    fills = result.fills_frame().set_index("order_id")
    assert fills.loc["b2", "unmatched_kwh"] == 1.0  # nothing left to buy in interval 0
    assert fills.loc["x1", "unmatched_kwh"] == 5.0  # interval 1: no buyer
    assert result.volume_kwh.tolist() == [2.0, 0.0]
    assert result.price_eur_per_kwh[0] == pytest.approx(0.225)  # volume-weighted
    assert np.isnan(result.price_eur_per_kwh[1])
    assert result.welfare_eur[0] == pytest.approx((0.30 - 0.20) + (0.30 - 0.25))
    assert result.cash_flow_eur.tolist() == pytest.approx([-0.45, 0.20, 0.25, 0.0, 0.0])


def test_clear_continuous_expires_orders_past_their_validity():
    orders = OrderBatch.from_arrays(
        order_id=["s1", "b1", "s2", "b2"], participant=["A", "B", "C", "D"],
        side=["sell", "buy", "sell", "buy"], quantity_kwh=[1.0, 1.0, 1.0, 1.0],
        price_eur_per_kwh=[0.10, 0.05, 0.12, 0.30], timestamp_s=[0.0, 1.0, 2.0, 10.0],
        valid_until_s=[5.0, np.nan, 10.0, np.nan])
    result = clear_continuous_double_auction(orders)
    # s1 expired at 5 s; s2 is still valid at exactly 10 s and trades with b2 at its 0.12
    assert result.trades_frame()[["buy_order_id", "sell_order_id", "price_eur_per_kwh"]] \
        .values.tolist() == [["b2", "s2", 0.12]]
    assert result.unmatched_kwh.tolist() == [1.0, 1.0, 0.0, 0.0]
