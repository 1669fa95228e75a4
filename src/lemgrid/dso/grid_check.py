"""The DSO's grid check: AC power flow of every interval, KPIs, and the files a study writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lemgrid.errors import InputError
from lemgrid.grid.kpis import GridKpis, GridLimits, grid_kpis
from lemgrid.grid.network import Network
from lemgrid.grid.powerflow import PowerFlowResult, run_powerflow

@dataclass(frozen=True, eq=False)
class GridCheck:
    """A power flow over a horizon with its KPIs.

    Attributes
    ----------
    spec : str
        What was checked (grid spec or scenario file).
    network : Network
    time_index : pandas.DatetimeIndex or None
        Interval starts; None for a single snapshot without time (e.g. ``ieee33``).
    dt_h : float or None
        Interval length [h]; None for a snapshot.
    result : PowerFlowResult
    kpis : GridKpis
    """

    spec: str
    network: Network
    time_index: pd.DatetimeIndex | None
    dt_h: float | None
    result: PowerFlowResult
    kpis: GridKpis

    def _index(self) -> pd.Index:
        """The intervals, or ``snapshot`` 0 for a grid without time series."""
        if self.time_index is None:
            return pd.RangeIndex(len(self.result.vm_pu), name="snapshot")
        return pd.Index(self.time_index, name="interval")

    def voltages(self) -> pd.DataFrame:
        """Bus voltages [p.u.]: intervals as index (tz-aware), bus names as columns."""
        return pd.DataFrame(self.result.vm_pu, index=self._index(),
                            columns=pd.Index(self.network.bus_names.astype(str), name="bus"))

    def loadings(self) -> pd.DataFrame:
        """Branch loadings [%]: intervals as index, branch names as columns."""
        return pd.DataFrame(self.result.loading_percent, index=self._index(),
                            columns=pd.Index(self.network.branch_names.astype(str),
                                             name="branch"))


def check_injections(spec: str, network: Network, p_kw: np.ndarray, q_kvar: np.ndarray,
                     time_index: pd.DatetimeIndex | None, dt_h: float | None, limits: GridLimits,
                     progress: Callable[[int, int], None] | None = None) -> GridCheck:
    """Run the power flow of bus injections (T, n_bus) and compute the KPIs.

    ``progress(done_intervals, total_intervals)`` is called as the power flow goes on.
    """
    result = run_powerflow(network, p_kw, q_kvar, progress=progress)
    kpis = grid_kpis(network, result, limits, dt_h if dt_h is not None else 1.0)
    return GridCheck(spec, network, time_index, dt_h, result, kpis)


def powerflow_study(spec: str, *, start: str | None = None, days: float | None = None,
                    resolution: str = "15min", limits: GridLimits = GridLimits(),
                    progress: Callable[[int, int], None] | None = None) -> GridCheck:
    """Power flow of a grid's own profiles, or of a scenario's participants without flexibility.

    Parameters
    ----------
    spec : str
        A grid spec (``simbench:CODE``, ``ieee33``, a pandapower ``.json``) or a scenario ``.yaml``
        (its loads and PV after ``scale``, batteries idle; its ``grid_limits`` apply).
    start, days, resolution :
        The horizon (grids with profiles; a scenario's own horizon is used unless given).
    limits : GridLimits
    progress : callable, optional
        ``progress(done_intervals, total_intervals)``, as the power flow goes on.
    """
    if spec.lower().endswith((".yaml", ".yml")):
        from lemgrid.scenario import load_scenario

        overrides = {"start": start, "days": days,
                     "resolution": resolution if resolution != "15min" else None}
        scenario = load_scenario(spec, **overrides)
        p, q = scenario.bus_injections(scenario.participants.net_p_kw)
        return check_injections(spec, scenario.network, p, q, scenario.time_index, scenario.dt_h,
                                scenario.limits, progress)

    from lemgrid.grid.sources import load_grid

    grid = load_grid(spec)
    network = grid.network
    if grid.profiles is None:
        if start is not None or days is not None or resolution != "15min":
            raise InputError(f"grid {spec} has no time series: it runs as a single snapshot "
                             "(drop --start/--days/--resolution, or use a scenario file)")
        p = network.sgens.to_buses(network.sgens.p_kw, network.n_bus) - network.loads.to_buses(
            network.loads.p_kw, network.n_bus)
        q = -network.loads.to_buses(network.loads.q_kvar, network.n_bus)
        return check_injections(spec, network, p, q, None, None, limits)
    profiles = grid.profiles.window(start, days).resample(resolution)
    p, q = profiles.bus_injections(network)
    return check_injections(spec, network, p, q, profiles.time_index, profiles.dt_h, limits,
                            progress)


def write_powerflow_outputs(check: GridCheck, out: Path) -> dict:
    """Write ``vm_pu.parquet``, ``loading_percent.parquet`` and return the summary dict.

    Parquet files have the interval start as index (``snapshot`` 0 for a snapshot grid) and the
    bus / branch names as columns.
    """
    out.mkdir(parents=True, exist_ok=True)
    network, result = check.network, check.result
    index = check._index()
    pd.DataFrame(result.vm_pu, index=index, columns=list(network.bus_names)).to_parquet(
        out / "vm_pu.parquet")
    pd.DataFrame(result.loading_percent, index=index, columns=list(network.branch_names)).to_parquet(
        out / "loading_percent.parquet")
    summary: dict[str, object] = {"grid": check.spec}
    kpis = check.kpis.to_dict()
    if check.time_index is None:
        summary.update(intervals=1, resolution="snapshot", losses_kw=kpis.pop("losses_kw_max"))
        for key in ("losses_kwh", "import_kwh", "export_kwh"):
            kpis.pop(key)
    else:
        assert check.dt_h is not None, "a horizon has an interval length"
        summary.update(
            intervals=len(check.time_index), resolution=f"{int(check.dt_h * 60)}min",
            start=str(check.time_index[0]),
            end=str(check.time_index[-1] + pd.Timedelta(hours=check.dt_h)))
    summary.update(kpis)
    summary.update(iterations=result.iterations, newton_intervals=result.newton_intervals)
    return summary
