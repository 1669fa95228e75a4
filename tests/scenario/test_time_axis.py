"""The time axis: SimBench's profiles are German local time with daylight saving, and every clock
time of a scenario (start, EV arrival, windows, DSO requests, reservations) is read on that clock.

The reference is SimBench's own 'time' column: the label of the profile row that lemgrid puts at
an interval must be the local time lemgrid says the interval starts at.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lemgrid.assets.tables import daily_windows
from lemgrid.errors import InputError
from lemgrid.grid.profiles import clock_h, in_daily_window
from lemgrid.grid.sources import load_grid, load_pandapower_net
from lemgrid.scenario import build_scenario, parse_scenario
from lemgrid.sim.runner import day_bounds

RURAL = "simbench:1-LV-rural1--0-sw"
BERLIN = "Europe/Berlin"


@pytest.fixture(scope="module")
def simbench_rows():
    """SimBench's own row labels and the lemgrid grid's load profiles (same rows)."""
    labels = load_pandapower_net(RURAL).profiles["load"]["time"].to_numpy(dtype=str)
    return labels, load_grid(RURAL).profiles.load_p_kw


def scenario(extra: str):
    return build_scenario(parse_scenario(f"grid: {RURAL}\n{extra}"))


@pytest.mark.parametrize("start", ["2016-01-15 06:00", "2016-07-01 06:00", "2016-10-30 00:00",
                                   "2016-03-27 00:00", "2016-12-31 18:00"])
def test_scenario_interval_holds_the_simbench_row_of_its_local_time(simbench_rows, start):
    """Summer intervals used to take the row one hour later (rows were counted from 1 January
    at 15 minutes, ignoring the hour skipped on 27 March)."""
    labels, load = simbench_rows
    s = scenario(f"start: {start}\ndays: 0.25\n")
    assert str(s.time_index.tz) == BERLIN
    for k in (0, len(s.time_index) - 1):
        label = s.time_index[k].strftime("%d.%m.%Y %H:%M")
        rows = np.flatnonzero(labels == label)
        row = rows[0] if k == 0 else rows[-1]  # 02:xx on 30 October exists twice
        np.testing.assert_allclose(s.participants.load_p_kw[k], load[row], rtol=1e-12)


def test_aware_start_is_converted_to_local_time():
    naive = scenario("start: 2016-07-01 06:00\ndays: 1\n")
    aware = scenario("start: '2016-07-01T04:00:00+00:00'\ndays: 1\n")
    assert aware.time_index.equals(naive.time_index)
    assert naive.time_index[0] == pd.Timestamp("2016-07-01 06:00", tz=BERLIN)


def test_days_are_local_calendar_days():
    s = scenario("start: 2016-03-26\ndays: 3\n")
    assert [b - a for a, b in day_bounds(s)] == [96, 92, 96]
    autumn = scenario("start: 2016-10-29\ndays: 2\n")
    assert [b - a for a, b in day_bounds(autumn)] == [96, 100]
    assert autumn.time_index[-1] == pd.Timestamp("2016-10-30 23:45", tz=BERLIN)


def test_ev_arrives_at_local_clock_time_all_year():
    s = scenario("start: 2016-03-25\ndays: 220\nassets:\n"
                 "  - {type: ev, every: 1, power_kw: 11, energy_kwh: 10, arrival: '18:00', "
                 "departure: '07:00'}\n")
    windows = s.participants.windows
    mine = windows.owner == 0
    opens = s.time_index[windows.start[mine]]
    closes = s.time_index[windows.stop[mine] - 1] + pd.Timedelta(minutes=15)
    whole = (windows.start[mine] > 0) & (windows.stop[mine] < len(s.time_index))
    assert set(opens[whole].strftime("%H:%M")) == {"18:00"}
    assert set(closes[whole].strftime("%H:%M")) == {"07:00"}
    length_h = (windows.stop[mine] - windows.start[mine]) * 0.25
    night_of = pd.Index(opens.date)
    # The night into 27 March is an hour short, the night into 30 October an hour long.
    assert length_h[night_of == pd.Timestamp("2016-03-26").date()].tolist() == [12.0]
    assert length_h[night_of == pd.Timestamp("2016-10-29").date()].tolist() == [14.0]
    assert set(length_h[whole & (night_of != pd.Timestamp("2016-03-26").date())
                        & (night_of != pd.Timestamp("2016-10-29").date())]) == {13.0}
    # Each whole night's session asks for the whole energy, whatever its length.
    np.testing.assert_allclose(windows.energy_kwh[mine][whole], 10.0)


def test_daily_windows_cut_by_the_horizon_take_their_share():
    index = pd.date_range(pd.Timestamp("2016-07-01 20:00", tz=BERLIN), periods=8, freq="15min")
    (start, stop, fraction), = daily_windows(index, 18.0, 7.0)
    assert (start, stop) == (0, 8)
    assert fraction == pytest.approx(2 / 13)


def test_clock_of_intervals_is_local():
    index = pd.date_range(pd.Timestamp("2016-03-27 01:30", tz=BERLIN), periods=4, freq="15min")
    np.testing.assert_allclose(clock_h(index), [1.5, 1.75, 3.0, 3.25])
    assert in_daily_window(clock_h(index), 3.0, 4.0).tolist() == [False, False, True, True]
    assert in_daily_window(np.array([23.0, 1.0, 12.0]), 22.0, 6.0).tolist() == [True, True, False]


def test_dso_request_windows_are_local_clock_times():
    """A TSO request from 11:00 to 15:00 is 16 intervals whose local clock reads 11:00-14:45,
    in summer as in winter."""
    from lemgrid.dso.operator import DsoOperator
    from lemgrid.session import DayAheadSession

    text = ("start: {start}\ndays: 1\nmarket: {{design: uniform}}\ndso:\n  coordination:\n"
            "    scheme: local-first\n    tso_requests:\n"
            "      - {{from: '11:00', to: '15:00', direction: down, kw: 5}}\n")
    for start in ("2016-01-20", "2016-07-20"):
        s = scenario(text.format(start=start))
        dso = DsoOperator(s, s.config.dso, np.random.default_rng(0))
        session = DayAheadSession(scenario=s, start=0, stop=len(s.time_index), load_kw=None, pv_kw=None,
                          prices=None, agents=None, rng=None,
                          zip_traders=None, price_forecast=None, background_p_kw=None,
                          q_kvar=None)
        requests = dso._requests(s.config.dso.coordination.tso_requests, "TSO", session, "x")
        hours = s.time_index[requests.interval].strftime("%H:%M")
        assert len(requests.interval) == 16
        assert hours[0] == "11:00" and hours[-1] == "14:45"


BAD_HORIZONS = [
    ("start: 0\n", r"start: start must be a date"),
    ("start: 2016-06-01 00:07\n", r"line 2: start: .* not on a 15-minute boundary"),
    ("start: 2016-03-27 02:30\n", r"start: .* does not exist in Europe/Berlin"),
    ("start: 2016-10-30 02:30\n", r"start: .* happens twice"),
    ("days: 1e300\n", r"line 2: days: days 1e\+300 reaches beyond any profile"),
    ("start: 2016-12-31\ndays: 2\n", r"line 3: days: .* ends after the profiles end"),
    ("days: 0.3\n", r"line 2: days: 0.3 days is not a whole number of 15-minute intervals"),
]


@pytest.mark.parametrize("extra, message", BAD_HORIZONS)
def test_bad_horizon_names_its_field(tmp_path, extra, message):
    from lemgrid.scenario import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text(f"grid: {RURAL}\n{extra}")
    with pytest.raises(InputError, match=message):
        load_scenario(path)


def test_price_forecast_carries_prices_by_local_clock_time():
    from lemgrid.sim.runner import same_clock_time

    s = scenario("start: 2016-03-26\ndays: 2\n")
    (a, b), (c, d) = day_bounds(s)
    today = np.arange(b - a, dtype=float)  # value = interval of 26 March
    carried = same_clock_time(s.time_index, (a, b), (c, d), today)
    assert len(carried) == 92
    hours = s.time_index[c:d].strftime("%H:%M")
    assert carried[list(hours).index("03:00")] == 12.0  # 03:00 on 26 March is its 13th interval
    assert carried[list(hours).index("23:45")] == 95.0
