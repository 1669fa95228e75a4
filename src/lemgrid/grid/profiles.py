"""Time series of a grid's elements: loads, PV (sgens) and storage, in kW per interval.

SimBench ships a year of 15-minute profiles (2016, a leap year: 35,136 intervals) for every element
of its grids (Meinecke et al., "SimBench - A Benchmark Dataset of Electric Power Systems to Compare
Innovative Solutions Based on Power Flow Analysis", Energies 13(12), 2020).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lemgrid.errors import InputError

#: Start of SimBench's profile year.
SIMBENCH_START = pd.Timestamp("2016-01-01 00:00")

RESOLUTIONS = {"5min": 5, "15min": 15, "30min": 30, "60min": 60, "1h": 60, "h": 60}


def parse_resolution(text: str) -> pd.Timedelta:
    """Parse an interval length such as ``15min`` or ``60min`` (also ``1h``)."""
    key = str(text).strip().lower()
    if key not in RESOLUTIONS:
        raise InputError(f"resolution must be one of 5min, 15min, 30min, 60min; got {text!r}")
    return pd.Timedelta(minutes=RESOLUTIONS[key])


@dataclass(frozen=True, eq=False)
class GridProfiles:
    """Element power time series on a regular time index.

    Attributes
    ----------
    time_index : pandas.DatetimeIndex, shape (T,)
        Start of each interval.
    load_p_kw, load_q_kvar : ndarray, shape (T, n_load)
        Consumption of each load [kW], [kvar] (columns in the order of ``Network.loads``).
    sgen_p_kw : ndarray, shape (T, n_sgen)
        Generation of each static generator (PV) [kW].
    storage_p_kw : ndarray, shape (T, n_storage)
        Charging power of each storage unit [kW] (pandapower convention: positive = charging).
    """

    time_index: pd.DatetimeIndex
    load_p_kw: np.ndarray
    load_q_kvar: np.ndarray
    sgen_p_kw: np.ndarray
    storage_p_kw: np.ndarray

    @property
    def resolution(self) -> pd.Timedelta:
        return pd.Timedelta(self.time_index.freq) if self.time_index.freq else (
            self.time_index[1] - self.time_index[0])

    @property
    def dt_h(self) -> float:
        """Interval length [h]."""
        return self.resolution / pd.Timedelta(hours=1)

    def _map(self, func) -> dict[str, np.ndarray]:
        return {f.name: func(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name != "time_index"}

    def bus_injections(self, network) -> tuple[np.ndarray, np.ndarray]:
        """Net injections at the buses of ``network`` [kW], [kvar], shape (T, n_bus):
        PV minus loads minus storage charging."""
        n_bus = network.n_bus
        p = (network.sgens.to_buses(self.sgen_p_kw, n_bus)
             - network.loads.to_buses(self.load_p_kw, n_bus)
             - network.storages.to_buses(self.storage_p_kw, n_bus))
        q = -network.loads.to_buses(self.load_q_kvar, n_bus)
        return p, q

    def window(self, start: pd.Timestamp | str | None = None, days: float | None = None) -> GridProfiles:
        """The intervals from ``start`` for ``days`` days (all remaining ones if ``days`` is None)."""
        i0, i1 = window_bounds(self.time_index, self.resolution, start, days)
        return GridProfiles(time_index=self.time_index[i0:i1], **self._map(lambda a: a[i0:i1]))

    def resample(self, resolution: str | pd.Timedelta) -> GridProfiles:
        """Average power over coarser intervals, or hold each value over finer ones (both keep
        the energy of every original interval; see :func:`resample_power`)."""
        new = parse_resolution(resolution) if isinstance(resolution, str) else resolution
        if new == self.resolution:
            return self
        arrays = self._map(lambda a: resample_power(a, self.resolution, new))
        n_t = len(next(iter(arrays.values())))
        index = pd.date_range(self.time_index[0], periods=n_t, freq=new)
        return GridProfiles(time_index=index, **arrays)


def window_bounds(index: pd.DatetimeIndex, resolution: pd.Timedelta,
                  start: pd.Timestamp | str | None, days: float | None) -> tuple[int, int]:
    """Positions [i0, i1) of the intervals of ``index`` from ``start`` for ``days`` days."""
    first = index[0]
    start = first if start is None else pd.Timestamp(start)
    last_end = index[-1] + resolution
    if start < first or start >= last_end:
        raise InputError(f"start {start} is outside the profiles ({first} to {last_end})")
    if (start - first) % resolution:
        raise InputError(f"start {start} is not on a {resolution} boundary of the profiles")
    i0 = int(index.searchsorted(start))
    if days is None:
        return i0, len(index)
    if days <= 0:
        raise InputError(f"days must be > 0, got {days}")
    end = start + pd.Timedelta(days=days)
    if end > last_end:
        raise InputError(f"start {start} + {days} days ends after the profiles end ({last_end})")
    if (end - first) % resolution:
        raise InputError(f"{days} days is not a whole number of {resolution} intervals")
    return i0, int(index.searchsorted(end))


def resample_power(values: np.ndarray, old: pd.Timedelta, new: pd.Timedelta) -> np.ndarray:
    """Resample power values along axis 0 from intervals of ``old`` to ``new`` length.

    Coarser intervals take the mean power, finer ones hold the value; both keep the energy of every
    original interval. Finer intervals cannot invent variability the data does not have: a
    15-minute mean is held for three 5-minute intervals.
    """
    if new == old:
        return values
    if new > old:
        factor, rest = divmod(new, old)
        if rest or len(values) % factor:
            raise InputError(f"cannot resample {len(values)} intervals of {old} to {new}")
        return values.reshape(len(values) // factor, factor, *values.shape[1:]).mean(axis=1)
    factor, rest = divmod(old, new)
    if rest:
        raise InputError(f"cannot resample intervals of {old} to {new}")
    return np.repeat(values, factor, axis=0)


def simbench_profiles(net, network) -> GridProfiles:
    """The year-long absolute profiles of a SimBench net, aligned with ``network``'s elements."""
    import simbench as sb

    from lemgrid.grid.convert import element_index

    absolute = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)

    def take(element: str, variable: str, table: pd.DataFrame) -> np.ndarray | None:
        frame = absolute.get((element, variable))
        index = element_index(table)
        if frame is None or frame.shape[1] == 0:
            return None
        return frame.reindex(columns=index).to_numpy(float) * 1e3

    load_p = take("load", "p_mw", net.load)
    if load_p is None:
        raise InputError(f"grid {network.name}: SimBench returned no load profiles")
    n_t = load_p.shape[0]

    def zeros(n: int) -> np.ndarray:
        return np.zeros((n_t, n))

    sgen = take("sgen", "p_mw", net.sgen)
    storage = take("storage", "p_mw", net.storage)
    load_q = take("load", "q_mvar", net.load)
    profiles = GridProfiles(
        time_index=pd.date_range(SIMBENCH_START, periods=n_t, freq="15min"),
        load_p_kw=load_p,
        load_q_kvar=load_q if load_q is not None else zeros(load_p.shape[1]),
        sgen_p_kw=sgen if sgen is not None else zeros(len(network.sgens)),
        storage_p_kw=storage if storage is not None else zeros(len(network.storages)),
    )
    for name, array in profiles._map(lambda a: a).items():
        if not np.isfinite(array).all():
            raise InputError(f"grid {network.name}: SimBench {name} profile has missing values")
    return profiles
