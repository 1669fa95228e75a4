"""``lemgrid optimize`` end to end: one session over the horizon with the files of ``simulate``,
for community (with and without grid limits) and P2P."""

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
    run([scenario_file, "--network", "constrained", "--out", out, "--no-report"])
    kpis = json.loads((out / "kpis.json").read_text())
    bills = pd.read_csv(out / "bills.csv")
    intervals = pd.read_parquet(out / "intervals.parquet")
    components = pd.read_parquet(out / "dlmp_components.parquet")
    assert kpis["design"] == "community-constrained" and kpis["intervals"] == 96
    assert list(components.columns) == ["interval", "bus", "dlmp_eur_per_kwh", "energy_eur_per_kwh",
                                        "loss_eur_per_kwh", "congestion_eur_per_kwh",
                                        "voltage_eur_per_kwh"]
    buses = components.bus.nunique()
    assert len(components) == 96 * buses
    parts = [f"{c}_eur_per_kwh" for c in ("energy", "loss", "congestion", "voltage")]
    np.testing.assert_allclose(components[parts].sum(axis=1), components.dlmp_eur_per_kwh,
                               atol=1e-9)
    # The clearing's schedule is within the limits in AC; without them the feeder overloads.
    assert kpis["scheduled_overload_intervals"] == 0
    assert kpis["scheduled_voltage_violation_intervals"] == 0
    assert intervals["unconstrained_loading_excess_percent"].max() > 1
    assert (intervals["ac_iterations"] >= 1).all()
    # Congestion is priced: some bus pays more than the energy price in some interval.
    assert components.congestion_eur_per_kwh.abs().max() > 1e-4
    # The manager's benefit sharing: no member pays more than alone.
    assert (bills.savings_eur >= -1e-6).all()


def test_community_unconstrained_has_no_dlmps(scenario_file, tmp_path):
    out = tmp_path / "u"
    run([scenario_file, "--out", out, "--no-report"])
    assert json.loads((out / "kpis.json").read_text())["design"] == "community"
    assert not (out / "dlmp_components.parquet").exists()
    assert (out / "kpis.json").exists() and (out / "intervals.parquet").exists()


def test_p2p_trades_and_gap(scenario_file, tmp_path):
    out = tmp_path / "p"
    run([scenario_file, "--design", "p2p", "--out", out])
    trades = pd.read_parquet(out / "p2p_trades.parquet")
    assert list(trades.columns) == ["interval", "seller", "buyer", "quantity_kwh",
                                    "price_eur_per_kwh"]
    intervals = pd.read_parquet(out / "intervals.parquet")
    assert intervals["p2p_gap_to_central"].max() < 1e-3
    assert (out / "report.html").exists()
    bills = pd.read_csv(out / "bills.csv").set_index("participant")
    # What each participant bought and sold locally is the sum of its trades.
    sold = trades.groupby("seller").quantity_kwh.sum()
    bought = trades.groupby("buyer").quantity_kwh.sum()
    assert sold.sum() > 0
    for pid in bills.index:
        assert bills.local_sold_kwh[pid] == pytest.approx(sold.get(pid, 0.0), abs=1e-6)
        assert bills.local_bought_kwh[pid] == pytest.approx(bought.get(pid, 0.0), abs=1e-6)
    # Prices between the feed-in tariff and what the retailer charges.
    # (feed-in 0.08 EUR/kWh; retail 0.25 + network 0.08 less the local network charge 0.02)
    assert trades.price_eur_per_kwh.between(0.08 - 1e-9, 0.31 + 1e-9).all()


@pytest.mark.parametrize("args, message", [
    (["--design", "uniform", "--network", "ignore"], "--network applies to the community"),
    (["--design", "uniformm"], "unknown market design 'uniformm'"),
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
