"""Network-constrained community clearing: the community market within the grid's limits.

The clearing linearises the grid around an operating point. A linearisation is
exact only at its own point, so :func:`clear_community_constrained` re-linearises at each round's
schedule and solves again until the schedule is (within tolerances) the point it was linearised
at and the prices no longer move: a fixed point of successive linear programming, whose schedule
and DLMPs satisfy the first-order conditions of the AC optimal power flow (Yuan et al., "Novel
linearized power flow and linearized OPF models for active distribution networks with application
in distribution LMP", IEEE Trans. Smart Grid 9(1), 2018). Where the linear programme jumps between
near-equal vertices (battery timing decided by loss factors), a shrinking step bound around the
linearisation point makes the rounds settle (Griffith & Stewart, "A nonlinear programming technique
for the optimization of continuous processing systems", Management Science 7(4), 1961). The
stopping rule is documented in ``docs/community.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lemgrid.errors import InfeasibleError
from lemgrid.grid.kpis import ACValidation, GridLimits, validate_ac
from lemgrid.grid.network import Network
from lemgrid.grid.sensitivity import linearize
from lemgrid.market.community import (
    CommunityProblem,
    CommunityResult,
    NetworkView,
    solve_community,
)


#: Stopping rule of network-constrained clearing: a round's schedule differs from the schedule it
#: was linearised at by at most this per member and interval [kW] ...
SCHEDULE_TOLERANCE_KW = 0.01
#: ... and its DLMPs from the previous round's by at most this at every bus and interval [EUR/kWh]
#: (a market's price tick: 0.01 EUR/MWh).
PRICE_TOLERANCE_EUR_PER_KWH = 1e-5
#: Once a member's step reverses direction, every member's injection is kept within a step bound
#: of the linearisation point: this share of the largest reversed step, then this share of the
#: previous bound each round.
STEP_SHRINK = 0.25


@dataclass(frozen=True, eq=False)
class ConstrainedClearing:
    """A network-constrained clearing whose schedule and prices settled, checked in AC.

    Attributes
    ----------
    result : CommunityResult
        The accepted round: its schedule and DLMPs.
    validation : ACValidation
        AC check of the accepted schedule.
    unconstrained : CommunityResult
        The same market without grid limits (what the grid would have seen).
    unconstrained_validation : ACValidation
    iterations : int
        Linearise-solve rounds until schedule and prices settled.
    """

    result: CommunityResult
    validation: ACValidation
    unconstrained: CommunityResult
    unconstrained_validation: ACValidation
    iterations: int


def clear_community_constrained(
    problem: CommunityProblem,
    network: Network,
    background_p_kw: np.ndarray,
    q_inj_kvar: np.ndarray,
    limits: GridLimits,
    *,
    losses: bool = True,
    max_iterations: int = 20,
) -> ConstrainedClearing:
    """Community market within the grid's limits, re-linearised until schedule and prices settle.

    Round 1 linearises the grid at the unconstrained schedule, round k at the schedule of round
    k - 1. Round k is accepted when (a) its schedule differs from the one it was linearised at by
    at most ``SCHEDULE_TOLERANCE_KW`` per member and interval, (b) its DLMPs differ from round
    k - 1's by at most ``PRICE_TOLERANCE_EUR_PER_KWH`` at every bus and interval (so k >= 2), and
    (c) its AC power flow is within the limits. See ``docs/community.md``.

    Parameters
    ----------
    problem : CommunityProblem
    network : Network
    background_p_kw : ndarray, shape (T, n_bus)
        Injections of non-members [kW].
    q_inj_kvar : ndarray, shape (T, n_bus)
        Reactive injections of all (held fixed) [kvar].
    limits : GridLimits
    losses : bool
        Price losses (DLMP loss component) through the import's sensitivity.
    max_iterations : int
        Linearise-solve rounds before giving up (at least 2 are needed to compare prices).

    Raises
    ------
    InfeasibleError
        If no schedule meets the linearised limits, an operating point's AC power flow does not
        converge, or schedule and prices have not settled after ``max_iterations`` rounds.
    """

    def bus_injections(schedule_kw: np.ndarray) -> np.ndarray:
        p = background_p_kw.copy()
        np.add.at(p.T, problem.bus, schedule_kw.T)  # member k's column into its bus's column
        return p

    unconstrained = solve_community(problem)
    unconstrained_check = validate_ac(network, bus_injections(unconstrained.schedule_kw),
                                      q_inj_kvar, limits)
    energised = network.bus_node >= 0
    monitored = np.flatnonzero(energised & ~np.isin(network.bus_node, network.slack_nodes))

    point_kw = unconstrained.schedule_kw  # the schedule the grid is linearised at
    last_step_kw = np.zeros_like(point_kw)
    last_price = None
    bound_kw = np.inf
    basis = None
    for iteration in range(1, max_iterations + 1):
        linearization = linearize(network, bus_injections(point_kw), q_inj_kvar)
        if not linearization.result.converged.all():
            t = int(np.flatnonzero(~linearization.result.converged)[0])
            raise InfeasibleError(
                f"network-constrained clearing: the AC power flow of round {iteration}'s operating "
                f"point does not converge in interval {t}, so the grid cannot be linearised there")

        view = NetworkView(linearization=linearization, limits=limits,
                           background_p_kw=background_p_kw, monitored_buses=monitored,
                           losses=losses)
        try:
            result = solve_community(problem, _within_step(view, point_kw, bound_kw),
                                     warm_start=basis)
        except InfeasibleError:
            if not np.isfinite(bound_kw):
                raise
            # Only a longer step can meet the limits from this point: lift the bound.
            bound_kw = np.inf
            result = solve_community(problem, view, warm_start=basis)
        step_kw = result.schedule_kw - point_kw
        price = result.bus_price_eur_per_kwh
        moved_kw = float(np.abs(step_kw).max(initial=0.0))
        repriced = (np.inf if last_price is None
                    else float(np.abs(price - last_price).max(initial=0.0)))
        if moved_kw <= SCHEDULE_TOLERANCE_KW and repriced <= PRICE_TOLERANCE_EUR_PER_KWH:
            check = validate_ac(network, bus_injections(result.schedule_kw), q_inj_kvar, limits)
            if not check.within():
                raise InfeasibleError(
                    f"network-constrained clearing: the settled schedule is still "
                    f"{check.max_voltage_excess_pu:.4f} p.u. / "
                    f"{check.max_loading_excess_percent:.2f} % outside the limits in AC")
            return ConstrainedClearing(result, check, unconstrained, unconstrained_check, iteration)
        bound_kw = _next_step_bound(bound_kw, step_kw, last_step_kw)
        point_kw, last_step_kw, last_price = result.schedule_kw, step_kw, price
        basis = result.lp_basis
    raise InfeasibleError(
        f"network-constrained clearing: schedule and prices did not settle in {max_iterations} "
        f"rounds (the last moved a member by {moved_kw:.3g} kW and a DLMP by {repriced:.3g} "
        "EUR/kWh); raise market.max_ac_iterations")


def _within_step(view: NetworkView, point_kw: np.ndarray, bound_kw: float) -> NetworkView:
    """The view with the members' injections kept within ``bound_kw`` of the point [kW]."""
    if not np.isfinite(bound_kw):
        return view
    return replace(view, schedule_lower_kw=point_kw - bound_kw,
                   schedule_upper_kw=point_kw + bound_kw)


def _next_step_bound(bound_kw: float, step_kw: np.ndarray, last_step_kw: np.ndarray) -> float:
    """Step bound of the next round [kW]: none until a member's step reverses direction (the LP
    jumping between vertices), then shrinking geometrically so that the rounds settle."""
    if np.isfinite(bound_kw):
        return STEP_SHRINK * bound_kw
    reversed_ = (np.abs(step_kw) > SCHEDULE_TOLERANCE_KW) & (step_kw * last_step_kw < 0)
    return STEP_SHRINK * float(np.abs(step_kw[reversed_]).max()) if reversed_.any() else np.inf
