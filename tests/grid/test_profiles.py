"""SimBench profiles: the year of 2016 at 15 minutes, windows and energy-preserving resampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lemgrid.errors import InputError
from lemgrid.grid.sources import load_grid, load_pandapower_net


@pytest.fixture(scope="module")
def rural():
    return load_grid("simbench:1-LV-rural1--0-sw")


def test_year_of_2016_at_15_minutes(rural):
    index = rural.profiles.time_index
    assert len(index) == 35136  # 366 days x 96
    assert index[0] == pd.Timestamp("2016-01-01 00:00", tz="Europe/Berlin")
    assert index[-1] == pd.Timestamp("2016-12-31 23:45", tz="Europe/Berlin")
    assert rural.profiles.load_p_kw.shape == (35136, len(rural.network.loads))


def test_time_index_is_simbench_local_time_with_daylight_saving(rural):
    """Every row's label equals SimBench's own 'time' column (German local time): 92 rows on
    27 March (01:45 then 03:00), 100 on 30 October (02:00-02:45 twice)."""
    net = load_pandapower_net("simbench:1-LV-rural1--0-sw")
    labels = net.profiles["load"]["time"].to_numpy(dtype=str)
    index = rural.profiles.time_index
    assert (index.strftime("%d.%m.%Y %H:%M") == labels).all()
    per_day = pd.Series(1, index=index).groupby(index.date).size()
    assert per_day[pd.Timestamp("2016-03-27").date()] == 92
    assert per_day[pd.Timestamp("2016-10-30").date()] == 100
    assert set(per_day.drop([pd.Timestamp("2016-03-27").date(),
                             pd.Timestamp("2016-10-30").date()])) == {96}
    # Consecutive rows are 15 real minutes apart, across both changes.
    assert (np.diff(index.asi8) == 15 * 60 * 10**9).all()


def test_cache_keeps_the_time_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("LEMGRID_CACHE_DIR", str(tmp_path))
    first = load_grid("simbench:1-LV-rural1--0-sw")  # converts and writes the cache
    again = load_grid("simbench:1-LV-rural1--0-sw")  # reads it
    assert list(tmp_path.glob("grids/*.npz"))
    assert again.profiles.time_index.equals(first.profiles.time_index)
    assert str(again.profiles.time_index.tz) == "Europe/Berlin"


def test_window_reads_start_in_local_time(rural):
    summer = rural.profiles.window("2016-07-01", 1)
    assert summer.time_index[0] == pd.Timestamp("2016-07-01 00:00+02:00")
    assert len(summer.time_index) == 96
    aware = rural.profiles.window(pd.Timestamp("2016-06-30 22:00", tz="UTC"), 1)
    assert aware.time_index[0] == summer.time_index[0]
    assert len(rural.profiles.window("2016-03-27", 1).time_index) == 92
    assert len(rural.profiles.window("2016-10-30", 1).time_index) == 100


@pytest.mark.parametrize("start, message", [
    ("2016-03-27 02:30", "does not exist in Europe/Berlin"),
    ("2016-10-30 02:30", "happens twice"),
    ("notadate", "must be a date"),
])
def test_window_refuses_local_times_that_do_not_exist(rural, start, message):
    with pytest.raises(InputError, match=message):
        rural.profiles.window(start, 1)


def test_profiles_equal_simbench_absolute_values(rural):
    """Independent path: simbench's own get_absolute_values on the pandapower net."""
    import simbench as sb

    net = load_pandapower_net("simbench:1-LV-rural1--0-sw")
    absolute = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    np.testing.assert_allclose(rural.profiles.load_p_kw, absolute[("load", "p_mw")].to_numpy() * 1e3)
    np.testing.assert_allclose(rural.profiles.sgen_p_kw, absolute[("sgen", "p_mw")].to_numpy() * 1e3)


@pytest.mark.parametrize("resolution, factor", [("60min", 4), ("30min", 2), ("5min", 1 / 3)])
def test_resampling_keeps_energy(rural, resolution, factor):
    day = rural.profiles.window("2016-07-01", 1)
    resampled = day.resample(resolution)
    assert len(resampled.time_index) == int(96 / factor)
    assert resampled.dt_h == pytest.approx(0.25 * factor)
    for name in ("load_p_kw", "sgen_p_kw"):
        np.testing.assert_allclose(getattr(resampled, name).sum(axis=0) * resampled.dt_h,
                                   getattr(day, name).sum(axis=0) * day.dt_h)


def test_hourly_values_are_means_of_quarter_hours(rural):
    day = rural.profiles.window("2016-03-10", 1)
    hourly = day.resample("60min")
    np.testing.assert_allclose(hourly.load_p_kw[5], day.load_p_kw[20:24].mean(axis=0))


def test_window_outside_the_year_is_an_error(rural):
    with pytest.raises(InputError, match="outside"):
        rural.profiles.window("2017-01-02", 1)
    with pytest.raises(InputError, match="ends after"):
        rural.profiles.window("2016-12-31", 2)


def test_unknown_grid_specs_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="did you mean 1-LV-rural1--0-sw"):
        load_grid("simbench:1-LV-rurl1--0-sw")
    with pytest.raises(InputError, match="unknown grid"):
        load_grid("ieee34")
    with pytest.raises(FileNotFoundError):
        load_grid(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a pandapower JSON"):
        load_grid(str(bad))


def test_pandapower_json_round_trip(tmp_path):
    """A pandapower JSON file loads into the same network as the original net."""
    import pandapower as pp
    import pandapower.networks as pn

    net = pn.case33bw()
    path = tmp_path / "case33.json"
    pp.to_json(net, str(path))
    grid = load_grid(str(path))
    assert grid.profiles is None
    assert grid.network.n_bus == 33
    assert grid.network.loads.p_kw.sum() == pytest.approx(3715.0)
