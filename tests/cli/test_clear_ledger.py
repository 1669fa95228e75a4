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


LATER = """order_id,participant,side,quantity_kwh,price_eur_per_kwh,interval
6,alice,buy,1,0.25,2
7,bob,sell,1,0.10,2
"""


def test_a_checkpoint_dated_ahead_does_not_block_the_next_clearing(tmp_path, monkeypatch):
    """A clearing recorded while the clock ran an hour fast: the next clearing (clock right again)
    is recorded with its checkpoint, not refused after its entries were committed."""
    from lemgrid.ledger import store

    first, later = tmp_path / "first.csv", tmp_path / "later.csv"
    first.write_text(ORDERS)
    later.write_text(LATER)
    ledger = tmp_path / "market.db"
    runner = CliRunner()
    fast_ms = store._now_ms() + 3_600_000
    monkeypatch.setattr(store, "_now_ms", lambda: fast_ms)
    ran = runner.invoke(app, ["clear", str(first), "--ledger", str(ledger), "--out",
                              str(tmp_path / "out1")])
    assert ran.exit_code == 0, ran.output
    monkeypatch.undo()
    for attempt in range(2):  # a re-run is refused as a replay, and only that
        ran = runner.invoke(app, ["clear", str(later), "--ledger", str(ledger), "--out",
                                  str(tmp_path / f"out{attempt + 2}")])
        assert ran.exit_code == (0 if attempt == 0 else 2), ran.output
    assert "replay" in ran.output
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    verified = runner.invoke(app, ["ledger", "verify", str(ledger)])
    assert verified.exit_code == 0, verified.output
    assert f"{summary['ledger']['size']} entries, 2 checkpoints" in verified.output
