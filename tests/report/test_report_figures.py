"""The plots show the data they claim to: checked against pandas' resampling of the same arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lemgrid.report import figures


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_price_figure_keeps_gaps_and_draws_the_tariffs(rural_result):
    r = rural_result
    fig = figures.price_figure(r.time_index, r.dt_h, {r.design: r.price_eur_per_kwh}, r.tariffs)
    price = np.asarray(_trace(fig, r.design).y, dtype=float)
    np.testing.assert_array_equal(price, r.price_eur_per_kwh)   # one point per interval
    assert np.isnan(price).any() and np.isfinite(price).any()
    retail = r.tariffs["import_eur_per_kwh"] + r.tariffs["network_eur_per_kwh"]
    levels = {t.name.split(":")[0]: t.y[0] for t in fig.data if t.name != r.design}
    assert levels == {"retail (import + network)": retail,
                      "feed-in tariff": r.tariffs["export_eur_per_kwh"]}


def test_price_figure_without_any_trade_says_so(rural_results):
    r = rural_results[1]
    assert np.isnan(r.price_eur_per_kwh).all()
    fig = figures.price_figure(r.time_index, r.dt_h, {r.design: r.price_eur_per_kwh}, r.tariffs)
    assert any("no local trade" in a.text for a in fig.layout.annotations)


def test_hourly_buckets_match_pandas(rural_result):
    r = rural_result
    hours = 48   # 192 intervals into at most 48 points: 1-hour buckets
    frame = pd.DataFrame({"p": r.transformer_p_kw, "v": r.local_volume_kwh,
                          "price": r.price_eur_per_kwh}, index=r.time_index).resample("1h")
    fig = figures.transformer_figure(r.time_index, r.dt_h, {"x": r.transformer_p_kw},
                                     max_points=hours)
    np.testing.assert_allclose(np.asarray(_trace(fig, "x").y, float), frame["p"].mean())
    band = [t for t in fig.data if t.legendgroup == "x" and t.name != "x"]
    np.testing.assert_allclose(np.asarray(band[0].y, float), frame["p"].min())
    np.testing.assert_allclose(np.asarray(band[1].y, float), frame["p"].max())
    fig = figures.volume_figure(r.time_index, r.dt_h, {"x": r.local_volume_kwh}, max_points=hours)
    np.testing.assert_allclose(np.asarray(fig.data[0].y, float), frame["v"].sum())
    fig = figures.price_figure(r.time_index, r.dt_h, {"x": r.price_eur_per_kwh}, r.tariffs,
                               max_points=hours)
    np.testing.assert_allclose(np.asarray(_trace(fig, "x").y, float), frame["price"].mean(),
                               equal_nan=True)


def test_heatmap_shows_the_worse_of_bucket_min_and_max_per_bus(rural_result):
    r = rural_result
    fig = figures.voltage_heatmap_figure(r.time_index, r.dt_h, r.vm_pu, r.bus_names, r.limits,
                                         max_points=48)
    heat = fig.data[0]
    z = np.asarray(heat.z, dtype=float)
    assert z.shape == (len(r.bus_names), 48)
    frame = pd.DataFrame(r.vm_pu, index=r.time_index, columns=r.bus_names).resample("1h")
    lo, hi = frame.min(), frame.max()
    for row, bus in enumerate(heat.y):
        expected = np.where(np.abs(hi[bus] - 1) >= np.abs(lo[bus] - 1), hi[bus], lo[bus])
        np.testing.assert_allclose(z[row], expected, atol=1e-6)   # float32


def test_heatmap_sorts_buses_by_name_naturally(rural_result):
    r = rural_result
    # Given in reverse order, the rows come back as "Bus 1, Bus 2, ..., Bus 14", then the MV bus.
    fig = figures.voltage_heatmap_figure(r.time_index, r.dt_h, r.vm_pu[:, ::-1],
                                         r.bus_names[::-1], r.limits)
    expected = [f"LV1.101 Bus {k}" for k in range(1, 15)] + ["MV1.101 Bus 4"]
    assert list(fig.data[0].y) == expected
    column = {str(b): j for j, b in enumerate(r.bus_names)}
    np.testing.assert_allclose(np.asarray(fig.data[0].z, float),
                               r.vm_pu[:, [column[b] for b in expected]].T, atol=1e-6)


def test_envelope_is_min_and_max_over_buses_with_the_limits(rural_result):
    r = rural_result
    fig = figures.voltage_envelope_figure(r.time_index, r.dt_h, {"x": r.vm_pu}, r.limits)
    high, low = fig.data
    assert high.line.dash == "solid" and low.line.dash == "dash"
    np.testing.assert_allclose(np.asarray(high.y, float), r.vm_pu.max(axis=1))
    np.testing.assert_allclose(np.asarray(low.y, float), r.vm_pu.min(axis=1))
    assert sorted(s.y0 for s in fig.layout.shapes) == [r.limits["vm_min_pu"],
                                                       r.limits["vm_max_pu"]]


def test_savings_sorted_and_coloured_by_sign():
    savings = pd.Series([3.0, -1.0, 0.5], index=["a", "b", "c"])
    bar = figures.savings_figure({"d": savings}).data[0]
    assert list(bar.x) == ["b", "c", "a"]
    np.testing.assert_array_equal(bar.y, [-1.0, 0.5, 3.0])
    assert bar.marker.color[0] != bar.marker.color[2]
    grouped = figures.savings_figure({"d": savings, "e": savings * 0 + 1.0})
    assert [t.name for t in grouped.data] == ["d", "e"]
    assert list(grouped.data[0].x) == ["b", "c", "a"]   # by mean over designs


def test_heatmap_leaves_out_buses_that_are_never_energised(rural_result):
    r = rural_result
    vm = r.vm_pu.copy()
    vm[:, 3] = np.nan
    vm[:10, 4] = np.nan   # partly missing stays
    fig = figures.voltage_heatmap_figure(r.time_index, r.dt_h, vm, r.bus_names, r.limits)
    assert str(r.bus_names[3]) not in fig.data[0].y
    assert str(r.bus_names[4]) in fig.data[0].y


def test_envelope_marks_intervals_without_a_power_flow_in_every_bucket(rural_result):
    """An interval whose power flow did not converge (no voltages) is a marker of its own, also
    when a bucket of many intervals holds it: the other intervals' extremes never hide it."""
    r = rural_result
    vm = r.vm_pu.copy()
    vm[[5, 100]] = np.nan
    fig = figures.voltage_envelope_figure(r.time_index, r.dt_h, {"x": vm}, r.limits,
                                          max_points=24)   # 2-hour buckets of 8 intervals
    high, low, failed = fig.data
    assert failed.name == "x: power flow did not converge" and failed.mode == "markers"
    starts = pd.DatetimeIndex(high.x)
    assert list(pd.DatetimeIndex(failed.x)) == [starts[5 // 8], starts[100 // 8]]
    assert np.isfinite(np.asarray(high.y, float)).all()   # the buckets still have extremes
    converged = figures.voltage_envelope_figure(r.time_index, r.dt_h, {"x": r.vm_pu}, r.limits)
    assert len(converged.data) == 2
