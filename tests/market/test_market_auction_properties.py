"""Property tests of the three mechanisms on random multi-interval books.

Reference: the welfare-maximising clearing LP, solved independently with scipy's HiGHS
(``linprog(method='highs')``): stage 1 maximises welfare, stage 2 maximises volume among the
welfare-maximising allocations (our volume convention: equal bid and ask trade). The uniform price
interval [L, U] is checked against the set of optimal duals of the energy-balance constraint,
found by minimising and maximising the dual price over the dual LP's optimal face.

Tolerances: volumes and welfare 1e-6 relative (HiGHS feasibility tolerance set to 1e-10);
uniform prices 1e-7 absolute (prices and quantities on 0.01 grids); fills, balances and
individual rationality 1e-9 (float rounding of kWh sums).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from lemgrid.market import (OrderBatch, clear_continuous_double_auction, clear_pay_as_bid,
                            clear_uniform)

TOL = 1e-9
REL = 1e-6


@st.composite
def books(draw, max_orders: int = 24, max_intervals: int = 3,
          quantity_grid: bool = False) -> OrderBatch:
    """Random books; prices on a 0.01 EUR/kWh grid so that equal prices (ties) are common;
    quantities any float in [0.01, 10] kWh, or on a 0.01 kWh grid."""
    n = draw(st.integers(1, max_orders))
    side = draw(st.lists(st.sampled_from(["buy", "sell"]), min_size=n, max_size=n))
    cents = draw(st.lists(st.integers(-5, 40), min_size=n, max_size=n))
    quantity = (st.integers(1, 1000).map(lambda c: c / 100.0) if quantity_grid else
                st.one_of(st.sampled_from([0.5, 1.0, 2.0, 3.0]),
                          st.floats(0.01, 10.0, allow_nan=False, allow_infinity=False)))
    quantity = draw(st.lists(quantity, min_size=n, max_size=n))
    interval = draw(st.lists(st.integers(0, max_intervals - 1), min_size=n, max_size=n))
    timestamp = draw(st.permutations(range(n)))
    return OrderBatch.from_arrays(
        order_id=np.arange(n), participant=np.arange(n) % 5, side=side,
        quantity_kwh=quantity, price_eur_per_kwh=np.array(cents) / 100.0, interval=interval,
        timestamp_s=np.array(timestamp, dtype=float),
    )


def lp_reference(orders: OrderBatch) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per-market (welfare, volume) of the welfare-maximising LP with maximal volume."""
    keys = sorted(set(orders.market_key.tolist()))
    n = len(orders)
    sign = np.where(orders.is_buy, 1.0, -1.0)
    gain = sign * orders.price_eur_per_kwh  # welfare per kWh of each order's fill
    a_eq = np.zeros((len(keys), n))
    for row, key in enumerate(keys):
        a_eq[row, orders.market_key == key] = sign[orders.market_key == key]
    bounds = list(zip(np.zeros(n), orders.quantity_kwh))
    # Tight tolerances: stage 2 may give up this much welfare, i.e. trade at most 100x it in
    # kWh at a loss when prices lie on a 0.01 grid; that stays below the 1e-7 comparison.
    options = {"primal_feasibility_tolerance": 1e-10}
    stage1 = linprog(-gain, A_eq=a_eq, b_eq=np.zeros(len(keys)), bounds=bounds, method="highs",
                     options=options)
    assert stage1.status == 0
    best = -stage1.fun
    stage2 = linprog(-orders.is_buy.astype(float), A_ub=-gain[None, :],
                     b_ub=[-(best - 1e-11 * (1 + abs(best)))], A_eq=a_eq,
                     b_eq=np.zeros(len(keys)), bounds=bounds, method="highs", options=options)
    assert stage2.status == 0
    x = stage2.x
    welfare = np.array([gain[orders.market_key == k] @ x[orders.market_key == k] for k in keys])
    volume = np.array([x[(orders.market_key == k) & orders.is_buy].sum() for k in keys])
    return welfare, volume, keys


