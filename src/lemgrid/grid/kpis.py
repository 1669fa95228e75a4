"""Grid KPIs from a batched power flow: voltage band, loading, losses, import/export peaks."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lemgrid.grid.network import Network
from lemgrid.grid.powerflow import PowerFlowResult


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
    """Summary of a power-flow run; energies need the interval length ``dt_h``."""

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

    def to_dict(self) -> dict:
        return asdict(self)


def voltage_violations(result: PowerFlowResult, limits: GridLimits) -> np.ndarray:
    """Boolean (T, n_bus): bus voltage outside the band (unenergised buses never violate)."""
    with np.errstate(invalid="ignore"):
        return (result.vm_pu < limits.vm_min_pu) | (result.vm_pu > limits.vm_max_pu)


def overloads(result: PowerFlowResult, limits: GridLimits) -> np.ndarray:
    """Boolean (T, n_branch): branch loading above the limit."""
    return result.loading_percent > limits.max_loading_percent


def grid_kpis(network: Network, result: PowerFlowResult, limits: GridLimits, dt_h: float) -> GridKpis:
    """KPIs of a power-flow run.

    Parameters
    ----------
    network : Network
    result : PowerFlowResult
    limits : GridLimits
    dt_h : float
        Interval length [h] (energies are power x dt_h).
    """
    vm = result.vm_pu
    i_min = np.unravel_index(np.nanargmin(vm), vm.shape)
    i_max = np.unravel_index(np.nanargmax(vm), vm.shape)
    if network.n_branch:
        loading = np.nan_to_num(result.loading_percent, nan=-np.inf)
        i_load = np.unravel_index(np.argmax(loading), loading.shape)
        max_loading, max_branch = float(loading[i_load]), str(network.branch_names[i_load[1]])
    else:
        max_loading, max_branch = 0.0, ""
    p = result.p_slack_kw
    return GridKpis(
        intervals=int(len(p)),
        losses_kwh=float(np.nansum(result.losses_kw) * dt_h),
        losses_kw_max=float(np.nanmax(result.losses_kw)),
        vm_min_pu=float(vm[i_min]),
        vm_min_bus=str(network.bus_names[i_min[1]]),
        vm_max_pu=float(vm[i_max]),
        vm_max_bus=str(network.bus_names[i_max[1]]),
        max_loading_percent=max_loading,
        max_loading_branch=max_branch,
        voltage_violation_intervals=int(voltage_violations(result, limits).any(axis=1).sum()),
        overload_intervals=int(overloads(result, limits).any(axis=1).sum()),
        peak_import_kw=float(max(np.nanmax(p), 0.0)),
        peak_export_kw=float(max(-np.nanmin(p), 0.0)),
        import_kwh=float(np.nansum(np.clip(p, 0, None)) * dt_h),
        export_kwh=float(np.nansum(np.clip(-p, 0, None)) * dt_h),
        nonconverged_intervals=int((~result.converged).sum()),
    )
