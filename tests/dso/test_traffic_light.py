"""The DSO on business-as-usual schedules (``design: none``, issue 10 item 4), red where delivery
is violated whether or not red control acts, and one pay-as-clear price per product over the
DSO's re-clearing rounds (item 22)."""

from __future__ import annotations

import numpy as np
import pytest

from lemgrid.dso.flex_market import one_price_per_product
from lemgrid.dso.flexibility import DOWN, Activations
from lemgrid.scenario import build_scenario, parse_scenario
from lemgrid.sim.runner import simulate

CONGESTED = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
scale: {pv: 6.0}
assets:
  - {type: battery, every: 2, capacity_kwh: 10, power_kw: 5}
market: {design: none}
"""


def test_design_none_with_a_dso_settles_metered_energy_like_business_as_usual():
    """Noisy forecasts, no market, nothing for the DSO to do (a winter day): nobody committed to
    the forecast schedule, so there is no imbalance, and a household without flexible assets pays
    exactly what it pays in business-as-usual. (Battery owners differ by their batteries'
    schedule: made on the forecasts, for the DSO to plan with, instead of following the realised
    load.)"""
    scenario = build_scenario(parse_scenario("""
grid: simbench:1-LV-rural1--0-sw
start: 2016-01-06
forecast: {method: noisy, error: 0.1}
assets:
  - {type: battery, every: 2, capacity_kwh: 10, power_kw: 5}
market: {design: none}
dso: {}
"""))
    result = simulate(scenario)
    assert set(result.tables["grid_state"].state) == {"green"}
    k = result.kpis
    assert k["imbalance_short_kwh"] == 0 and k["imbalance_long_kwh"] == 0
    plain = np.setdiff1d(np.arange(len(scenario.participants)),
                         scenario.participants.batteries.owner)
    assert len(plain) > 3
    np.testing.assert_allclose(result.cost_eur.sum(axis=0)[plain],
                               result.bau_cost_eur.sum(axis=0)[plain], atol=1e-9)


@pytest.mark.slow
def test_delivered_violations_are_red_without_red_control():
    """Neither flexibility nor red control: the overloads at delivery are red (and stay)."""
    scenario = build_scenario(parse_scenario(
        CONGESTED + "dso: {flexibility: {enabled: false}, red: {enabled: false}}\n"))
    result = simulate(scenario)
    k, state = result.kpis, result.tables["grid_state"]
    assert k["overload_intervals"] > 10
    assert k["red_intervals"] == k["violation_intervals"] == int((state.state == "red").sum())
    assert all("overload" in r for r in state.reason[state.state == "red"])
    assert result.tables["flex_activations"].empty and k["red_cost_eur"] == 0


def test_pay_as_clear_pays_one_price_per_product_over_clearing_rounds(one_constraint_case):
    """The DSO re-clears after the AC check: an activation of the same product in the second round
    at a higher marginal value raises the first round's price to it, never lowers a price."""
    _, _, offers, _ = one_constraint_case
    first = Activations(np.array([0, 1]), np.array([0.6, 0.3]), np.array([0.06, 0.05]),
                        np.array(["DSO", "DSO"]), np.array(["VM", "VM"]))
    second = Activations(np.array([0, 2]), np.array([0.2, 0.1]), np.array([0.07, 0.04]),
                         np.array(["DSO", "DSO"]), np.array(["VM", "VM"]))
    (_, a), (_, b) = one_price_per_product([(offers, first), (offers, second)])
    assert offers.direction[0] == DOWN and offers.bus[0] != offers.bus[1]
    np.testing.assert_allclose(a.price_eur_per_kwh, [0.07, 0.05])   # bus of offer 0 re-priced
    np.testing.assert_allclose(b.price_eur_per_kwh, [0.07, 0.04])
    np.testing.assert_allclose(a.kw, first.kw)
