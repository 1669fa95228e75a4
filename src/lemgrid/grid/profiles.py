"""Time series of a grid's elements: loads, PV (sgens) and storage, in kW per interval.

SimBench ships a year of 15-minute profiles (2016, a leap year: 35,136 intervals) for every element
of its grids (Meinecke et al., "SimBench - A Benchmark Dataset of Electric Power Systems to Compare
Innovative Solutions Based on Power Flow Analysis", Energies 13(12), 2020).

Time axis. SimBench's rows are consecutive 15-minute intervals labelled in German local time with
daylight saving: 27 March 2016 has 92 rows (01:45 is followed by 03:00), 30 October has 100 (02:00
to 02:45 appear twice). lemgrid keeps that axis explicit: every time index is timezone-aware in the
grid's local time (:data:`SIMBENCH_TZ`), a "day" is a local calendar day (23, 24 or 25 hours), and
clock times in scenarios (EV arrival, windows, requests, reservations) are read on the local clock
of each interval (:func:`clock_h`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lemgrid.errors import InputError

#: Time zone of SimBench's profiles (local time with daylight saving).
SIMBENCH_TZ = "Europe/Berlin"
#: Start of SimBench's profile year (local time).
SIMBENCH_START = pd.Timestamp("2016-01-01 00:00", tz=SIMBENCH_TZ)

RESOLUTIONS = {"5min": 5, "15min": 15, "30min": 30, "60min": 60, "1h": 60, "h": 60}


class HorizonError(InputError):
    """A horizon that does not fit the profiles; ``field`` is the scenario field at fault
    (``start`` or ``days``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def simbench_time_index(n_intervals: int) -> pd.DatetimeIndex:
    """The time index of SimBench's profile rows: 15-minute intervals from 2016-01-01 00:00
    local time, timezone-aware (``Europe/Berlin``)."""
    return pd.date_range(SIMBENCH_START, periods=n_intervals, freq="15min")


def local_timestamp(value, tz, field: str = "start") -> pd.Timestamp:
    """A user's date or date-time as a timestamp of the grid's local time.

    Parameters
    ----------
    value : str, datetime.date, datetime.datetime or pandas.Timestamp
        A naive value is the grid's local (wall-clock) time; an aware one is converted.
    tz : str, tzinfo or None
        The grid's time zone (None: naive time axis).
    field : str
        Named in errors.

    Raises
    ------
    HorizonError
        Not a date, or a local time that does not exist (the hour skipped in spring) or exists
        twice (the hour repeated in autumn) without a UTC offset to tell which.
    """
    if isinstance(value, bool | int | float):
        raise HorizonError(field, f"{field} must be a date (2016-06-01) or a date-time "
                                  f"(2016-06-01 06:00), got the number {value!r}")
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise HorizonError(field, f"{field} must be a date (2016-06-01) or a date-time "
                                  f"(2016-06-01 06:00), got {value!r}") from None
    if stamp is pd.NaT:
        raise HorizonError(field, f"{field} must be a date or a date-time, got {value!r}")
    if tz is None:
        return stamp.tz_localize(None) if stamp.tz is not None else stamp
    if stamp.tz is not None:
        return stamp.tz_convert(tz)
    try:
        return stamp.tz_localize(tz)
    except Exception as exc:  # pytz's NonExistentTimeError / AmbiguousTimeError
        kind = type(exc).__name__
        if "NonExistent" in kind:
            raise HorizonError(field, f"{field} {stamp} does not exist in {tz}: the clocks skip "
                                      "that hour for daylight saving") from None
        if "Ambiguous" in kind:
            raise HorizonError(field, f"{field} {stamp} happens twice in {tz} (the clocks go "
                                      "back for daylight saving): give its UTC offset, e.g. "
                                      f"{stamp.isoformat()}+02:00") from None
        raise


def clock_h(index: pd.DatetimeIndex) -> np.ndarray:
    """Local clock time of each interval start [h after local midnight], e.g. 17.5 at 17:30."""
    return np.asarray(index.hour + index.minute / 60.0, dtype=float)


def in_daily_window(clock: np.ndarray, start_h: float, end_h: float) -> np.ndarray:
    """Intervals whose local clock time lies in [start_h, end_h); a window with
    ``end_h <= start_h`` runs past midnight (e.g. 22:00 to 06:00)."""
    if start_h < end_h:
        return (clock >= start_h) & (clock < end_h)
    return (clock >= start_h) | (clock < end_h)


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
        return pd.Timedelta(self.time_index.freq.nanos, unit="ns") if self.time_index.freq else (
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


def local_end(start: pd.Timestamp, days: float) -> pd.Timestamp:
    """``days`` local calendar days after ``start`` (wall-clock arithmetic: a day across a
    daylight-saving change lasts 23 or 25 hours).

    Raises
    ------
    HorizonError
        ``days`` not a finite positive number, or so large that the date overflows.
    """
    if isinstance(days, bool) or not isinstance(days, int | float | np.integer | np.floating):
        raise HorizonError("days", f"days must be a number, got {days!r}")
    if not np.isfinite(days) or days <= 0:
        raise HorizonError("days", f"days must be a finite number > 0, got {days!r}")
    try:
        wall = (start.tz_localize(None) if start.tz is not None else start) + pd.Timedelta(
            days=days)
    except (OverflowError, ValueError):  # beyond pandas' dates (years 1677 to 2262)
        raise HorizonError("days", f"days {days:g} reaches beyond any profile") from None
    if start.tz is None:
        return wall
    # The end of a local day never falls in the skipped / repeated hour at midnight-based
    # horizons; for other starts take the first occurrence and move past a skipped hour.
    return wall.tz_localize(start.tz, ambiguous=True, nonexistent="shift_forward")


def window_bounds(index: pd.DatetimeIndex, resolution: pd.Timedelta,
                  start: dt.date | str | None, days: float | None) -> tuple[int, int]:
    """Positions [i0, i1) of the intervals of ``index`` from ``start`` for ``days`` days.

    ``start`` is read in the index's time zone (naive: local time); ``days`` are local calendar
    days (see :func:`local_end`).

    Raises
    ------
    HorizonError
        Naming ``start`` or ``days``.
    """
    first = index[0]
    start = first if start is None else local_timestamp(start, index.tz)
    last_end = index[-1] + resolution
    if start < first or start >= last_end:
        raise HorizonError("start", f"start {start} is outside the profiles ({first} to "
                                    f"{last_end})")
    step = f"{int(resolution / pd.Timedelta(minutes=1))}-minute"
    if (start - first) % resolution:
        raise HorizonError("start", f"start {start} is not on a {step} boundary of the profiles")
    i0 = int(index.searchsorted(start))
    if days is None:
        return i0, len(index)
    end = local_end(start, days)
    if end > last_end:
        raise HorizonError("days", f"start {start} + {days:g} days ends after the profiles end "
                                   f"({last_end})")
    if (end - first) % resolution:
        raise HorizonError("days", f"{days:g} days is not a whole number of {step} intervals")
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
    _check_simbench_time(net, n_t, network.name)
    profiles = GridProfiles(
        time_index=simbench_time_index(n_t),
        load_p_kw=load_p,
        load_q_kvar=load_q if load_q is not None else zeros(load_p.shape[1]),
        sgen_p_kw=sgen if sgen is not None else zeros(len(network.sgens)),
        storage_p_kw=storage if storage is not None else zeros(len(network.storages)),
    )
    for name, array in profiles._map(lambda a: a).items():
        if not np.isfinite(array).all():
            raise InputError(f"grid {network.name}: SimBench {name} profile has missing values")
    return profiles


def _check_simbench_time(net, n_t: int, name: str) -> None:
    """SimBench-style profiles carry their local time as text ('dd.mm.YYYY HH:MM'); make sure
    the rows are the intervals :func:`simbench_time_index` says they are."""
    time = net.profiles["load"].get("time") if "time" in net.profiles["load"] else None
    if time is None:
        return
    expected = simbench_time_index(n_t).strftime("%d.%m.%Y %H:%M")
    given = np.asarray(time, dtype=str)
    if len(given) != n_t or not (given == expected).all():
        bad = int(np.argmax(given != expected)) if len(given) == n_t else min(len(given), n_t)
        raise InputError(
            f"grid {name}: profile row {bad} is labelled {given[bad] if bad < len(given) else '-'!r}"
            f", expected {expected[bad] if bad < n_t else '-'!r}: lemgrid reads profiles as "
            f"15-minute intervals of 2016 in {SIMBENCH_TZ} local time from 01.01.2016 00:00")
