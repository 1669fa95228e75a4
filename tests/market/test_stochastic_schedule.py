"""The two-stage community schedule (lemgrid.market.stochastic) against closed forms: without
batteries it is the newsvendor (the day-ahead position is the demand's quantile at the critical
ratio); CVaR against the mean of the worst outcomes; and its invariants on random days: the
value of the stochastic solution is never negative, CVaR does not rise with the risk weight."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lemgrid.assets.tables import Batteries
from lemgrid.errors import InputError
from lemgrid.market.stochastic import StochasticDay, cvar, recourse, solve_schedule


def _batteries(n: int, owner=None) -> Batteries:
    def full(x):
        return np.full(n, x, dtype=float)

    return Batteries(owner=np.arange(n) if owner is None else np.asarray(owner),
                     name=np.array([f"b{i}" for i in range(n)]), capacity_kwh=full(5.0),
                     power_kw=full(2.0), eta_charge=full(0.95), eta_discharge=full(0.95),
                     soc_min=full(0.0), soc_max=full(1.0), soc_initial=full(0.5),
                     soc_final=full(0.5))


def _day(load, pv, batteries, short=0.55, long=0.0) -> StochasticDay:
    return StochasticDay(np.asarray(load, float), np.asarray(pv, float), batteries, dt_h=1.0,
                         buy_eur_per_kwh=0.30, sell_eur_per_kwh=0.10, short_eur_per_kwh=short,
                         long_eur_per_kwh=long, wear_eur_per_kwh=0.0)


def test_without_batteries_it_is_the_newsvendor():
    demand = np.array([3.0, 9.0, 1.0, 7.0, 5.0, 2.0, 10.0, 4.0, 8.0, 6.0])  # kWh in one hour
    day = _day(demand[:, None, None], np.zeros((10, 1, 1)), _batteries(0))
    schedule = solve_schedule(day)
    # critical ratio (short - buy) / (short - long) = 0.25 / 0.55 = 0.4545: the 5th smallest
    assert schedule.position_kw == pytest.approx([5.0], abs=1e-6)
    g = 5.0
    by_hand = 0.30 * g + np.mean(0.55 * np.maximum(demand - g, 0) - 0.0 * np.maximum(
        g - demand, 0))
    assert schedule.expected_cost_eur() == pytest.approx(by_hand, abs=1e-6)
    assert schedule.short_kwh == pytest.approx(np.maximum(demand - g, 0), abs=1e-6)


def test_cvar_is_the_mean_of_the_worst_outcomes():
    cost = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])
    assert cvar(cost, 0.8) == pytest.approx((10 + 9) / 2)
    assert cvar(cost, 0.5) == pytest.approx(np.mean([10, 9, 8, 7, 6]))
    # a risk-averse newsvendor buys more day-ahead (the worst case is being short)
    demand = cost
    day = _day(demand[:, None, None], np.zeros((10, 1, 1)), _batteries(0))
    neutral, averse = solve_schedule(day), solve_schedule(day, risk_weight=1.0, alpha=0.8)
    assert averse.position_kw[0] > neutral.position_kw[0]
    assert averse.cvar_eur(0.8) <= neutral.cvar_eur(0.8) + 1e-9


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), n_t=st.integers(1, 4), n_b=st.integers(0, 2))
def test_the_stochastic_solution_never_loses_and_risk_aversion_lowers_cvar(seed, n_t, n_b):
    rng = np.random.default_rng(seed)
    s_n, n = 8, 2
    load = rng.uniform(0, 4, (s_n, n_t, n))
    pv = rng.uniform(0, 4, (s_n, n_t, n)) * (rng.random((s_n, n_t, n)) < 0.6)
    day = _day(load, pv, _batteries(n_b, owner=np.arange(n_b) % n), short=0.6, long=0.02)
    mean = _day(load.mean(0, keepdims=True), pv.mean(0, keepdims=True), day.batteries,
                short=0.6, long=0.02)
    rp = solve_schedule(day)
    eev = recourse(day, solve_schedule(mean).position_kw)
    assert eev.expected_cost_eur() - rp.expected_cost_eur() >= -1e-6  # VSS >= 0
    assert recourse(day, rp.position_kw).expected_cost_eur() == pytest.approx(
        rp.expected_cost_eur(), abs=1e-6)
    cvars = [solve_schedule(day, risk_weight=beta, alpha=0.75).cvar_eur(0.75)
             for beta in (0.0, 0.5, 0.9, 1.0)]
    assert all(b <= a + 1e-6 for a, b in zip(cvars, cvars[1:], strict=False)), cvars


@pytest.mark.parametrize("change, field", [
    ({"short": 0.2}, "short_eur_per_kwh"), ({"long": 0.2}, "long_eur_per_kwh")])
def test_imbalance_prices_that_pay_to_deviate_are_refused(change, field):
    with pytest.raises(InputError, match=field):
        _day(np.ones((1, 1, 1)), np.zeros((1, 1, 1)), _batteries(0), **change)


def test_a_risk_weight_out_of_range_is_refused():
    day = _day(np.ones((1, 1, 1)), np.zeros((1, 1, 1)), _batteries(0))
    with pytest.raises(InputError, match="risk_weight"):
        solve_schedule(day, risk_weight=1.5)
    with pytest.raises(InputError, match="alpha"):
        solve_schedule(day, alpha=1.0)