def dual_price_range(orders: OrderBatch) -> tuple[float, float]:
    """Smallest and largest optimal dual price of one market's balance constraint.

    Dual of the clearing LP: min sum(q_i w_i) s.t. w_i >= b_i - lam (bids), w_i >= lam - a_i
    (asks), w >= 0, lam free. Solve it once for its optimal value D*, then minimise and maximise
    lam over {sum(q_i w_i) <= D*}.
    """
    n = len(orders)
    is_buy = orders.is_buy
    p, q = orders.price_eur_per_kwh, orders.quantity_kwh
    # variables [lam, w_1..w_n]; rows: -w_i - lam <= -b_i (bids), -w_i + lam <= a_i (asks)
    a_ub = np.zeros((n, n + 1))
    a_ub[np.arange(n), 1 + np.arange(n)] = -1.0
    a_ub[:, 0] = np.where(is_buy, -1.0, 1.0)
    b_ub = np.where(is_buy, -p, p)
    bounds = [(None, None)] + [(0, None)] * n
    options = {"primal_feasibility_tolerance": 1e-10}
    value = linprog(np.r_[0.0, q], A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs",
                    options=options)
    assert value.status == 0
    a_ub = np.vstack([a_ub, np.r_[0.0, q]])
    b_ub = np.r_[b_ub, value.fun + 1e-10 * (1 + abs(value.fun))]
    ends = []
    for direction in (1.0, -1.0):
        res = linprog(np.r_[direction, np.zeros(n)], A_ub=a_ub, b_ub=b_ub, bounds=bounds,
                      method="highs", options=options)
        assert res.status == 0
        ends.append(res.x[0])
    return ends[0], ends[1]


def check_invariants(orders: OrderBatch, result) -> None:
    """Balance, no over-fill, individual rationality, consistent bookkeeping."""
    q, p = orders.quantity_kwh, orders.price_eur_per_kwh
    assert np.all(result.filled_kwh >= 0)
    assert np.all(result.filled_kwh <= q + TOL)
    assert np.all(result.trade_quantity_kwh > 0)
    assert np.all(orders.is_buy[result.trade_buy]) and not np.any(orders.is_buy[result.trade_sell])
    assert np.array_equal(orders.market_key[result.trade_buy], orders.market_key[result.trade_sell])
    # individual rationality, trade by trade
    assert np.all(result.trade_price_eur_per_kwh <= p[result.trade_buy] + 1e-12)
    assert np.all(result.trade_price_eur_per_kwh >= p[result.trade_sell] - 1e-12)
    # energy balance per market
    signed = np.where(orders.is_buy, result.filled_kwh, -result.filled_kwh)
    for key in np.unique(orders.market_key):
        assert abs(signed[orders.market_key == key].sum()) <= TOL * max(1, q.sum())
    # money: buyers never pay above their limits, sellers never get below theirs
    buy, sell = orders.is_buy, ~orders.is_buy
    assert np.all(-result.cash_flow_eur[buy] <= p[buy] * result.filled_kwh[buy] + TOL)
    assert np.all(result.cash_flow_eur[sell] >= p[sell] * result.filled_kwh[sell] - TOL)
    assert abs(result.cash_flow_eur.sum()) <= TOL * max(1, q.sum())  # one price per trade
    assert result.volume_kwh.sum() == pytest.approx(result.trade_quantity_kwh.sum(), abs=TOL)


PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(orders=books())
def test_uniform_volume_and_welfare_match_lp(orders):
    result = clear_uniform(orders)
    check_invariants(orders, result)
    welfare, volume, keys = lp_reference(orders)
    assert list(result.market_interval * 3 + result.market_product) == keys
    np.testing.assert_allclose(result.welfare_eur, welfare, rtol=REL, atol=1e-7)
    np.testing.assert_allclose(result.volume_kwh, volume, rtol=REL, atol=1e-7)


@PROPERTY
@given(orders=books(quantity_grid=True), k=st.sampled_from([0.0, 0.5, 1.0, 0.3]))
def test_uniform_price_is_k_rule_on_dual_price_range(orders, k):
    """Prices and quantities on 0.01 grids: a wrong price level is >= 0.005 off, while the dual
    LP's 1e-10 optimality slack moves lam by at most 1e-10 / 0.01 kWh = 1e-8."""
    result = clear_uniform(orders, k=k)
    for m, key in enumerate(result.market_interval * 3 + result.market_product):
        if result.volume_kwh[m] <= 0:
            assert np.isnan(result.price_eur_per_kwh[m])
            continue
        low, high = dual_price_range(orders.take(orders.market_key == key))
        expected = (1 - k) * low + k * high
        assert result.price_eur_per_kwh[m] == pytest.approx(expected, abs=1e-7)


