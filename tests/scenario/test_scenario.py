"""Scenario files: the documented keys, participants from the grid, and bad input."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.errors import InputError
from lemgrid.grid.sources import load_grid
from lemgrid.scenario import build_scenario, load_scenario, parse_scenario

RURAL = "simbench:1-LV-rural1--0-sw"


def write(tmp_path, text: str, name: str = "scenario.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_examples_load(examples_dir):
    paths = sorted(examples_dir.glob("*.yaml"))
    assert paths
    for path in paths:
        scenario = load_scenario(path)
        assert len(scenario.participants) > 0
        assert scenario.participants.load_p_kw.shape == (len(scenario.time_index),
                                                         len(scenario.participants))


def test_from_grid_one_participant_per_load_with_pv_split_equally():
    config = parse_scenario(f"grid: {RURAL}\nstart: 2016-06-01\ndays: 1\n")
    scenario = build_scenario(config)
    grid = load_grid(RURAL)
    net, parts = grid.network, scenario.participants
    assert list(parts.ids) == list(net.loads.names)
    day = grid.profiles.window("2016-06-01", 1)
    # Every load's profile is its participant's; the PV of a bus is split among its loads.
    np.testing.assert_allclose(parts.load_p_kw, day.load_p_kw)
    expected_pv = np.zeros_like(parts.pv_p_kw)
    for j, bus in enumerate(net.sgens.bus):
        owners = np.flatnonzero(net.loads.bus == bus)
        expected_pv[:, owners] += day.sgen_p_kw[:, [j]] / len(owners)
    np.testing.assert_allclose(parts.pv_p_kw, expected_pv)
    # Nothing is left in the background, and the energy of the grid is conserved.
    assert not scenario.background_p_kw.any()
    assert parts.pv_p_kw.sum() == pytest.approx(day.sgen_p_kw.sum())


def test_scale_assets_and_explicit_participants(tmp_path):
    grid = load_grid(RURAL)
    load0, load1 = grid.network.loads.names[:2]
    bus0 = grid.network.bus_names[grid.network.loads.bus[0]]
    path = write(tmp_path, f"""
        grid: {RURAL}
        start: 2016-06-01
        days: 2
        resolution: 60min
        participants:
          - id: alice
            bus: "{bus0}"
            loads: ["{load0}"]
            pv_kwp: 5
            assets:
              - {{type: battery, capacity_kwh: 8, power_kw: 4}}
          - id: bob
            bus: "{bus0}"
            load: {{profile: H0-B, annual_kwh: 3500}}
        assets:
          - {{type: ev, owner: bob, power_kw: 11, energy_kwh: 10, arrival: "18:00", departure: "07:00"}}
        scale: {{pv: 2.0, load: 0.5}}
        """)
    scenario = load_scenario(path)
    parts = scenario.participants
    assert list(parts.ids) == ["alice", "bob"]
    assert len(scenario.time_index) == 48 and scenario.dt_h == 1.0
    # alice: her grid load at half scale; bob: 3500 kWh/a of H0-B at half scale.
    day = grid.profiles.window("2016-06-01", 2).resample("60min")
    np.testing.assert_allclose(parts.load_p_kw[:, 0], 0.5 * day.load_p_kw[:, 0])
    assert parts.batteries.owner.tolist() == [0]
    assert parts.batteries.eta_charge[0] ** 2 == pytest.approx(0.9)
    # Three EV windows touch the two days: the evening of day 1 and 2, and the night before.
    windows = parts.windows
    assert list(windows.owner) == [1, 1, 1]
    assert windows.start.tolist() == [0, 18, 42] and windows.stop.tolist() == [7, 31, 48]
    np.testing.assert_allclose(windows.energy_kwh, [10 * 7 / 13, 10, 10 * 6 / 13])
    # The other loads and all grid PV stay in the grid as background.
    expected = 2.0 * day.sgen_p_kw.sum(axis=1) - 0.5 * day.load_p_kw[:, 1:].sum(axis=1)
    np.testing.assert_allclose(scenario.background_p_kw.sum(axis=1), expected)


def test_ieee33_runs_on_standard_profiles(tmp_path):
    path = write(tmp_path, "grid: ieee33\ndays: 1\nstart: 2016-01-15\n")
    scenario = load_scenario(path)
    assert len(scenario.participants) == 32  # one per load; bus 1 is the substation
    peak = scenario.participants.load_p_kw.sum(axis=1).max()
    assert 0 < peak <= 3715.0  # H0-A peaks at 1.0 x the nominal 3715 kW some day of the year


BAD = [
    ("days: abc\n", r"line 3: days: Input should be a valid number"),
    ("days: -2\n", r"line 3: days: Input should be greater than 0"),
    ("assets:\n  - {type: battery, every: 2, capacity_kwh: -5, power_kw: 3}\n",
     r"line 4: assets\[0\].capacity_kwh: Input should be greater than 0 \(got -5\)"),
    ("assets:\n  - {type: battery, bus: 'no such bus', capacity_kwh: 5, power_kw: 3}\n",
     r"line 4: assets\[0\].bus: unknown bus 'no such bus'"),
    ("assets:\n  - {type: heatpump, every: 2}\n", r"line 4: assets\[0\]"),
    ("colour: blue\n", r"line 3: colour: Extra inputs are not permitted"),
    ("resolution: 7min\n", r"line 3: resolution"),
    ("market: {design: magic}\n", r"line 3: market.design"),
    ("grid_limits: {vm_min_pu: 1.1, vm_max_pu: 0.9}\n", r"vm_min_pu \(1.1\) must be < vm_max_pu"),
    ("start: 2016-06-01\nstart: 2016-06-02\n", r"line 4: malformed YAML: duplicate key 'start'"),
    ("days: [1\n", r"malformed YAML"),
    ("assets:\n  - {type: ev, every: 1, power_kw: 2, energy_kwh: 30, arrival: '18:00', "
     "departure: '20:00'}\n", r"assets\[0\].energy_kwh: ev .* cannot be delivered"),
    ("assets:\n  - {type: ev, every: 1, power_kw: 2, energy_kwh: 3, arrival: '25:00'}\n",
     r"assets\[0\].arrival: time of day must look like HH:MM"),
    ("start: 2017-03-01\n", r"start: start 2017-03-01 00:00:00\+01:00 is outside the profiles"),
]


@pytest.mark.parametrize("extra, message", BAD)
def test_bad_input_names_field_and_line(tmp_path, extra, message):
    path = write(tmp_path, f"# comment\ngrid: {RURAL}\n" + extra)
    with pytest.raises(InputError, match=message):
        load_scenario(path)


def test_bad_scenario_exits_non_zero_from_cli(tmp_path):
    path = write(tmp_path, f"grid: {RURAL}\ndays: abc\n")
    result = CliRunner().invoke(app, ["powerflow", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "days" in result.output and "line 2" in result.output
    missing = CliRunner().invoke(app, ["powerflow", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.output
