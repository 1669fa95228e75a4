"""``lemgrid clear``: outputs on a hand-computed book; bad input exits 2 and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.cli.clear import PRICE_MAX_EUR_PER_KWH, PRICE_MIN_EUR_PER_KWH
from lemgrid.market import DEFAULT_PRICE_BAND_EUR_PER_KWH

HEADER = "order_id,participant,side,quantity_kwh,price_eur_per_kwh,interval\n"
# Interval 0: the pro-rata book of test_market_auction_cases (Q* = 5 kWh at 0.25 EUR/kWh).
# Interval 1: one pair, bid 0.22 and ask 0.12: uniform price (0.12 + 0.22) / 2 = 0.17.
ORDERS = HEADER + """b1,alice,buy,2,0.30,0
b2,bob,buy,1,0.25,0
b3,carol,buy,3,0.25,0
s1,dave,sell,3,0.10,0
s2,erin,sell,2,0.20,0
b4,alice,buy,1,0.22,1
s3,frank,sell,1,0.12,1
"""

runner = CliRunner()


@pytest.fixture()
def orders_csv(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS)
    return path


def test_uniform_writes_trades_and_summary(orders_csv, tmp_path):
    out = tmp_path / "res"
    result = runner.invoke(app, ["clear", str(orders_csv), "--mechanism", "uniform",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "lemgrid clear: uniform" in result.output
    trades = pd.read_csv(out / "trades.csv", dtype={"buy_order_id": str, "sell_order_id": str})
    assert list(trades.columns) == ["buy_order_id", "sell_order_id", "quantity_kwh",
                                    "price_eur_per_kwh", "interval"]
    assert trades.values.tolist() == [["b1", "s1", 2.0, 0.25, 0], ["b2", "s1", 0.75, 0.25, 0],
                                      ["b3", "s1", 0.25, 0.25, 0], ["b3", "s2", 2.0, 0.25, 0],
                                      ["b4", "s3", 1.0, 0.17, 1]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mechanism"] == "uniform"
    assert summary["volume_kwh"] == pytest.approx(6.0)
    assert summary["welfare_eur"] == pytest.approx(0.65 + 0.10)
    assert [m["price_eur_per_kwh"] for m in summary["markets"]] == pytest.approx([0.25, 0.17])
    assert summary["unmatched_buy_kwh"] == pytest.approx(1.0)
    fills = pd.read_csv(out / "fills.csv")
    assert fills["filled_kwh"].tolist() == pytest.approx([2, 0.75, 2.25, 3, 2, 1, 1])


def test_pay_as_bid_and_continuous(orders_csv, tmp_path):
    out = tmp_path / "pab"
    result = runner.invoke(app, ["clear", str(orders_csv), "-m", "pay-as-bid", "--out", str(out)])
    assert result.exit_code == 0, result.output
    trades = pd.read_csv(out / "trades.csv")
    assert trades["price_eur_per_kwh"].tolist() == [0.30, 0.25, 0.25, 0.25, 0.22]
    summary = json.loads((out / "summary.json").read_text())
    assert "buyer's bid" in summary["price_rule"]

    out = tmp_path / "cda"
    result = runner.invoke(app, ["clear", str(orders_csv), "-m", "continuous", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # rows arrive in file order: the bids rest, s1 meets b1 (0.30) then b2 (0.25), s2 meets b3
    trades = pd.read_csv(out / "trades.csv")
    assert trades[["buy_order_id", "sell_order_id", "quantity_kwh", "price_eur_per_kwh"]] \
        .values.tolist() == [["b1", "s1", 2.0, 0.30], ["b2", "s1", 1.0, 0.25],
                             ["b3", "s2", 2.0, 0.25], ["b4", "s3", 1.0, 0.22]]


def test_k_option(orders_csv, tmp_path):
    out = tmp_path / "k0"
    assert runner.invoke(app, ["clear", str(orders_csv), "--k", "0", "--out", str(out)]) \
        .exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [m["price_eur_per_kwh"] for m in summary["markets"]] == pytest.approx([0.25, 0.12])
    bad = runner.invoke(app, ["clear", str(orders_csv), "--k", "2", "--out", str(out)])
    assert bad.exit_code == 2


@pytest.mark.parametrize("body, message", [
    ("order_id,participant,quantity_kwh,price_eur_per_kwh\na,p,1,0.2\n",
     "orders.csv: missing column 'side'"),
    (HEADER + "a,p,buy,1,0.2,0\nb,q,hold,1,0.2,0\n",
     "orders.csv row 2: side must be 'buy' or 'sell', got 'hold'"),
    (HEADER + "a,p,buy,1,,0\n", "orders.csv row 1: price_eur_per_kwh is missing"),
    (HEADER + "a,p,buy,1,nan,0\n", "orders.csv row 1: price_eur_per_kwh is missing"),
    (HEADER + "a,p,buy,1,0.2,0\na,q,sell,1,0.1,0\n",
     "orders.csv row 2: duplicate order_id 'a' (first used in row 1)"),
    (HEADER + "a,p,buy,-1,0.2,0\n", "orders.csv row 1: quantity_kwh must be a finite number > 0"),
    (HEADER + "a,p,buy,1,0.2x,0\n", "orders.csv row 1: price_eur_per_kwh must be a number, "
                                    "got '0.2x'"),
    # A traceback on main (numpy: 'minlength' must not be negative):
    (HEADER + "a,p,buy,1,0.2,1e30\nb,q,sell,1,0.1,0\n",
     "orders.csv row 1: interval must be within 0 .. 9007199254740991, got 1e+30"),
    # Accepted on main, and cleared to 0 kWh:
    (HEADER + "a,p,buy,1e308,0.2,0\nb,q,sell,1e308,0.1,0\n",
     "orders.csv row 1: quantity_kwh must be at most 1e+06 kWh, got 1e+308"),
    (HEADER + "a,p,buy,True,0.2,0\nb,q,sell,False,0.1,0\n",
     "orders.csv row 1: quantity_kwh must be a number, got True"),
])
def test_bad_input_exits_2_and_keeps_earlier_results(tmp_path, body, message):
    out = tmp_path / "res"
    out.mkdir()
    (out / "trades.csv").write_text("earlier results\n")
    path = tmp_path / "orders.csv"
    path.write_text(body)
    result = runner.invoke(app, ["clear", str(path), "--out", str(out)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith("error:")
    assert (out / "trades.csv").read_text() == "earlier results\n"
    assert not (out / "summary.json").exists()


def test_price_band_options(orders_csv, tmp_path):
    result = runner.invoke(app, ["clear", str(orders_csv), "--price-max", "0.25",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "orders.csv row 1: price_eur_per_kwh must be within [-10, 0.25] EUR/kWh, got 0.3" \
        in result.stderr
    assert (PRICE_MIN_EUR_PER_KWH, PRICE_MAX_EUR_PER_KWH) == DEFAULT_PRICE_BAND_EUR_PER_KWH
    huge = runner.invoke(app, ["clear", str(orders_csv), "--price-max", "1e308",
                               "--out", str(tmp_path / "x")])
    assert huge.exit_code == 2 and r"within +-1000 EUR/kWh" in huge.stderr


def test_missing_file_and_bad_mechanism(tmp_path):
    result = runner.invoke(app, ["clear", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2 and "file not found" in result.stderr
    result = runner.invoke(app, ["clear", str(tmp_path / "nope.csv"), "-m", "vickrey"])
    assert result.exit_code == 2


def test_real_process_exit_code(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(HEADER + "a,p,buy,1,0.2,0\nb,q,hold,1,0.2,0\n")
    proc = subprocess.run([sys.executable, "-c", "from lemgrid.cli import main; main()", "clear",
                           str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "error: orders.csv row 2: side must be 'buy' or 'sell', got 'hold'" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", "from lemgrid.cli import main; main()", "clear",
                           str(tmp_path / "orders.csv"), "--help"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and "out/clear" in proc.stdout
