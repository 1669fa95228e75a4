"""Offers whose price rises as they are activated further (UMEI's interpolated orders) in the
DSO's optimal clearing: hand-computed bills of a small case, and random books against the
least-cost solution found another way: the equal-marginal-price (KKT) condition solved by
bisection, the costs integrated by SciPy's quadrature."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from lemgrid.dso.flex_market import CURVE_STEPS_PER_SEGMENT, clear_optimal
from lemgrid.dso.flexibility import FlexOffers
from lemgrid.errors import InputError

from ._books import up_offers, up_request

DT_H = 0.25


def _activated(offers, acts) -> np.ndarray:
    kw = np.zeros(len(offers))
    np.add.at(kw, acts.offer, acts.kw)
    return kw


def test_a_curve_is_paid_its_integral_or_its_marginal_price():
    """0.10 EUR/kWh rising to 0.30 over 4 kW; 2 kW asked: the marginal kW costs 0.20, the
    2 kW cost (0.10 + 0.20) / 2 x 2 kW = 0.30 EUR/h, 0.15 EUR/kWh on average."""
    offers = up_offers([4.0], [0.10], curves=[[[0, 0.10], [4, 0.30]]])
    for pricing, price in (("pay-as-bid", 0.15), ("pay-as-clear", 0.20)):
        acts, unmet = clear_optimal(offers, offers.kw.copy(), DT_H, requests=up_request(2.0),
                                    pricing=pricing)
        assert acts.kw.sum() == pytest.approx(2.0) and unmet["request_kwh"] < 1e-9
        assert acts.price_eur_per_kwh == pytest.approx([price])
    # a request at most 0.20 EUR/kWh counts only the curve's kW up to that price
    acts, unmet = clear_optimal(offers, offers.kw.copy(), DT_H, requests=up_request(4.0, 0.20))
    assert acts.kw.sum() == pytest.approx(2.0) and unmet["request_kwh"] == pytest.approx(0.5)
    # what an earlier market took is the curve's cheap part: the 1 kW left (3 to 4 kW) costs
    # 0.25 to 0.30, 0.275 on average
    acts, _ = clear_optimal(offers, np.array([1.0]), DT_H, requests=up_request(1.0))
    assert acts.price_eur_per_kwh == pytest.approx([0.275])


def test_bad_curves_are_refused_naming_the_offer():
    for curve, says in (([[0, 0.10], [3, 0.30]], "must end at the offer's kw"),
                        ([[0, 0.20], [4, 0.30]], "must start at"),
                        ([[0, 0.10], [2, 0.30], [4, 0.20]], "prices may not fall"),
                        ([[0, 0.10], [2, 0.20], [2, 0.30], [4, 0.40]], "the kW of its points must rise"),
                        ([[0, 0.10], [4, np.nan]], "not finite")):
        with pytest.raises(InputError, match=f"offer 0 of p0: price_curve: {says}"):
            up_offers([4.0], [0.10], curves=[curve]).validate(1)


def _inverse(curve: np.ndarray, price: float) -> float:
    """kW a strictly rising curve supplies at a marginal price."""
    return float(np.interp(price, curve[:, 1], curve[:, 0]))


def _least_cost(offers: FlexOffers, need_kw: float) -> float:
    """Least cost [EUR/h] of ``need_kw`` from the offers: every offer supplies up to the price
    at which the supply meets the need (bisection on it), the flat offers at that price
    share the rest; each curve's cost integrated by quadrature."""
    curves = [(k, offers.price_curve[k]) for k in range(len(offers)) if offers.curved[k]]
    flats = [k for k in range(len(offers)) if not offers.curved[k]]

    def supply(price: float) -> float:
        return (sum(_inverse(c, price) for _, c in curves)
                + sum(offers.kw[k] for k in flats if offers.price_eur_per_kwh[k] <= price))

    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if supply(mid) < need_kw else (lo, mid)
    price = hi
    cost, got = 0.0, 0.0
    for _, c in curves:
        x = _inverse(c, price)
        cost += quad(lambda q, c=c: np.interp(q, c[:, 0], c[:, 1]), 0.0, x,
                     points=c[:, 0], limit=200)[0]
        got += x
    cheaper = [k for k in flats if offers.price_eur_per_kwh[k] < price - 1e-12]
    cost += sum(offers.price_eur_per_kwh[k] * offers.kw[k] for k in cheaper)
    got += sum(offers.kw[k] for k in cheaper)
    return cost + max(need_kw - got, 0.0) * price  # the rest at the marginal price


@st.composite
def _books(draw):
    n = draw(st.integers(1, 5))
    kw, price, curves = [], [], []
    for _ in range(n):
        if draw(st.booleans()):
            widths = draw(st.lists(st.floats(0.2, 4.0), min_size=1, max_size=4))
            rises = draw(st.lists(st.floats(0.005, 0.1), min_size=len(widths),
                                  max_size=len(widths)))
            start = draw(st.floats(0.01, 0.4))
            x = np.concatenate([[0.0], np.cumsum(widths)])
            p = np.concatenate([[start], start + np.cumsum(rises)])
            kw.append(float(x[-1]))
            price.append(start)
            curves.append(np.column_stack([x, p]))
        else:
            kw.append(draw(st.floats(0.2, 6.0)))
            price.append(draw(st.floats(0.01, 0.6)))
            curves.append(None)
    offers = up_offers(kw, price, curves=curves)
    need = draw(st.floats(0.05, 0.95)) * sum(kw)
    return offers, need


@settings(max_examples=60, deadline=None)
@given(_books())
def test_curved_books_clear_at_least_cost(book):
    """The clearing's cost of its activations (each curve's integral) is the least cost found
    by bisection, above it by no more than the steps' bound; every activated curve is paid at
    least its marginal price under pay-as-clear, its own cost under pay-as-bid."""
    offers, need = book
    offers.validate(1)
    acts, unmet = clear_optimal(offers, offers.kw.copy(), DT_H, requests=up_request(need))
    assert unmet["request_kwh"] < 1e-9
    kw = _activated(offers, acts)
    assert kw.sum() == pytest.approx(need, abs=1e-6)
    cost = 0.0
    bound = 1e-7
    for k in range(len(offers)):
        c = offers.price_curve[k]
        if c is None:
            cost += offers.price_eur_per_kwh[k] * kw[k]
            continue
        cost += quad(lambda q, c=c: np.interp(q, c[:, 0], c[:, 1]), 0.0, kw[k],
                     points=c[:, 0], limit=200)[0]
        slopes = np.diff(c[:, 1]) / np.diff(c[:, 0])
        step = np.diff(c[:, 0]) / CURVE_STEPS_PER_SEGMENT
        bound += float((slopes * step ** 2 / 8).max())
    best = _least_cost(offers, need)
    assert best - 1e-7 <= cost <= best + bound
    paid = np.zeros(len(offers))
    np.add.at(paid, acts.offer, acts.kw * acts.price_eur_per_kwh)
    assert paid.sum() == pytest.approx(cost, abs=1e-9)  # pay-as-bid: each its own cost
    clear, _ = clear_optimal(offers, offers.kw.copy(), DT_H, requests=up_request(need),
                             pricing="pay-as-clear")
    for j, x, p in zip(clear.offer, clear.kw, clear.price_eur_per_kwh, strict=True):
        c = offers.price_curve[j]
        if c is not None:
            assert p >= np.interp(x, c[:, 0], c[:, 1]) - 1e-9
