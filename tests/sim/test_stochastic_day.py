"""The stochastic community schedule on a SimBench day (lemgrid.sim.stochastic): the schedules
judged on the same profiles, the imbalance recomputed by hand from the batteries' output and
the day-ahead position, and ``lemgrid stochastic`` end to end; on the same day, ``lemgrid
joint-flex`` (lemgrid.sim.joint)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.market.stochastic import recourse, solve_schedule
from lemgrid.scenario import load_scenario
from lemgrid.sim.stochastic import compare_schedules, scenario_days

SCENARIO = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
participants: from-grid
assets:
  - {type: battery, every: 2, capacity_kwh: 8, power_kw: 4}
forecast: {method: noisy, error: 0.3}
settlement: {imbalance_short_eur_per_kwh: 0.60, imbalance_long_eur_per_kwh: 0.0}
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    path = tmp_path_factory.mktemp("stochastic") / "day.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.mark.slow
def test_the_schedules_on_the_same_profiles(scenario):
    loaded = load_scenario(scenario)
    table = compare_schedules(loaded, n_scenarios=8, n_judged=12, risk_weights=(0.0, 0.5, 1.0),
                              alpha=0.75)
    assert list(table.index) == ["deterministic", "stochastic beta=0", "stochastic beta=0.5",
                                 "stochastic beta=1"]
    assert table.loc["stochastic beta=0", "vss_eur"] >= -1e-6  # never negative in sample
    cvars = table.cvar_eur.to_numpy()[1:]
    assert all(b <= a + 1e-6 for a, b in zip(cvars, cvars[1:], strict=False)), cvars
    assert (table.judged_imbalance_kwh > 0).all()
    assert (table.judged_violation_intervals >= 0).all()
    # the imbalance by hand: the community's net import less its day-ahead position
    days = scenario_days(loaded, n_scenarios=8, n_judged=12)
    position = solve_schedule(days["scenarios"]).position_kw
    judged = days["judged"]
    result = recourse(judged, position)
    net_import_kw = (judged.load_kw - judged.pv_kw).sum(axis=2) - result.battery_kw.sum(axis=2)
    deviation_kwh = np.abs(net_import_kw - position[None, :]) * judged.dt_h
    assert result.short_kwh + result.long_kwh == pytest.approx(deviation_kwh.sum(axis=1),
                                                               rel=1e-6, abs=1e-6)
    b = judged.batteries
    assert (np.abs(result.battery_kw) <= b.power_kw + 1e-6).all()


def test_lemgrid_stochastic_writes_the_comparison(scenario, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["stochastic", str(scenario), "--scenarios", "3",
                                      "--judged", "3", "--risk", "0,1", "--out", str(out),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "schedules.csv").set_index("schedule")
    assert list(table.index) == ["deterministic", "stochastic beta=0", "stochastic beta=1"]
    assert "VSS" in result.output


@pytest.mark.parametrize("args, field", [
    (["--risk", "0,2"], "--risk"), (["--risk", "a"], "--risk"), (["--day", "3"], "day")])
def test_bad_options_are_usage_errors(scenario, tmp_path, args, field):
    result = CliRunner().invoke(app, ["stochastic", str(scenario), *args,
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and field in result.output, result.output


def test_joint_energy_and_flexibility_on_the_day(scenario, tmp_path):
    """``lemgrid joint-flex``: the joint clearing of energy and the DSO's 20 kW up and 10 kW
    down over 17:00-21:00 never costs more than the sequential markets; the need it covers is
    the need over the window (16 quarter hours)."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["joint-flex", str(scenario), "--need-up-kw", "20",
                                      "--need-down-kw", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "clearings.csv").set_index("clearing")
    assert table.loc["joint", "system_cost_eur"] <= table.loc["sequential", "system_cost_eur"] \
        + 1e-7
    assert table.need_up_kwh.to_numpy() == pytest.approx(20 * 4)
    assert table.need_down_kwh.to_numpy() == pytest.approx(10 * 4)
    assert (table.held_up_kwh <= table.need_up_kwh + 1e-9).all()
    bad = CliRunner().invoke(app, ["joint-flex", str(scenario), "--window", "17:00",
                                   "--out", str(out)])
    assert bad.exit_code == 2 and "--window" in bad.output
