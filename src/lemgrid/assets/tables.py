"""Flexible assets as column tables (one row per asset), ready for vectorised models.

Every table has ``owner``: the index of the participant that owns the asset.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd


_INT_COLUMNS = {"owner", "start", "stop"}
_STR_COLUMNS = {"name", "kind"}


def take_rows(table, keep: np.ndarray):
    """The rows ``keep`` (mask or indices) of a column table (a dataclass of equal-length arrays)."""
    return type(table)(**{f.name: getattr(table, f.name)[keep] for f in fields(table)})


def _empty(cls):
    def column(name: str) -> np.ndarray:
        dtype = np.int64 if name in _INT_COLUMNS else str if name in _STR_COLUMNS else float
        return np.array([], dtype=dtype)

    return cls(**{f.name: column(f.name) for f in fields(cls)})


@dataclass(frozen=True, eq=False)
class Batteries:
    """Batteries; efficiencies are one-way (round trip = charge x discharge).

    Attributes
    ----------
    owner : ndarray of int
    name : ndarray of str
    capacity_kwh, power_kw : ndarray
        Usable energy capacity [kWh] and charge/discharge power limit [kW].
    eta_charge, eta_discharge : ndarray
        One-way efficiencies [-].
    soc_min, soc_max, soc_initial, soc_final : ndarray
        State-of-charge bounds and the required initial / final state [fraction of capacity].
    """

    owner: np.ndarray
    name: np.ndarray
    capacity_kwh: np.ndarray
    power_kw: np.ndarray
    eta_charge: np.ndarray
    eta_discharge: np.ndarray
    soc_min: np.ndarray
    soc_max: np.ndarray
    soc_initial: np.ndarray
    soc_final: np.ndarray

    def __len__(self) -> int:
        return len(self.name)

    @classmethod
    def empty(cls) -> Batteries:
        return _empty(cls)


@dataclass(frozen=True, eq=False)
class EnergyWindows:
    """Energy that must be delivered within a window: EV charging and shiftable loads.

    Attributes
    ----------
    owner : ndarray of int
    name : ndarray of str
        Asset name (one asset has one session per day).
    kind : ndarray of str
        'ev' or 'flexible_load'.
    start, stop : ndarray of int
        First interval and one past the last interval of the window (indices into the horizon).
    energy_kwh : ndarray
        Energy to deliver within the window [kWh] (drawn from the grid, i.e. including losses).
    power_kw : ndarray
        Power limit [kW].
    """

    owner: np.ndarray
    name: np.ndarray
    kind: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    energy_kwh: np.ndarray
    power_kw: np.ndarray

    def __len__(self) -> int:
        return len(self.name)

    @classmethod
    def empty(cls) -> EnergyWindows:
        return _empty(cls)


class KindTableViews:
    """Read-only ``batteries`` and ``windows`` views of the built-in kinds' tables in
    ``self.kinds`` (kind name -> table), empty tables where a kind is absent; for readers that
    name those two kinds."""

    kinds: dict

    @property
    def batteries(self) -> Batteries:
        """The ``battery`` kind's table (empty if none)."""
        return self.kinds.get("battery", Batteries.empty())

    @property
    def windows(self) -> EnergyWindows:
        """The ``energy_window`` kind's table: EV and shiftable-load windows (empty if none)."""
        return self.kinds.get("energy_window", EnergyWindows.empty())


def daily_windows(time_index: pd.DatetimeIndex, open_h: float, close_h: float
                  ) -> list[tuple[int, int, float]]:
    """Windows [open, close) of each local day that overlap the horizon, clipped to it.

    Clock times are the grid's local time: across a daylight-saving change a window from 18:00
    to 07:00 lasts 12 or 14 hours, not 13.

    Parameters
    ----------
    time_index : pandas.DatetimeIndex, shape (T,)
        Interval starts of the horizon (regular; timezone-aware in the grid's local time, or
        naive).
    open_h, close_h : float
        Clock times [h]; ``close_h <= open_h`` means the window ends the next day (e.g. an EV
        from 18:00 to 07:00).

    Returns
    -------
    list of (start, stop, fraction)
        Interval indices and the fraction of the full window that lies inside the horizon
        (a window cut by the horizon's edge needs only that share of its energy).
    """
    if not len(time_index):
        return []
    step = pd.Timedelta(time_index.freq.nanos, unit="ns") if time_index.freq else time_index[1] - time_index[0]
    t0, t_end = time_index[0], time_index[-1] + step
    tz = t0.tz
    wall0 = t0.tz_localize(None) if tz is not None else t0
    wall_end = t_end.tz_localize(None) if tz is not None else t_end
    # Windows that opened the day before the horizon may still be open at its start.
    days = pd.date_range(wall0.normalize() - pd.Timedelta(days=1), wall_end.normalize(), freq="D")
    length_h = (close_h - open_h) % 24 or 24.0
    opens = days + pd.Timedelta(hours=open_h)
    closes = opens + pd.Timedelta(hours=length_h)
    if tz is not None:
        # A clock time skipped in spring moves forward; one repeated in autumn is its first pass.
        first = np.ones(len(days), bool)
        opens = opens.tz_localize(tz, ambiguous=first, nonexistent="shift_forward")
        closes = closes.tz_localize(tz, ambiguous=first, nonexistent="shift_forward")
    out = []
    for t_open, t_close in zip(opens, closes, strict=True):
        lo, hi = max(t_open, t0), min(t_close, t_end)
        if hi <= lo:
            continue
        start = int(np.ceil((lo - t0) / step - 1e-9))
        stop = int(np.floor((hi - t0) / step + 1e-9))
        if stop > start:
            out.append((start, stop, (stop - start) * step / (t_close - t_open)))
    return out
