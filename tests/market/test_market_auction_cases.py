"""Uniform and pay-as-bid auctions on small books with hand-computed outcomes.

Every expected number below is worked out by hand from the rules in docs/market-auctions.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from lemgrid.errors import InputError
from lemgrid.market import OrderBatch, clear, clear_pay_as_bid, clear_uniform


def book(rows, **extra):
    """rows: (order_id, side, quantity_kwh, price_eur_per_kwh[, interval])."""
    return OrderBatch.from_arrays(
        order_id=[r[0] for r in rows], participant=[f"p-{r[0]}" for r in rows],
        side=[r[1] for r in rows], quantity_kwh=[r[2] for r in rows],
        price_eur_per_kwh=[r[3] for r in rows],
        interval=[r[4] if len(r) > 4 else 0 for r in rows], **extra)


PRO_RATA = book([("b1", "buy", 2.0, 0.30), ("b2", "buy", 1.0, 0.25), ("b3", "buy", 3.0, 0.25),
                 ("s1", "sell", 3.0, 0.10), ("s2", "sell", 2.0, 0.20)])


def test_pro_rata_at_the_marginal_level():
    # demand at >= 0.25 is 6 kWh, supply at <= 0.25 is 5 kWh: Q* = 5; the 0.25 level (4 kWh) gets
    # 3 kWh, pro rata 3/4: b2 0.75, b3 2.25
    r = clear_uniform(PRO_RATA)
    assert r.filled_kwh.tolist() == pytest.approx([2.0, 0.75, 2.25, 3.0, 2.0])
    assert r.volume_kwh.tolist() == pytest.approx([5.0])
    # L = max(marginal ask 0.20, unmatched bid 0.25) = 0.25 = U = min(0.25, no unmatched ask)
    for k in (0.0, 0.5, 1.0):
        assert clear_uniform(PRO_RATA, k=k).price_eur_per_kwh.tolist() == [0.25]
    # merit-order pairing; within the 0.25 level b2 (earlier row) before b3
    assert r.trades_frame()[["buy_order_id", "sell_order_id", "quantity_kwh"]].values.tolist() \
        == [["b1", "s1", 2.0], ["b2", "s1", 0.75], ["b3", "s1", 0.25], ["b3", "s2", 2.0]]
    assert r.welfare_eur[0] == pytest.approx(2 * 0.20 + 1.0 * 0.15 + 2 * 0.05)
    assert r.cash_flow_eur.tolist() == pytest.approx([-0.5, -0.1875, -0.5625, 0.75, 0.5])
    assert r.unmatched_kwh.tolist() == pytest.approx([0.0, 0.25, 0.75, 0.0, 0.0])


def test_pro_rata_does_not_depend_on_arrival_but_pairing_does():
    later_b2 = book([("b1", "buy", 2.0, 0.30), ("b2", "buy", 1.0, 0.25), ("b3", "buy", 3.0, 0.25),
                     ("s1", "sell", 3.0, 0.10), ("s2", "sell", 2.0, 0.20)],
                    timestamp_s=[0.0, 9.0, 1.0, 2.0, 3.0])
    r = clear_uniform(later_b2)
    assert r.filled_kwh.tolist() == pytest.approx([2.0, 0.75, 2.25, 3.0, 2.0])
    assert r.trades_frame()[["buy_order_id", "sell_order_id", "quantity_kwh"]].values.tolist() \
        == [["b1", "s1", 2.0], ["b3", "s1", 1.0], ["b3", "s2", 1.25], ["b2", "s2", 0.75]]


def test_k_rule_spans_the_bid_ask_spread_of_a_single_pair():
    pair = book([("b", "buy", 1.0, 0.30), ("s", "sell", 1.0, 0.10)])
    for k, price in [(0.0, 0.10), (0.25, 0.15), (0.5, 0.20), (1.0, 0.30)]:
        assert clear_uniform(pair, k=k).price_eur_per_kwh[0] == pytest.approx(price)


def test_price_interval_is_bounded_by_unmatched_orders():
    # Q* = 1 (b1 with s1); marginal bid 0.40 and ask 0.10, but the unmatched bid 0.15 and ask 0.35
    # narrow the market-clearing interval to [0.15, 0.35]
    orders = book([("b1", "buy", 1.0, 0.40), ("b2", "buy", 1.0, 0.15),
                   ("s1", "sell", 1.0, 0.10), ("s2", "sell", 1.0, 0.35)])
    assert clear_uniform(orders, k=0.0).price_eur_per_kwh[0] == pytest.approx(0.15)
    assert clear_uniform(orders, k=1.0).price_eur_per_kwh[0] == pytest.approx(0.35)
    assert clear_uniform(orders).price_eur_per_kwh[0] == pytest.approx(0.25)
    assert clear_uniform(orders).filled_kwh.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_equal_bid_and_ask_trade_and_no_cross_means_no_trade():
    assert clear_uniform(book([("b", "buy", 1.0, 0.2), ("s", "sell", 2.0, 0.2)])) \
        .volume_kwh.tolist() == [1.0]
    none = clear_uniform(book([("b", "buy", 1.0, 0.19), ("s", "sell", 2.0, 0.2)]))
    assert none.volume_kwh.tolist() == [0.0] and np.isnan(none.price_eur_per_kwh[0])
    assert none.trade_buy.size == 0
    one_sided = clear_uniform(book([("b", "buy", 1.0, 0.19), ("c", "buy", 2.0, 0.2)]))
    assert one_sided.volume_kwh.tolist() == [0.0]


def test_pay_as_bid_pairs_at_the_buyers_bid_by_default():
    r = clear_pay_as_bid(PRO_RATA)
    assert r.trade_price_eur_per_kwh.tolist() == [0.30, 0.25, 0.25, 0.25]
    assert r.cash_flow_eur.tolist() == pytest.approx([-0.6, -0.1875, -0.5625, 0.85, 0.5])
    midpoint = clear_pay_as_bid(PRO_RATA, k=0.5)
    assert midpoint.trade_price_eur_per_kwh.tolist() == pytest.approx([0.20, 0.175, 0.175, 0.225])
    assert "buyer's bid" in r.price_rule


def test_many_intervals_in_one_call_equal_each_interval_alone():
    rng = np.random.default_rng(7)
    n = 2000
    orders = OrderBatch.from_arrays(
        order_id=np.arange(n), participant=np.arange(n) % 40,
        side=rng.choice(["buy", "sell"], n), quantity_kwh=rng.uniform(0.1, 3.0, n),
        price_eur_per_kwh=np.round(rng.normal(0.2, 0.05, n), 3), interval=rng.integers(0, 96, n),
        product=rng.choice(["energy", "flex-up"], n))
    for mechanism in ("uniform", "pay-as-bid", "continuous"):
        together = clear(orders, mechanism)
        for m, key in enumerate(together.market_interval * 3 + together.market_product):
            mask = orders.market_key == key
            alone = clear(orders.take(mask), mechanism)
            np.testing.assert_allclose(together.filled_kwh[mask], alone.filled_kwh, atol=1e-12)
            np.testing.assert_allclose(together.price_eur_per_kwh[m], alone.price_eur_per_kwh[0],
                                       atol=1e-15)


def test_empty_batch_and_bad_k():
    empty = book([])
    assert clear_uniform(empty).trade_buy.size == 0
    assert clear(empty, "continuous").volume_kwh.size == 0
    with pytest.raises(InputError, match="k must be within"):
        clear_uniform(PRO_RATA, k=1.5)
    with pytest.raises(InputError, match="mechanism must be one of"):
        clear(PRO_RATA, "vickrey")
    with pytest.raises(InputError, match="no meaning for continuous"):
        clear(PRO_RATA, "continuous", k=0.5)
