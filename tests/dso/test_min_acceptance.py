"""Minimum acceptance quantities in the DSO's flexibility market: the optimal clearing (a MILP)
against brute force over every on/off choice of the block offers, each a continuous LP solved by
SciPy's own HiGHS interface; an activated block offer never below its minimum."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from lemgrid.dso.flex_market import REQUEST_SLACK_EUR_PER_KWH, clear_optimal
from lemgrid.dso.flexibility import FlexOffers

from ._books import up_offers, up_request

DT_H = 0.25


def _brute_force(offers: FlexOffers, need_kw: float) -> float:
    """Least cost over every on/off choice of the block offers (LP each)."""
    blocks = np.flatnonzero(offers.min_kw > 0)
    n = len(offers)
    best = np.inf
    for choice in itertools.product((0, 1), repeat=len(blocks)):
        lower, upper = np.zeros(n), offers.kw.copy()
        for j, on in zip(blocks, choice, strict=True):
            lower[j], upper[j] = (offers.min_kw[j], offers.kw[j]) if on else (0.0, 0.0)
        if (lower > upper + 1e-12).any():
            continue
        # variables: the n activations and the request's unmet kW
        cost = np.r_[offers.price_eur_per_kwh * DT_H, REQUEST_SLACK_EUR_PER_KWH * DT_H]
        res = linprog(cost, A_ub=-np.ones((1, n + 1)), b_ub=[-need_kw],
                      bounds=[*zip(lower, upper, strict=True), (0, None)], method="highs")
        assert res.status == 0
        best = min(best, res.fun)
    return best


def _cleared_cost(offers: FlexOffers, need_kw: float) -> tuple[float, np.ndarray]:
    acts, unmet = clear_optimal(offers, offers.kw.copy(), DT_H, requests=up_request(need_kw))
    kw = np.zeros(len(offers))
    np.add.at(kw, acts.offer, acts.kw)
    cost = float((kw * offers.price_eur_per_kwh).sum() * DT_H
                 + unmet["request_kwh"] * REQUEST_SLACK_EUR_PER_KWH)
    return cost, kw


def test_a_block_too_big_for_the_need_is_passed_over_for_a_dearer_divisible_offer():
    # 3 kW needed: the cheaper offer (0.15 EUR/kWh) takes 5 kW or nothing (0.75 EUR/h), so the
    # 0.20 offer serves the 3 kW (0.60 EUR/h)
    offers = up_offers([8.0, 4.0], [0.15, 0.20], [5.0, 0.0])
    cost, kw = _cleared_cost(offers, 3.0)
    assert kw[0] == 0.0 and abs(kw[1] - 3.0) < 1e-9
    assert abs(cost - 3.0 * 0.20 * DT_H) < 1e-9
    # 6 kW needed: more than the divisible offer holds; the block alone (6 kW, 0.90 EUR/h) is
    # cheaper than its minimum plus 1 kW of the other (0.95 EUR/h)
    cost, kw = _cleared_cost(offers, 6.0)
    assert abs(kw[0] - 6.0) < 1e-9 and kw[1] < 1e-9


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 20), st.integers(1, 40), st.integers(0, 20)),
                min_size=1, max_size=6), st.integers(1, 60))
def test_the_optimal_clearing_equals_brute_force_and_honours_every_minimum(rows, need):
    kw = np.array([r[0] for r in rows], float)
    price = np.array([r[1] for r in rows], float) / 100
    min_kw = np.array([r[2] for r in rows], float) / 2  # some above their offer: never usable
    offers = up_offers(kw, price, min_kw)
    cost, activated = _cleared_cost(offers, float(need))
    assert abs(cost - _brute_force(offers, float(need))) < 1e-6
    blocks = offers.min_kw > 0
    on = activated > 1e-9
    assert np.all(activated[blocks & on] >= offers.min_kw[blocks & on] - 1e-6)
    assert np.all(activated <= offers.kw + 1e-9)


def test_the_merit_order_leaves_block_offers_out_rather_than_cut_them():
    from lemgrid.dso.flex_market import clear_requests_merit_order

    offers = up_offers([8.0, 4.0], [0.05, 0.20], [5.0, 0.0])
    acts = clear_requests_merit_order(offers, offers.kw.copy(), up_request(3.0))
    assert list(acts.offer) == [1] and abs(acts.kw[0] - 3.0) < 1e-9
