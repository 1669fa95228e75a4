"""DSO validation of market results with AC power flow, and the re-clearing loop.

Network-constrained clearing linearises the grid around an operating point; the AC power flow of
the cleared schedule may still violate a limit by the linearisation error. The loop below
re-linearises at the new schedule and tightens exactly the violated limits (by the violation seen
in AC) until the AC result is within limits - the usual "iterative DC/linear OPF with AC
correction" scheme (e.g. Yuan et al., "Novel linearized power flow and linearized OPF models for
active distribution networks with application in distribution LMP", IEEE Trans. Smart Grid 9(1),
2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lemgrid.errors import InfeasibleError
from lemgrid.grid.kpis import GridLimits, studied_buses
from lemgrid.grid.network import Network
from lemgrid.grid.powerflow import PowerFlowResult, run_powerflow
from lemgrid.grid.sensitivity import linearize
from lemgrid.market.community import (
    CommunityProblem,
    CommunityResult,
    NetworkView,
    solve_community,
)

#: Accepted AC violation after the loop: 0.002 p.u. and 1 % loading would pass a DSO's check; we
#: aim for none and stop as soon as none is left.
VOLTAGE_TOLERANCE_PU = 1e-4
LOADING_TOLERANCE_PERCENT = 0.05


@dataclass(frozen=True, eq=False)
class ACValidation:
    """Violations of an AC power-flow result against the limits.

    An interval whose power flow did not converge has no voltages or loadings: its excess rows
    are NaN and it is a violation of its own (``converged``, ``violated``, ``within``).

    Attributes
    ----------
    result : PowerFlowResult
    voltage_excess_pu : ndarray, shape (T, n_bus)
        How far each studied bus (energised, not the slack) is outside the band [p.u.] (0 inside
        and at other buses; NaN in intervals that did not converge).
    loading_excess_percent : ndarray, shape (T, n_branch)
        Loading above the limit [%] (0 below; NaN in intervals that did not converge).
    """

    result: PowerFlowResult
    voltage_excess_pu: np.ndarray
    loading_excess_percent: np.ndarray

    @property
    def converged(self) -> np.ndarray:
        """Boolean (T,): the interval's power flow converged."""
        return self.result.converged

    @property
    def nonconverged_intervals(self) -> int:
        return int((~self.converged).sum())

    @property
    def violated(self) -> np.ndarray:
        """Boolean (T,): a voltage or loading excess, or no converged power flow."""
        with np.errstate(invalid="ignore"):
            return ((self.voltage_excess_pu > 0).any(axis=1)
                    | (self.loading_excess_percent > 0).any(axis=1) | ~self.converged)

    @property
    def max_voltage_excess_pu(self) -> float:
        """Largest voltage excess over the converged intervals [p.u.]."""
        return float(self.voltage_excess_pu[self.converged].max(initial=0.0))

    @property
    def max_loading_excess_percent(self) -> float:
        """Largest loading excess over the converged intervals [%]."""
        return float(self.loading_excess_percent[self.converged].max(initial=0.0))

    def within(self, vm_tol_pu: float = VOLTAGE_TOLERANCE_PU,
               loading_tol_percent: float = LOADING_TOLERANCE_PERCENT) -> bool:
        """Every interval converged and none is outside the limits by more than the tolerances."""
        return bool(self.converged.all()
                    and self.max_voltage_excess_pu <= vm_tol_pu
                    and self.max_loading_excess_percent <= loading_tol_percent)


def validate_ac(network: Network, p_inj_kw: np.ndarray, q_inj_kvar: np.ndarray,
                limits: GridLimits) -> ACValidation:
    """AC power flow of bus injections (T, n_bus) and how far it is outside the limits.

    Parameters
    ----------
    network : Network
    p_inj_kw, q_inj_kvar : ndarray, shape (T, n_bus)
        Net injections at the buses (generation positive) [kW], [kvar].
    limits : GridLimits

    Returns
    -------
    ACValidation
        Excess over the limits; intervals that did not converge are NaN there and never within.
    """
    result = run_powerflow(network, p_inj_kw, q_inj_kvar)
    vm = result.vm_pu
    with np.errstate(invalid="ignore"):
        excess_v = np.maximum(limits.vm_min_pu - vm, 0) + np.maximum(vm - limits.vm_max_pu, 0)
        excess_l = np.maximum(result.loading_percent - limits.max_loading_percent, 0)
    excess_v = np.where(studied_buses(network)[None, :], excess_v, 0.0)
    failed = ~result.converged
    excess_v[failed] = np.nan
    excess_l[failed] = np.nan
    return ACValidation(result, excess_v, excess_l)


@dataclass(frozen=True, eq=False)
class ConstrainedClearing:
    """A network-constrained clearing that passed (or failed) the AC check.

    Attributes
    ----------
    result : CommunityResult
    validation : ACValidation
        AC check of the final schedule.
    unconstrained : CommunityResult
        The same market without grid limits (what the grid would have seen).
    unconstrained_validation : ACValidation
    iterations : int
        Linearise-solve-check rounds.
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
    max_iterations: int = 10,
) -> ConstrainedClearing:
    """Community market within the grid's limits, checked with AC power flow.

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
        Linearise-solve-check rounds before giving up.

    Raises
    ------
    InfeasibleError
        If no schedule meets the limits, or the AC check still fails after ``max_iterations``.
    """
    n_t = problem.shape[0]

    def bus_injections(schedule_kw: np.ndarray) -> np.ndarray:
        p = background_p_kw.copy()
        np.add.at(p, (slice(None), problem.bus), schedule_kw)
        return p

    unconstrained = solve_community(problem)
    p_inj = bus_injections(unconstrained.schedule_kw)
    unconstrained_check = validate_ac(network, p_inj, q_inj_kvar, limits)

    energised = network.bus_node >= 0
    not_slack = ~np.isin(network.bus_node, network.slack_nodes)
    monitored = np.flatnonzero(energised & not_slack)
    v_margin = np.zeros((n_t, network.n_bus))
    l_margin = np.zeros((n_t, network.n_branch))
    for iteration in range(1, max_iterations + 1):
        view = NetworkView(
            linearization=linearize(network, p_inj, q_inj_kvar), limits=limits,
            background_p_kw=background_p_kw, voltage_margin_pu=v_margin,
            loading_margin_percent=l_margin, losses=losses, monitored_buses=monitored)
        result = solve_community(problem, view)
        p_inj = bus_injections(result.schedule_kw)
        check = validate_ac(network, p_inj, q_inj_kvar, limits)
        if check.within():
            return ConstrainedClearing(result, check, unconstrained, unconstrained_check, iteration)
        # Tighten exactly what AC found violated, by what it found (plus a little).
        v_margin = v_margin + np.where(check.voltage_excess_pu > 0,
                                       check.voltage_excess_pu + VOLTAGE_TOLERANCE_PU / 2, 0)
        l_margin = l_margin + np.where(check.loading_excess_percent > 0,
                                       check.loading_excess_percent + LOADING_TOLERANCE_PERCENT / 2,
                                       0)
    raise InfeasibleError(
        f"network-constrained clearing: still {check.max_voltage_excess_pu:.4f} p.u. / "
        f"{check.max_loading_excess_percent:.2f} % outside the limits in AC power flow after "
        f"{max_iterations} rounds")