@PROPERTY
@given(orders=books())
def test_uniform_price_leaves_no_unmatched_order_in_the_money(orders):
    result = clear_uniform(orders)
    check_invariants(orders, result)
    price = result.price_eur_per_kwh[result.order_market]
    p = orders.price_eur_per_kwh
    traded = ~np.isnan(price)
    left = (result.unmatched_kwh > TOL) & traded
    assert np.all(p[left & orders.is_buy] <= price[left & orders.is_buy])
    assert np.all(p[left & ~orders.is_buy] >= price[left & ~orders.is_buy])
    # where nothing trades, every bid is below every ask
    for m in np.flatnonzero(np.isnan(result.price_eur_per_kwh)):
        here = result.order_market == m
        bids, asks = p[here & orders.is_buy], p[here & ~orders.is_buy]
        if bids.size and asks.size:
            assert bids.max() < asks.min()
    # everyone in a market trades at the one price
    np.testing.assert_array_equal(result.trade_price_eur_per_kwh,
                                  result.price_eur_per_kwh[result.order_market[result.trade_buy]])


@PROPERTY
@given(orders=books(), k=st.sampled_from([0.0, 0.5, 1.0]))
def test_pay_as_bid_same_volume_pair_prices(orders, k):
    result = clear_pay_as_bid(orders, k=k)
    check_invariants(orders, result)
    uniform = clear_uniform(orders)
    np.testing.assert_allclose(result.filled_kwh, uniform.filled_kwh, atol=TOL)
    np.testing.assert_allclose(result.welfare_eur, uniform.welfare_eur, atol=1e-9)
    p = orders.price_eur_per_kwh
    np.testing.assert_allclose(result.trade_price_eur_per_kwh,
                               k * p[result.trade_buy] + (1 - k) * p[result.trade_sell],
                               rtol=0, atol=1e-15)


@PROPERTY
@given(orders=books())
def test_continuous_invariants_and_efficiency_bound(orders):
    result = clear_continuous_double_auction(orders)
    check_invariants(orders, result)
    uniform = clear_uniform(orders)
    # no mechanism beats the welfare-maximising auction
    assert np.all(result.welfare_eur <= uniform.welfare_eur + 1e-9)
    # at gate closure the book is not crossed: every unmatched bid is below every unmatched ask
    left = result.unmatched_kwh > 1e-9
    for key in np.unique(orders.market_key):
        here = left & (orders.market_key == key)
        bids = orders.price_eur_per_kwh[here & orders.is_buy]
        asks = orders.price_eur_per_kwh[here & ~orders.is_buy]
        if bids.size and asks.size:
            assert bids.max() < asks.min()
    # every trade is at the price of the order that arrived first (the resting one)
    ts = orders.timestamp_s
    resting = np.where(ts[result.trade_buy] < ts[result.trade_sell], result.trade_buy,
                       result.trade_sell)
    np.testing.assert_array_equal(result.trade_price_eur_per_kwh,
                                  orders.price_eur_per_kwh[resting])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_uniform_matches_lp_on_float_prices(seed):
    """Continuous (non-grid) prices and many intervals at once; welfare only (volume is
    ambiguous to the LP's tolerance when bid and ask differ by less than it)."""
    rng = np.random.default_rng(seed)
    n = 300
    orders = OrderBatch.from_arrays(
        order_id=np.arange(n), participant=np.arange(n), side=rng.choice(["buy", "sell"], n),
        quantity_kwh=rng.uniform(0.01, 5.0, n), price_eur_per_kwh=rng.normal(0.2, 0.08, n),
        interval=rng.integers(0, 12, n))
    result = clear_uniform(orders)
    check_invariants(orders, result)
    welfare, _, _ = lp_reference(orders)
    np.testing.assert_allclose(result.welfare_eur, welfare, rtol=REL, atol=1e-7)
