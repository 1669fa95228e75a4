"""``lemgrid simulate`` and ``lemgrid compare`` end to end, and their bad input."""

from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.sim.results import BILL_COLUMNS


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_simulate_default_scenario_writes_everything(tmp_path):
    result = invoke("simulate", "--days", "2", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    kpis = json.loads((tmp_path / "kpis.json").read_text())
    bills = pd.read_csv(tmp_path / "bills.csv")
    intervals = pd.read_parquet(tmp_path / "intervals.parquet")
    assert tuple(bills.columns) == BILL_COLUMNS
    assert len(intervals) == 192 and kpis["design"] == "community"
    assert bills.savings_eur.sum() == pytest.approx(kpis["total_savings_eur"])
    assert "total_savings_eur" in kpis and abs(kpis["budget_gap_eur"]) < 0.005
    html = (tmp_path / "report.html").read_text()
    assert "plotly" in html and "savings" in html.lower()
    assert "savings" in result.output


@pytest.mark.slow
def test_compare_writes_one_row_per_design(tmp_path, examples_dir):
    result = invoke("compare", examples_dir / "lv-rural-community.yaml", "--designs",
                    "none,uniform,community", "--days", "1", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "comparison.csv")
    assert table.design.tolist() == ["none", "uniform", "community"]
    for column in ("total_savings_eur", "share_better_off", "gini_savings", "self_sufficiency",
                   "peak_import_kw", "losses_kwh", "voltage_violation_intervals"):
        assert column in table.columns
    assert (tmp_path / "report.html").stat().st_size > 1e5
    assert (tmp_path / "uniform" / "bills.csv").exists()


@pytest.mark.parametrize("extra, args, message", [
    ("", ["--design", "barter"], "unknown market design 'barter'"),
    ("agents: {default: psychic}\n", [], "agents.default"),
    ("agents: {by_participant: {nobody: zip}}\n", [], "unknown participant 'nobody'"),
    ("assets:\n  - {type: battery, bus: 'Bus 99', capacity_kwh: 5, power_kw: 2}\n", [],
     "unknown bus 'Bus 99'"),
    ("market: {design: p2p, intraday: true}\n", [], "market.intraday"),
])
def test_bad_scenario_input_exits_2(tmp_path, extra, args, message):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""
        grid: simbench:1-LV-rural1--0-sw
        start: 2016-06-06
        days: 1
        """) + extra)
    result = invoke("simulate", path, *args, "--no-report", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_compare_rejects_unknown_design(tmp_path):
    result = invoke("compare", "--designs", "none,magic", "--out", tmp_path)
    assert result.exit_code == 2 and "magic" in result.output
