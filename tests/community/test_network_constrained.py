"""Network-constrained community clearing on a SimBench feeder with batteries: AC-feasible
schedules, DLMPs, and the stopping rule of the re-linearisation.

The references are the AC power flow itself (validated against pandapower in tests/grid): the
unconstrained schedule violates the limits in AC, the constrained one does not; and the grid's
sensitivities at the accepted schedule, computed afresh. Against pandapower's AC OPF:
test_constrained_vs_opf.py."""

from __future__ import annotations

import numpy as np
import pytest

from lemgrid.errors import InfeasibleError
from lemgrid.grid.sensitivity import linearize
from lemgrid.market import community_constrained
from lemgrid.market.community import CommunityProblem
from lemgrid.market.community_constrained import (PRICE_TOLERANCE_EUR_PER_KWH,
                                                  clear_community_constrained)
from lemgrid.scenario import build_scenario, parse_scenario

VM_TOL_PU = 0.002
LOADING_TOL_PERCENT = 1.0


def clearing(pv: float, limits: str = "", losses: bool = True, grid="simbench:1-LV-rural1--0-sw",
             **options):
    scenario = build_scenario(parse_scenario(f"""
grid: {grid}
start: 2016-06-06
days: 1
scale: {{pv: {pv}}}
assets:
  - {{type: battery, every: 3, capacity_kwh: 10, power_kw: 5}}
{limits}
"""))
    problem = CommunityProblem.from_scenario(scenario)
    _, q = scenario.bus_injections(scenario.participants.net_p_kw)
    return scenario, clear_community_constrained(problem, scenario.network,
                                                 scenario.background_p_kw, q, scenario.limits,
                                                 losses=losses, **options)


def within_limits(scenario, validation):
    limits = scenario.limits
    vm = validation.result.vm_pu
    return (np.nanmax(vm) <= limits.vm_max_pu + VM_TOL_PU
            and np.nanmin(vm) >= limits.vm_min_pu - VM_TOL_PU
            and np.nanmax(validation.result.loading_percent)
            <= limits.max_loading_percent + LOADING_TOL_PERCENT)


def components_add_up(result):
    total = sum(result.dlmp_components.values())
    np.testing.assert_allclose(total, result.bus_price_eur_per_kwh, atol=1e-9)


@pytest.mark.parametrize("pv, limits, binding", [
    (6.0, "", "congestion"),  # reverse flow overloads the transformer
    (4.0, "grid_limits: {vm_max_pu: 1.03, max_loading_percent: 250}", "voltage"),  # voltage rise
])
def test_constrained_schedule_is_within_limits_in_ac(pv, limits, binding):
    scenario, c = clearing(pv, limits)
    assert not within_limits(scenario, c.unconstrained_validation)  # the market alone violates
    assert within_limits(scenario, c.validation)
    r = c.result
    components_add_up(r)
    bound = np.abs(r.dlmp_components[binding]).max(axis=1) > 1e-6
    assert bound.any()
    # Where a limit binds, DLMPs separate by bus (beyond what losses do).
    spread = np.ptp(r.bus_price_eur_per_kwh - r.dlmp_components["loss"], axis=1)
    assert np.all(spread[bound] > 1e-4)
    # Where nothing binds: no congestion or voltage component, DLMP = energy + losses.
    free = ~(np.abs(r.dlmp_components["congestion"]).max(axis=1) > 1e-9) & ~(
        np.abs(r.dlmp_components["voltage"]).max(axis=1) > 1e-9)
    assert free.any()
    np.testing.assert_allclose(r.bus_price_eur_per_kwh[free],
                               (r.dlmp_components["energy"] + r.dlmp_components["loss"])[free],
                               atol=1e-9)


def test_without_losses_unconstrained_dlmps_equal_the_energy_price():
    _, c = clearing(1.0, losses=False)
    r = c.result
    components_add_up(r)
    assert np.abs(r.dlmp_components["loss"]).max() < 1e-12
    np.testing.assert_allclose(r.bus_price_eur_per_kwh, r.price_eur_per_kwh[:, None] *
                               np.ones_like(r.bus_price_eur_per_kwh), atol=1e-9)
    # Nothing binds: the same schedule cost as the unconstrained market.
    assert r.welfare_eur == pytest.approx(c.unconstrained.welfare_eur, abs=1e-6)


def test_limits_no_schedule_can_meet_are_refused():
    with pytest.raises(InfeasibleError, match="voltage at bus"):
        clearing(1.0, "grid_limits: {vm_min_pu: 0.90, vm_max_pu: 1.0}")


def test_losses_are_priced_at_the_accepted_schedule():
    """The loss component is the energy price times the marginal loss factor of the accepted
    operating point (not of the unconstrained one the first round linearised at)."""
    scenario, c = clearing(6.0)
    r = c.result
    p, q = scenario.bus_injections(r.schedule_kw)
    at_accepted = linearize(scenario.network, p, q)
    expected = r.price_eur_per_kwh[:, None] * (-at_accepted.dpslack_dp - 1.0)
    np.testing.assert_allclose(r.dlmp_components["loss"], expected,
                               atol=PRICE_TOLERANCE_EUR_PER_KWH, rtol=0)
    # The first round's loss factors were far enough off to matter at that tolerance.
    p0, q0 = scenario.bus_injections(c.unconstrained.schedule_kw)
    first = r.price_eur_per_kwh[:, None] * (-linearize(scenario.network, p0, q0).dpslack_dp - 1.0)
    assert np.abs(first - expected).max() > 10 * PRICE_TOLERANCE_EUR_PER_KWH


def test_rounds_that_do_not_settle_are_an_error():
    # Battery timing on this feeder needs a few rounds of shrinking steps to settle.
    with pytest.raises(InfeasibleError, match="did not settle in 2 rounds"):
        clearing(6.0, max_iterations=2)


def test_a_step_bound_that_blocks_the_limits_is_lifted(monkeypatch):
    """If the bounded step cannot meet the linearised limits, the round is solved unbounded."""
    solve = community_constrained.solve_community
    refused = []

    def refuse_first_bounded(problem, view=None, **kwargs):
        if view is not None and view.schedule_lower_kw is not None and not refused:
            refused.append(True)
            raise InfeasibleError("grid limits cannot be met (refused by the test)")
        return solve(problem, view, **kwargs)

    monkeypatch.setattr(community_constrained, "solve_community", refuse_first_bounded)
    scenario, c = clearing(6.0)
    assert refused
    assert within_limits(scenario, c.validation)

