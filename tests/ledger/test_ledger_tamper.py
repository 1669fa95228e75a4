"""Tamper tests: every kind of change to a stored ledger fails verification and names the entry;
an untouched ledger verifies."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import sqlite3

import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.ledger.identity import generate_key, public_bytes
from lemgrid.ledger.merkle import leaf_hash
from lemgrid.ledger.sealed import reveal, seal
from lemgrid.ledger.spending import settlement_postings
from lemgrid.ledger.db import LedgerDB
from lemgrid.ledger.store import INDEX_TABLES, Ledger, default_witness_path
from lemgrid.ledger.verify import verify_ledger

from .conftest import make_world


def _busy(tmp_path):
    """A ledger with every record kind, three published checkpoints and two trailing orders."""
    w = make_world(tmp_path)
    L = w.ledger
    L.append([w.order("alice", "s1", quantity_wh=2000), w.order("bob", "s2", quantity_wh=1000),
              w.order("carol", "b1", side="buy", quantity_wh=2500, price=300)])
    trades = [w.trade("t1", "alice", "carol", 2000, 250, sell_order_id="s1", buy_order_id="b1"),
              w.trade("t2", "bob", "carol", 500, 250, sell_order_id="s2", buy_order_id="b1")]
    L.append_operator(trades + [
        {"kind": "clearing", "market_id": "m", "interval": 1, "n_trades": 2, "volume_wh": 2500,
         "price_meur_per_kwh": 250},
        {"kind": "settlement", "settlement_id": "m/1", "market_id": "m", "trade_ids": ["t1", "t2"],
         "postings": settlement_postings(trades)}])
    L.checkpoint(label="m/1", timestamp_ms=1_000)
    order = w.order("dave", "d1", market="sealed", quantity_wh=700).payload
    commit, salt = seal(order, w.keys["dave"], nonce="c1")
    L.append([commit])
    L.append_operator([{"kind": "gate-closure", "market_id": "sealed", "interval": 1}])
    L.append([reveal(order, salt, w.keys["dave"], "r1")])
    L.close_reveals("sealed", 1)
    L.checkpoint(label="sealed/1", timestamp_ms=2_000)
    L.append([w.order("bob", f"late{i}", market="late", quantity_wh=100) for i in range(4)])
    L.checkpoint(timestamp_ms=3_000)
    L.append([w.order("carol", "x1", market="late", side="buy"),
              w.order("carol", "x2", market="late", side="buy")])
    L.close()
    return w


@pytest.fixture(scope="module")
def _busy_original(tmp_path_factory):
    return _busy(tmp_path_factory.mktemp("busy"))


@pytest.fixture
def busy(_busy_original, tmp_path):
    """A fresh copy of the busy ledger (and its witness file) for each test to tamper with."""
    original = _busy_original.path
    for source in (original, default_witness_path(original)):
        shutil.copy(source, tmp_path / source.name)
    return dataclasses.replace(_busy_original, path=tmp_path / original.name)


def _sql(path, *statements):
    """Run statements as someone with write access to the file (triggers dropped first)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for table in ["meta", "entries", *INDEX_TABLES]:
        for action in ("update", "delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    for sql, args in statements:
        conn.execute(sql, args)
    conn.execute("COMMIT")
    conn.close()


def _body(path, seq):
    conn = sqlite3.connect(path)
    body = conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
    conn.close()
    return body


def _checkpoint_seqs(path):
    with Ledger.open(path) as ledger:
        return [c.seq for c in ledger.state.checkpoints], ledger.size


def _fails_at(path, seq, match="", **kwargs):
    report = verify_ledger(path, **kwargs)
    assert not report.ok, "tampering went unnoticed"
    assert report.bad_entry == seq, report.problem
    assert match in report.problem
    return report


def test_untouched_ledger_verifies(busy):
    report = verify_ledger(busy.path)
    assert report.ok and report.problem is None
    assert (report.entries, report.checkpoints, report.witnessed) == (29, 3, 3)
    with Ledger.open(busy.path) as ledger:
        assert report.root_hex == ledger.root().hex()


def test_any_flipped_byte_in_any_entry_names_that_entry(busy):
    """A careful attacker flips one byte and also fixes the stored leaf hash."""
    rng = random.Random(5)
    original = busy.path.read_bytes()
    for _ in range(40):
        LedgerDB.remove(busy.path)  # the WAL too: it would replay the last tampering
        busy.path.write_bytes(original)
        seq = rng.randrange(29)
        body = bytearray(_body(busy.path, seq))
        pos = rng.randrange(len(body))
        body[pos] ^= 1 << rng.randrange(8)
        _sql(busy.path, ("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = ?",
                         (bytes(body), leaf_hash(bytes(body)), seq)))
        _fails_at(busy.path, seq)


def test_flipped_byte_without_fixing_the_leaf_hash(busy):
    body = bytearray(_body(busy.path, 10))
    body[-5] ^= 0x01
    _sql(busy.path, ("UPDATE entries SET body = ? WHERE seq = 10", (bytes(body),)))
    _fails_at(busy.path, 10, "stored leaf hash does not match")


def test_changed_quantity_with_a_valid_json_body(busy):
    body = _body(busy.path, 12).replace(b'"quantity_wh":2000', b'"quantity_wh":2001')
    _sql(busy.path, ("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 12",
                     (body, leaf_hash(body))))
    _fails_at(busy.path, 12, "does not verify")


def test_flipped_leaf_hash_or_kind_column(busy, tmp_path):
    copy = tmp_path / "copy.db"
    shutil.copy(busy.path, copy)
    _sql(busy.path, ("UPDATE entries SET leaf_hash = ? WHERE seq = 3", (b"\x00" * 32,)))
    _fails_at(busy.path, 3, "stored leaf hash")
    _sql(copy, ("UPDATE entries SET kind = 'trade' WHERE seq = 4", ()))
    _fails_at(copy, 4, "stored kind 'trade'", witness=None)


def test_deleted_entry(busy):
    _sql(busy.path, ("DELETE FROM entries WHERE seq = 14", ()))
    _fails_at(busy.path, 14, "entry 14 is missing")


def test_deleted_first_entry(busy):
    _sql(busy.path, ("DELETE FROM entries WHERE seq = 0", ()))
    _fails_at(busy.path, 0, "entry 0 is missing")


def test_swapped_entries(busy):
    a, b = _body(busy.path, 9), _body(busy.path, 10)
    _sql(busy.path, ("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 9", (b, leaf_hash(b))),
         ("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 10", (a, leaf_hash(a))))
    _fails_at(busy.path, 9, "its bytes say position 10")


def test_reordered_entries_with_rewritten_positions_break_the_next_checkpoint(busy):
    """Two participant orders swapped and renumbered: every entry is well-formed and signed, but
    the tree changes, so the checkpoint after them no longer matches."""
    late = [22, 23]  # orders of bob in market "late"
    a, b = (json.loads(_body(busy.path, s)) for s in late)
    a["seq"], b["seq"] = b["seq"], a["seq"]
    new = {s: json.dumps(e, sort_keys=True, separators=(",", ":")).encode() for s, e in
           ((late[1], a), (late[0], b))}
    checkpoints, _ = _checkpoint_seqs(busy.path)
    _sql(busy.path, *[("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = ?",
                       (body, leaf_hash(body), s)) for s, body in new.items()],
         *[(f"UPDATE {t} SET seq = 45 - seq WHERE seq IN (22, 23)", ()) for t in
           ("orders", "nonces")])
    _fails_at(busy.path, checkpoints[2], "is not the root")


def test_truncated_after_a_published_checkpoint(busy):
    checkpoints, _ = _checkpoint_seqs(busy.path)
    _sql(busy.path, *[(f"DELETE FROM {t} WHERE seq >= ?", (checkpoints[2],))
                      for t in ("entries", *INDEX_TABLES)])
    _fails_at(busy.path, checkpoints[2], "log truncated")
    # without the witness, nothing in the shortened log itself is wrong
    assert verify_ledger(busy.path, witness=None).ok


def test_truncation_after_the_last_published_checkpoint_is_undetectable(busy):
    """Documented limit: entries after the last published checkpoint are not yet protected."""
    _, size = _checkpoint_seqs(busy.path)
    _sql(busy.path, *[(f"DELETE FROM {t} WHERE seq >= ?", (size - 2,))
                      for t in ("entries", *INDEX_TABLES)])
    assert verify_ledger(busy.path).ok


def test_a_log_rewritten_and_resigned_by_the_operator_differs_from_the_published_checkpoints(
        busy, tmp_path):
    """The operator re-creates its log with a trade altered and re-signs every checkpoint: the
    rewritten log is internally valid, but not the log whose checkpoints were published."""
    with Ledger.open(busy.path) as original:
        entries = list(original.entries())
    forged_path = tmp_path / "forged.db"
    init = entries[0]["payload"]
    forged = Ledger.create(forged_path, busy.operator, log_id=init["log_id"],
                           created_ms=init["created_ms"], witness_path=None)
    from lemgrid.ledger.records import SignedRecord
    for e in entries[1:]:
        p = e["payload"]
        if p["kind"] == "checkpoint":
            forged.checkpoint(label=p.get("label"), timestamp_ms=p["timestamp_ms"])
        elif e["signer"] == forged.state.operator_id:
            if p["kind"] == "trade" and p["trade_id"] == "t2":
                p = {**p, "price_meur_per_kwh": 249}
            if p["kind"] == "settlement":
                trades = [x["payload"] for x in entries if x["payload"]["kind"] == "trade"]
                trades = [{**t, "price_meur_per_kwh": 249} if t["trade_id"] == "t2" else t
                          for t in trades]
                p = {**p, "postings": settlement_postings(trades)}
            forged.append_operator([p])
        else:
            forged.append([SignedRecord.from_json(e)])
    forged.close()
    assert verify_ledger(forged_path, witness=None).ok
    checkpoints, _ = _checkpoint_seqs(busy.path)
    _fails_at(forged_path, checkpoints[0], "differs from the checkpoint published",
              witness=default_witness_path(busy.path))


def test_pinned_operator_key_and_forged_witness(busy, tmp_path):
    with Ledger.open(busy.path) as ledger:
        key = ledger.state.operator_key
    assert verify_ledger(busy.path, log_key=key).ok
    _fails_at(busy.path, 0, "not the expected", log_key=type(key)(public_bytes(generate_key())))
    witness = default_witness_path(busy.path)
    lines = witness.read_bytes().splitlines()
    forged = json.loads(lines[0])
    forged["payload"]["root_hash"] = "00" * 32
    bad = tmp_path / "bad-witness.jsonl"
    bad.write_bytes(json.dumps(forged).encode() + b"\n")
    report = verify_ledger(busy.path, witness=bad)
    assert not report.ok and "not a checkpoint signed by the log's operator key" in report.problem


def test_index_table_tampering(busy):
    with Ledger.open(busy.path) as ledger:
        seq = next(e["seq"] for e in ledger.entries("settlement"))
    _sql(busy.path, ("DELETE FROM settled_trades WHERE trade_id = 't2'", ()))
    _fails_at(busy.path, seq, "index table settled_trades lacks the row")


def test_cli_verify_exit_codes_and_first_bad_entry(busy):
    runner = CliRunner()
    ok = runner.invoke(app, ["ledger", "verify", str(busy.path)])
    assert ok.exit_code == 0 and "OK: 29 entries, 3 checkpoints" in ok.output
    _sql(busy.path, ("DELETE FROM entries WHERE seq = 20", ()))
    bad = runner.invoke(app, ["ledger", "verify", str(busy.path)])
    assert bad.exit_code == 1
    assert "entry 20 is missing" in bad.output and "first bad entry: 20" in bad.output
    missing = runner.invoke(app, ["ledger", "verify", str(busy.path.with_name("nope.db"))])
    assert missing.exit_code == 2 and "does not exist" in missing.output
