"""TSO-DSO coordination (issue 10, items 2 and 3): leftover offers reach the next buyer with
exactly what they have left (the activation registry never subtracts an activation from an offer
that no longer contains it), and under ``coordination: common`` each buyer pays for what it
requested."""

from __future__ import annotations

import numpy as np
import pytest

from lemgrid.assets.kinds import KindPlan
from lemgrid.assets.tables import Batteries, EnergyWindows
from lemgrid.dso.flex_market import clear_optimal, clear_requests_merit_order
from lemgrid.dso.flexibility import (
    DOWN,
    UP,
    ActivationRegistry,
    Activations,
    FlexRequests,
    OfferPrices,
    apply_activations,
    offers_from_plan,
)
from lemgrid.errors import InputError
from lemgrid.session import AssetPlan

DT_H = 0.25


def _battery_book(n_t: int = 4):
    """One idle 1,000 kW / 4,000 kWh battery half full: 1,000 kW of room up and down."""
    one = np.ones(1)
    batteries = Batteries(owner=np.array([0]), name=np.array(["b"]), capacity_kwh=4000 * one,
                          power_kw=1000 * one, eta_charge=one, eta_discharge=one,
                          soc_min=0 * one, soc_max=one, soc_initial=0.5 * one,
                          soc_final=0.5 * one)
    windows = EnergyWindows.empty()
    kinds = {"battery": batteries, "energy_window": windows}
    plan = AssetPlan(curtailment_kw=np.zeros((n_t, 1)), kinds={
        "battery": KindPlan(batteries.owner, np.zeros((n_t, 1)), np.full((n_t, 1), 2000.0)),
        "energy_window": KindPlan(windows.owner, np.zeros((n_t, 0)), np.zeros((n_t, 0)))})

    def book(p):
        return offers_from_plan(p, np.zeros((n_t, 1)), np.array([1]), np.array(["p0"]), DT_H,
                                OfferPrices(), kinds=kinds)
    return kinds, windows, plan, book


def _row(offers, t: int, direction: int) -> int:
    return int(np.flatnonzero((offers.interval == t) & (offers.direction == direction))[0])


def test_leftover_offers_reach_the_next_buyer_with_exactly_what_they_have_left():
    kinds, windows, plan, book = _battery_book()
    registry = ActivationRegistry()
    offers = book(plan)
    up = _row(offers, 1, UP)
    assert offers.kw[up] == pytest.approx(1000.0)
    dso = Activations(np.array([up]), np.array([519.0]), np.array([0.05]), np.array(["DSO"]),
                      np.array(["CM"]))
    registry.record(offers, dso)

    # The DSO builds the next book from the schedule with its activation carried out: 481 kW
    # of room is left, and all of it is offered to the TSO.
    rebuilt = book(apply_activations(plan, offers, dso, DT_H, kinds))
    left = registry.remaining(rebuilt)
    up2 = _row(rebuilt, 1, UP)
    assert rebuilt.kw[up2] == pytest.approx(481.0)
    assert left[up2] == pytest.approx(481.0)
    other = rebuilt.interval != 1
    np.testing.assert_allclose(left[other], rebuilt.kw[other])  # untouched intervals: all
    # No counter-activation: what the DSO bought up is not sold down to another buyer.
    assert left[_row(rebuilt, 1, DOWN)] == 0.0

    requests = FlexRequests(np.array(["TSO"]), np.array(["balancing"]), np.array([1]),
                            np.ones((1, 2), bool), np.array([UP]), np.array([1000.0]),
                            np.array([1.0]))
    tso = clear_requests_merit_order(rebuilt, left, requests)
    assert tso.kw.sum() == pytest.approx(481.0)
    registry.record(rebuilt, tso)
    assert registry.remaining(rebuilt)[up2] == pytest.approx(0.0, abs=1e-9)
    # The same book forwarded unchanged (not rebuilt) has nothing left either.
    assert registry.remaining(offers)[up] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(InputError, match="activated twice"):
        registry.record(offers, Activations(np.array([up]), np.array([1.0]), np.array([0.05]),
                                            np.array(["TSO"]), np.array(["balancing"])))


def _common_requests(n_bus: int, direction: int, kw: float) -> FlexRequests:
    return FlexRequests(np.array(["TSO"]), np.array(["balancing"]), np.array([0]),
                        np.ones((1, n_bus), bool), np.array([direction]), np.array([kw]),
                        np.array([1.0]))


@pytest.mark.parametrize("pricing", ["pay-as-bid", "pay-as-clear"])
def test_common_market_bills_the_tso_for_its_request_in_an_interval_the_dso_needs(
        pricing, one_constraint_case):
    """One LP for the DSO's voltage need and a TSO request at the same interval: the TSO is
    billed for the kW it requested, the DSO for the rest (on main the DSO was billed for all)."""
    _, need, offers, _ = one_constraint_case
    n_bus = need.linearization.vm_pu.shape[1]
    alone, _ = clear_optimal(offers, offers.kw, DT_H, need=need, pricing=pricing)
    requested_kw = 1.0
    acts, unmet = clear_optimal(offers, offers.kw, DT_H, need=need, pricing=pricing,
                                requests=_common_requests(n_bus, DOWN, requested_kw))
    assert unmet["voltage_pu"] < 1e-9 and unmet["request_kwh"] < 1e-9
    tso, dso = acts.buyer == "TSO", acts.buyer == "DSO"
    assert set(acts.buyer) == {"TSO", "DSO"}
    assert acts.kw[tso].sum() == pytest.approx(requested_kw, abs=1e-6)
    # The DSO's need alone takes more than the TSO asks for; those kW count for the request too.
    assert alone.kw.sum() > requested_kw
    assert acts.kw[dso].sum() == pytest.approx(acts.kw.sum() - requested_kw, abs=1e-6)
    assert acts.kw.sum() >= alone.kw.sum() - 1e-6
    assert np.all(acts.service[tso] == "balancing") and np.all(acts.service[dso] == "VM")
    # Split rows of one offer carry the offer's price; together they are the LP's activation.
    per_offer = np.bincount(acts.offer, acts.kw, len(offers))
    assert per_offer.sum() == pytest.approx(acts.kw.sum())
    for k in np.unique(acts.offer):
        assert np.ptp(acts.price_eur_per_kwh[acts.offer == k]) == 0.0


def test_common_market_bills_the_tso_for_an_opposite_request(one_constraint_case):
    """The TSO asks for more injection where the DSO needs less: every kW up is the TSO's."""
    _, need, offers, _ = one_constraint_case
    from dataclasses import replace

    both = type(offers).concat([offers, replace(offers, direction=np.full(len(offers), UP),
                                                asset=offers.asset + len(offers))])
    n_bus = need.linearization.vm_pu.shape[1]
    acts, unmet = clear_optimal(both, both.kw, DT_H, need=need,
                                requests=_common_requests(n_bus, UP, 0.5))
    assert unmet["voltage_pu"] < 1e-9 and unmet["request_kwh"] < 1e-9
    up = both.direction[acts.offer] == UP
    assert np.all(acts.buyer[up] == "TSO") and np.all(acts.buyer[~up] == "DSO")
    assert acts.kw[up].sum() == pytest.approx(0.5, abs=1e-6)
