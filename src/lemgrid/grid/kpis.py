"""Grid KPIs from a batched power flow: voltage band, loading, losses, import/export peaks.

Voltages are judged at the **studied buses**: every energised bus except those of the slack
(the external grid's connection point, whose voltage is a set-point, not a result). An interval
whose power flow did **not converge** is a violation of its own: it has no voltages, loadings or
losses, so it is counted in ``nonconverged_intervals`` and in ``violation_intervals`` and is left
out of the extremes and sums (which therefore cover the converged intervals only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lemgrid.grid.network import Network
from lemgrid.grid.powerflow import PowerFlowResult, run_powerflow

#: The reason the DSO's traffic light and reports give for an interval without a solution.
NONCONVERGED_REASON = "power flow did not converge"


@dataclass(frozen=True)
class GridLimits:
    """Operating limits of the DSO.

    Attributes
    ----------
    vm_min_pu, vm_max_pu : float
        Voltage band [p.u.]; EN 50160 allows +-10 % of nominal, hence 0.90 / 1.10 by default.
    max_loading_percent : float
        Largest allowed loading of lines and transformers [%].
    """

    vm_min_pu: float = 0.90
    vm_max_pu: float = 1.10
    max_loading_percent: float = 100.0


@dataclass(frozen=True)
class GridKpis:
    """Summary of a power-flow run; energies need the interval length ``dt_h``.

    Voltage extremes (``vm_min_pu``, ``vm_max_pu`` and their buses) and voltage violations are
    those of the studied buses (energised, not the slack); extremes, losses and energies are over
    the converged intervals (NaN / "" if none converged). ``violation_intervals`` counts intervals
    with a voltage violation, an overload or no converged power flow.
    """

    intervals: int
    losses_kwh: float
    losses_kw_max: float
    vm_min_pu: float
    vm_min_bus: str
    vm_max_pu: float
    vm_max_bus: str
    max_loading_percent: float
    max_loading_branch: str
    voltage_violation_intervals: int
    overload_intervals: int
    peak_import_kw: float
    peak_export_kw: float
    import_kwh: float
    export_kwh: float
    nonconverged_intervals: int
    violation_intervals: int

    def to_dict(self) -> dict:
        return asdict(self)


def studied_buses(network: Network) -> np.ndarray:
    """Boolean (n_bus,): energised buses that are not on a slack node (whose voltage is set)."""
    return (network.bus_node >= 0) & ~np.isin(network.bus_node, network.slack_nodes)


#: One definition of a violation for every check in lemgrid (KPIs, the DSO's traffic light, the
#: AC validation of a clearing): a limit is violated when it is exceeded by more than these
#: tolerances, far below what a meter or a protection relay resolves, so that a schedule a
#: clearing puts exactly at a limit is not a violation because of the power flow's last digits.
VOLTAGE_TOLERANCE_PU = 1e-4
LOADING_TOLERANCE_PERCENT = 0.05


def voltage_violations(network: Network, result: PowerFlowResult, limits: GridLimits
                       ) -> np.ndarray:
    """Boolean (T, n_bus): studied bus outside the voltage band by more than
    :data:`VOLTAGE_TOLERANCE_PU` (in converged intervals)."""
    with np.errstate(invalid="ignore"):
        outside = ((result.vm_pu < limits.vm_min_pu - VOLTAGE_TOLERANCE_PU)
                   | (result.vm_pu > limits.vm_max_pu + VOLTAGE_TOLERANCE_PU))
    return outside & studied_buses(network)


def overloads(result: PowerFlowResult, limits: GridLimits) -> np.ndarray:
    """Boolean (T, n_branch): branch loading above the limit by more than
    :data:`LOADING_TOLERANCE_PERCENT` (in converged intervals)."""
    with np.errstate(invalid="ignore"):
        return result.loading_percent > limits.max_loading_percent + LOADING_TOLERANCE_PERCENT


def violated_intervals(network: Network, result: PowerFlowResult, limits: GridLimits
                       ) -> np.ndarray:
    """Boolean (T,): a voltage violation, an overload, or no converged power flow."""
    return (voltage_violations(network, result, limits).any(axis=1)
            | overloads(result, limits).any(axis=1) | ~result.converged)


def voltage_range(network: Network, result: PowerFlowResult) -> tuple[float, str, float, str]:
    """Lowest and highest voltage [p.u.] of the studied buses over the converged intervals, and
    where they occur: ``(vm_min_pu, bus, vm_max_pu, bus)``; ``(nan, "", nan, "")`` if none."""
    vm = np.where(studied_buses(network)[None, :] & result.converged[:, None], result.vm_pu,
                  np.nan)
    if not np.isfinite(vm).any():
        return np.nan, "", np.nan, ""
    i_min = np.unravel_index(np.nanargmin(vm), vm.shape)
    i_max = np.unravel_index(np.nanargmax(vm), vm.shape)
    names = network.bus_names
    return float(vm[i_min]), str(names[i_min[1]]), float(vm[i_max]), str(names[i_max[1]])


def grid_kpis(network: Network, result: PowerFlowResult, limits: GridLimits, dt_h: float
              ) -> GridKpis:
    """KPIs of a power-flow run (see :class:`GridKpis` for what each covers).

    Parameters
    ----------
    network : Network
    result : PowerFlowResult
    limits : GridLimits
    dt_h : float
        Interval length [h] (energies are power x dt_h).
    """
    vm_min, bus_min, vm_max, bus_max = voltage_range(network, result)
    ok = result.converged
    loading = np.nan_to_num(result.loading_percent[ok], nan=-np.inf)
    if network.n_branch and loading.size:
        i_load = np.unravel_index(np.argmax(loading), loading.shape)
        max_loading, max_branch = float(loading[i_load]), str(network.branch_names[i_load[1]])
    else:
        max_loading, max_branch = (np.nan if network.n_branch else 0.0), ""
    p = result.p_slack_kw[ok]
    losses = result.losses_kw[ok]
    return GridKpis(
        intervals=int(len(result.p_slack_kw)),
        losses_kwh=float(losses.sum() * dt_h),
        losses_kw_max=float(losses.max()) if losses.size else np.nan,
        vm_min_pu=vm_min, vm_min_bus=bus_min, vm_max_pu=vm_max, vm_max_bus=bus_max,
        max_loading_percent=max_loading,
        max_loading_branch=max_branch,
        voltage_violation_intervals=int(voltage_violations(network, result, limits)
                                        .any(axis=1).sum()),
        overload_intervals=int(overloads(result, limits).any(axis=1).sum()),
        peak_import_kw=float(max(p.max(initial=0.0), 0.0)),
        peak_export_kw=float(max(-p.min(initial=0.0), 0.0)),
        import_kwh=float(np.clip(p, 0, None).sum() * dt_h),
        export_kwh=float(np.clip(-p, 0, None).sum() * dt_h),
        nonconverged_intervals=int((~ok).sum()),
        violation_intervals=int(violated_intervals(network, result, limits).sum()),
    )


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
        """Boolean (T,): the one definition of :func:`violated_intervals`, a voltage or loading
        excess beyond the tolerances, or no converged power flow."""
        with np.errstate(invalid="ignore"):
            return ((self.voltage_excess_pu > VOLTAGE_TOLERANCE_PU).any(axis=1)
                    | (self.loading_excess_percent > LOADING_TOLERANCE_PERCENT).any(axis=1)
                    | ~self.converged)

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
