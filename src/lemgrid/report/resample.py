"""Time buckets for plotting long horizons: a year of 15-minute values becomes ~2,000 points.

A browser draws a few thousand points per trace quickly and a 35,136-column heatmap slowly, and
every point adds bytes to a self-contained HTML file. Plots therefore aggregate consecutive
intervals into buckets of a round length (15 min, 1 h, 6 h, 1 day, ...): means for powers and
prices, sums for energies, minima and maxima where extremes matter (peaks, voltage limits).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Bucket lengths a reader recognises [min], shortest first.
ROUND_BUCKETS_MIN = (5, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 20160, 40320)

#: Default largest number of points along the time axis of a plot.
MAX_POINTS = 2000


@dataclass(frozen=True, eq=False)
class Buckets:
    """Consecutive intervals grouped into buckets of ``size`` intervals.

    Attributes
    ----------
    size : int
        Intervals per bucket (1: no aggregation).
    minutes : float
        Bucket length [min].
    starts : pandas.DatetimeIndex, shape (B,)
        Start time of each bucket.
    n_intervals : int
        Intervals that are bucketed (T); the last bucket may be shorter.
    """

    size: int
    minutes: float
    starts: pd.DatetimeIndex
    n_intervals: int

    @property
    def aggregated(self) -> bool:
        return self.size > 1

    @property
    def label(self) -> str:
        """Bucket length in words, e.g. ``15 min``, ``6 h``, ``1 day``."""
        if self.minutes < 60:
            return f"{self.minutes:g} min"
        if self.minutes < 1440:
            return f"{self.minutes / 60:g} h"
        days = self.minutes / 1440
        return f"{days:g} day" + ("s" if days != 1 else "")

    def _blocks(self, values: np.ndarray) -> np.ndarray:
        """``values`` (T, ...) as (B, size, ...), the last bucket padded with NaN."""
        values = np.asarray(values, dtype=float)
        if values.shape[0] != self.n_intervals:
            raise ValueError(f"expected {self.n_intervals} intervals, got {values.shape[0]}")
        n_pad = len(self.starts) * self.size - self.n_intervals
        if n_pad:
            pad = np.full((n_pad, *values.shape[1:]), np.nan)
            values = np.concatenate([values, pad])
        return values.reshape(len(self.starts), self.size, *values.shape[1:])

    def _reduce(self, func, values: np.ndarray) -> np.ndarray:
        if not self.aggregated:
            return np.asarray(values, dtype=float)
        # An all-NaN bucket (no local trade, unenergised bus) is NaN, not a warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return func(self._blocks(values), axis=1)

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Mean per bucket ignoring NaN, shape (B, ...)."""
        return self._reduce(np.nanmean, values)

    def min(self, values: np.ndarray) -> np.ndarray:
        """Minimum per bucket ignoring NaN, shape (B, ...)."""
        return self._reduce(np.nanmin, values)

    def max(self, values: np.ndarray) -> np.ndarray:
        """Maximum per bucket ignoring NaN, shape (B, ...)."""
        return self._reduce(np.nanmax, values)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Sum per bucket, NaN counted as 0 (for energies), shape (B, ...)."""
        if not self.aggregated:
            return np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)
        return self._reduce(np.nansum, values)


def make_buckets(time_index: pd.DatetimeIndex, dt_h: float, max_points: int = MAX_POINTS
                 ) -> Buckets:
    """The shortest round bucket length that keeps a horizon within ``max_points`` buckets.

    Parameters
    ----------
    time_index : pandas.DatetimeIndex, shape (T,)
        Start of each interval.
    dt_h : float
        Interval length [h].
    max_points : int
        Largest number of buckets.

    Returns
    -------
    Buckets
        ``size == 1`` when the horizon already fits (a day or a week of 15-minute intervals).
    """
    n = len(time_index)
    dt_min = dt_h * 60.0
    size = 1
    if n > max_points:
        for minutes in ROUND_BUCKETS_MIN:
            candidate = int(round(minutes / dt_min))
            if candidate >= 1 and abs(candidate * dt_min - minutes) < 1e-9 and \
                    -(-n // candidate) <= max_points:
                size = candidate
                break
        else:  # longer than the longest round bucket allows: any length that fits
            size = -(-n // max_points)
    return Buckets(size=size, minutes=size * dt_min, starts=pd.DatetimeIndex(time_index[::size]),
                   n_intervals=n)
