"""``lemgrid clear ... --ledger PATH``: orders, trades and a checkpoint land in a ledger that
``lemgrid ledger verify`` accepts; a replay is refused without touching the ledger."""

from __future__ import annotations

import json
import sqlite3

from typer.testing import CliRunner

from lemgrid.cli import app

ORDERS = """order_id,participant,side,quantity_kwh,price_eur_per_kwh,interval
1,alice,buy,3,0.25,0
2,bob,sell,2,0.10,0
3,carol,sell,2,0.20,0
4,dan,buy,1,0.15,1
5,erin,sell,1.5,0.12,1
"""


def test_clear_records_and_verifies(tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text(ORDERS)
    ledger = tmp_path / "market.db"
    runner = CliRunner()
    first = runner.invoke(app, ["clear", str(orders), "--mechanism", "pay-as-bid", "--ledger",
                                str(ledger), "--out", str(tmp_path / "out")])
    assert first.exit_code == 0, first.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ledger"]["orders"] == 5
    assert summary["ledger"]["trades"] == summary["trades"] == 3
    assert runner.invoke(app, ["ledger", "verify", str(ledger)]).exit_code == 0

    size = summary["ledger"]["size"]
    again = runner.invoke(app, ["clear", str(orders), "--ledger", str(ledger), "--out",
                                str(tmp_path / "out2")])
    assert again.exit_code == 2 and "replay" in again.output
    assert not (tmp_path / "out2").exists()
    verified = runner.invoke(app, ["ledger", "verify", str(ledger)])
    assert verified.exit_code == 0 and f"{size} entries" in verified.output

    # An attacker with write access drops the append-only triggers and flips one byte of an
    # entry: verify fails and names that entry.
    with sqlite3.connect(ledger) as db:
        for (name,) in db.execute("select name from sqlite_master where type='trigger'").fetchall():
            db.execute(f"drop trigger {name}")
        seq, body = db.execute("select seq, body from entries where kind = 'order' limit 1"
                               ).fetchone()
        flipped = bytearray(body)
        flipped[len(flipped) // 2] ^= 0x01
        db.execute("update entries set body = ? where seq = ?", (bytes(flipped), seq))
    failed = runner.invoke(app, ["ledger", "verify", str(ledger)])
    assert failed.exit_code == 1
    assert f"entry {seq}" in failed.output
