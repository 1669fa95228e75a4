"""Time buckets against pandas' own resampling (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lemgrid.report.resample import MAX_POINTS, ROUND_BUCKETS_MIN, make_buckets


@pytest.mark.parametrize("minutes, days, size, n_buckets", [
    (15, 1, 1, 96),             # a day: every interval
    (15, 7, 1, 672),            # a week: every interval
    (15, 366, 24, 1464),        # a leap year at 15 min: 6-hour buckets
    (5, 366, 72, 1464),         # ... at 5 min
    (60, 366, 6, 1464),         # ... hourly
])
def test_bucket_length_is_the_shortest_round_one_that_fits(minutes, days, size, n_buckets):
    index = pd.date_range("2016-01-01", periods=int(days * 1440 / minutes), freq=f"{minutes}min")
    b = make_buckets(index, minutes / 60)
    assert (b.size, len(b.starts)) == (size, n_buckets)
    assert len(b.starts) <= MAX_POINTS


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 3000), max_points=st.integers(5, 400))
def test_aggregates_equal_pandas_resample(data, n, max_points):
    index = pd.date_range("2016-03-01", periods=n, freq="15min")
    values = data.draw(hnp.arrays(np.float64, n, elements=st.one_of(
        st.floats(-1e3, 1e3), st.just(np.nan))))
    b = make_buckets(index, 0.25, max_points)
    assert len(b.starts) <= max_points
    if b.aggregated:
        assert b.minutes in ROUND_BUCKETS_MIN
    assert b.starts[0] == index[0]
    series = pd.Series(values, index=index)
    resampled = series.resample(f"{b.minutes:g}min", origin="start")
    np.testing.assert_array_equal(b.starts, resampled.mean().index)
    np.testing.assert_allclose(b.mean(values), resampled.mean().to_numpy(), rtol=1e-12,
                               atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(b.min(values), resampled.min().to_numpy())
    np.testing.assert_array_equal(b.max(values), resampled.max().to_numpy())
    np.testing.assert_allclose(b.sum(values), resampled.sum().to_numpy(), rtol=1e-12, atol=1e-9)


def test_two_dimensional_values_are_bucketed_per_column():
    index = pd.date_range("2016-01-01", periods=35136, freq="15min")
    rng = np.random.default_rng(1)
    values = rng.normal(1.0, 0.02, size=(35136, 3))
    b = make_buckets(index, 0.25)
    frame = pd.DataFrame(values, index=index).resample("6h")
    np.testing.assert_allclose(b.max(values), frame.max().to_numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(b.mean(values), frame.mean().to_numpy(), rtol=1e-12)
