"""``lemgrid optimize`` end to end: the files of the issue, for community (with and without grid
limits) and P2P."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lemgrid.cli import app

SCENARIO = """
grid: simbench:1-LV-rural1--0-sw
start: 2016-06-06
days: 1
scale: {pv: 6.0}
assets:
  - {type: battery, every: 3, capacity_kwh: 10, power_kw: 5}
market: {design: community}
"""


@pytest.fixture()
def scenario_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SCENARIO))
    return path


def run(args):
    result = CliRunner().invoke(app, ["optimize", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def test_community_constrained_files(scenario_file, tmp_path):
    out = tmp_path / "c"
    run([scenario_file, "--network", "constrained", "--out", out])
    schedule = pd.read_parquet(out / "schedule.parquet")
    participants = pd.read_csv(out / "participants.csv")
    prices = pd.read_parquet(out / "prices.parquet")
    components = pd.read_parquet(out / "dlmp_components.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert list(schedule.columns) == participants["id"].tolist()
    assert len(schedule) == 96 and schedule.index.name == "interval"
    assert list(components.columns) == ["interval", "bus", "energy", "loss", "congestion",
                                        "voltage"]
    assert len(components) == 96 * prices.shape[1]
    total = components[["energy", "loss", "congestion", "voltage"]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, prices.to_numpy().ravel(), atol=1e-9)
    assert summary["ac_overload_intervals"] == 0 and summary["ac_voltage_violation_intervals"] == 0
    assert summary["unconstrained_max_loading_excess_percent"] > 1
    for key in ("welfare_eur", "solve_seconds", "iterations"):
        assert key in summary


def test_community_unconstrained_has_one_price(scenario_file, tmp_path):
    out = tmp_path / "u"
    run([scenario_file, "--out", out])
    prices = pd.read_parquet(out / "prices.parquet")
    assert (prices.nunique(axis=1) == 1).all()
    assert not (out / "dlmp_components.parquet").exists()


def test_p2p_trades_and_gap(scenario_file, tmp_path):
    out = tmp_path / "p"
    run([scenario_file, "--design", "p2p", "--out", out])
    trades = pd.read_parquet(out / "trades.parquet")
    assert list(trades.columns) == ["interval", "seller", "buyer", "quantity_kwh",
                                    "price_eur_per_kwh"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gap_to_central"] < 1e-3
    assert summary["local_traded_kwh"] > 0
    schedule = pd.read_parquet(out / "schedule.parquet")
    # Every participant's net injection is what it sold minus what it bought.
    sold = trades.groupby("seller").quantity_kwh.sum()
    bought = trades.groupby("buyer").quantity_kwh.sum()
    for pid in schedule.columns:
        net_kwh = schedule[pid].sum() * 0.25
        assert net_kwh == pytest.approx(sold.get(pid, 0.0) - bought.get(pid, 0.0), abs=1e-3)


@pytest.mark.parametrize("args, message", [
    (["--design", "uniform"], "--design must be one of"),
    (["--network", "sometimes"], "--network must be"),
    (["--design", "p2p", "--network", "constrained"], "p2p design clears without grid limits"),
])
def test_bad_options_exit_2(scenario_file, tmp_path, args, message):
    result = CliRunner().invoke(app, ["optimize", str(scenario_file), *args, "--out",
                                      str(tmp_path / "x")])
    assert result.exit_code == 2
    assert message in result.output


def test_unknown_market_option_is_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SCENARIO).replace(
        "market: {design: community}", "market: {design: community, curtailment: 3}"))
    result = CliRunner().invoke(app, ["optimize", str(path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "market.curtailment" in result.output
