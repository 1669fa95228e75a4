"""What a user touches in every command: the version, the horizon options, progress bars, and
output that fits a terminal of 80 columns (issue 11 item 7)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from typer.testing import CliRunner

from lemgrid.cli import app


def invoke(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def test_version_is_the_installed_distribution_version():
    result = subprocess.run([sys.executable, "-m", "lemgrid.cli", "--version"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lemgrid {importlib.metadata.version('lemgrid')}"


SCENARIO = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
forecast: {method: noisy, error: 0.2}
market: {design: community}
"""


@pytest.fixture()
def scenario_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SCENARIO))
    return path


def _simulate(scenario_file, out, *args):
    result = invoke("simulate", scenario_file, "--no-report", "--out", out, *args)
    assert result.exit_code == 0, result.output
    return (json.loads((out / "kpis.json").read_text()),
            pd.read_parquet(out / "intervals.parquet"))


@pytest.mark.slow
def test_start_is_the_first_local_instant_of_the_horizon(scenario_file, tmp_path):
    # 2016-03-27 is the spring daylight-saving day in Germany: 23 hours, 92 quarter hours.
    kpis, intervals = _simulate(scenario_file, tmp_path / "a", "--start", "2016-03-27")
    assert intervals.index[0] == pd.Timestamp("2016-03-27 00:00", tz="Europe/Berlin")
    assert len(intervals) == 92 and kpis["intervals"] == 92
    _, intervals = _simulate(scenario_file, tmp_path / "b", "--start", "2016-07-01T06:00",
                             "--days", "0.25")
    assert intervals.index[0] == pd.Timestamp("2016-07-01 06:00", tz="Europe/Berlin")
    assert intervals.index[-1] == pd.Timestamp("2016-07-01 11:45", tz="Europe/Berlin")
    # An instant with a UTC offset is converted to the grid's local time.
    _, intervals = _simulate(scenario_file, tmp_path / "c", "--start", "2016-07-01T04:00Z",
                             "--days", "0.25")
    assert intervals.index[0] == pd.Timestamp("2016-07-01 06:00", tz="Europe/Berlin")


@pytest.mark.slow
def test_seed_draws_the_forecast_errors(scenario_file, tmp_path):
    one, _ = _simulate(scenario_file, tmp_path / "a", "--seed", "1")
    again, _ = _simulate(scenario_file, tmp_path / "b", "--seed", "1")
    other, _ = _simulate(scenario_file, tmp_path / "c", "--seed", "2")
    assert one["imbalance_short_kwh"] == again["imbalance_short_kwh"]
    assert one["imbalance_short_kwh"] != other["imbalance_short_kwh"]


@pytest.mark.parametrize("args, message", [
    (["--start", "2016-13-01"], "--start: not a date"),
    (["--start", "2030-01-01"], "--start 2030-01-01: "),
    (["--start", "2016-06-01T00:07"], "--start 2016-06-01T00:07: "),
    (["--start", "2016-03-27T02:30"], "--start 2016-03-27T02:30: "),  # skipped in spring
    (["--seed", "-1"], "'--seed'"),
    (["--seed", "many"], "'--seed'"),
    (["--days", "nan"], "--days"),
])
def test_bad_start_or_seed_exits_2_naming_the_option(scenario_file, tmp_path, args, message):
    result = invoke("simulate", scenario_file, *args, "--no-report", "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "o").exists()


@pytest.fixture()
def terminal(monkeypatch):
    """stderr as a terminal: what a progress bar draws lands in the returned buffer."""
    import io

    from rich.console import Console

    import lemgrid.cli._app as cli_app

    buffer = io.StringIO()
    monkeypatch.setattr(cli_app, "err_console",
                        Console(file=buffer, force_terminal=True, width=80))
    return buffer


POWERFLOW = ["powerflow", "simbench:1-LV-rural1--0-sw", "--start", "2016-06-01", "--days", "1"]
LONG_COMMANDS = {
    "powerflow": (POWERFLOW, "AC power flow"),
    "simulate": (["simulate", "SCENARIO", "--no-report"], "community: days"),
    "compare": (["compare", "SCENARIO", "--designs", "none,uniform", "--no-report"],
                "uniform: days"),
    "optimize": (["optimize", "SCENARIO"], "one session of"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", LONG_COMMANDS)
def test_long_commands_draw_a_progress_bar_on_a_terminal_only(command, terminal, scenario_file,
                                                              tmp_path):
    args, label = LONG_COMMANDS[command]
    args = [scenario_file if a == "SCENARIO" else a for a in args]
    result = invoke(*args, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    drawn = terminal.getvalue()
    assert label in drawn and "\x1b[" in drawn  # drawn with terminal control sequences
    assert label not in result.output  # ... on stderr, not on stdout

    terminal.seek(0)
    terminal.truncate()
    result = invoke(*args, "--out", tmp_path / "b", "--quiet")
    assert result.exit_code == 0, result.output
    assert terminal.getvalue() == ""


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    # A pipe, as in CI or `lemgrid ... 2> log`: nothing but the result.
    result = subprocess.run([sys.executable, "-m", "lemgrid.cli", *POWERFLOW, "--out",
                             str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "\x1b[" not in result.stdout


@pytest.mark.slow
def test_compare_of_every_design_is_readable_at_80_columns(scenario_file, tmp_path):
    from lemgrid.designs import design_names

    DESIGNS = design_names()
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run([sys.executable, "-m", "lemgrid.cli", "compare", str(scenario_file),
                             "--designs", ",".join(DESIGNS), "--days", "1", "--no-report",
                             "--out", str(tmp_path)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    assert "…" not in result.stdout  # no value or design name cut short
    assert "-0.000" not in result.stdout  # rounding noise is no negative number
    headers = [line.split() for line in lines if line.startswith("KPI ")]
    assert [name for header in headers for name in header[1:]] == list(DESIGNS)
    savings = [line.split()[2:] for line in lines if line.startswith("savings [EUR]")]
    table = pd.read_csv(tmp_path / "comparison.csv")
    shown = [float(v) for row in savings for v in row]
    assert shown == pytest.approx(table.total_savings_eur.tolist(), abs=0.05)
