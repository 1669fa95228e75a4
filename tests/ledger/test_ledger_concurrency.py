"""Several processes on one ledger: verify during appends, crashes mid-append, locks held.

Loopback only (processes on this machine), bounded in count and time.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.errors import InputError
from lemgrid.ledger.identity import Keystore
from lemgrid.ledger.store import Ledger
from lemgrid.ledger.verify import verify_ledger

from .conftest import make_world

APPENDER = Path(__file__).with_name("_appender.py")
#: Upper bound on any wait for a child process [s].
DEADLINE_S = 60.0


@pytest.fixture
def shared(tmp_path):
    """A ledger with four registered participants and a keystore holding all their keys."""
    world = make_world(tmp_path)
    world.ledger.close()
    keystore = tmp_path / "keys.json"
    Keystore(operator=world.operator, participants=dict(world.keys)).save(keystore)
    return world, keystore


def _appender(path: Path, keystore: Path, prefix: str, batches: int, batch_size: int):
    return subprocess.Popen([sys.executable, str(APPENDER), str(path), str(keystore), prefix,
                             str(batches), str(batch_size)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _acked(line: str) -> dict:
    return json.loads(line)


def test_verify_during_concurrent_appends_raises_no_false_alarm(shared):
    """Verify reads one snapshot: a log growing meanwhile is verified as it was, never reported as
    tampered (index tables ahead of the entries, a published checkpoint beyond the end, ...)."""
    world, keystore = shared
    child = _appender(world.path, keystore, "c", batches=150, batch_size=20)
    assert _acked(child.stdout.readline())["orders"] == []  # the appender is running
    reports, sizes = [], set()
    deadline = time.monotonic() + DEADLINE_S
    while child.poll() is None and time.monotonic() < deadline and len(reports) < 40:
        report = verify_ledger(world.path)
        reports.append(report)
        sizes.add(report.entries)
    child.kill()
    out, err = child.communicate(timeout=DEADLINE_S)
    alarms = [r.problem for r in reports if not r.ok]
    assert alarms == [], alarms
    assert len(sizes) >= 3, f"verify did not overlap the appends (sizes seen: {sizes}); {err}"
    assert verify_ledger(world.path).ok


@pytest.mark.slow
def test_kill_9_during_appends_loses_no_acknowledged_entry(shared):
    """20 appender processes killed with SIGKILL at random moments of their append loops: after
    each crash the first verify is clean, and every order an append acknowledged is in the log."""
    world, keystore = shared
    rng = random.Random(20)
    acknowledged: list[str] = []
    killed_mid_run = 0
    for trial in range(20):
        child = _appender(world.path, keystore, f"k{trial}", batches=10_000, batch_size=5)
        first = child.stdout.readline()
        assert first, child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=DEADLINE_S)
        killed_mid_run += child.returncode == -signal.SIGKILL
        for line in out.splitlines():
            if line.endswith("}"):  # a line cut by the kill was never acknowledged
                acknowledged.extend(_acked(line)["orders"])
        report = verify_ledger(world.path)
        assert report.ok, f"trial {trial}: first verify after the crash: {report.problem}"
        with Ledger.open(world.path) as ledger:
            stored = ledger.state.spending.orders
            lost = [o for o in acknowledged if ("m", o) not in stored]
        assert lost == [], f"trial {trial}: acknowledged but lost: {lost[:5]}"
    assert killed_mid_run == 20
    assert len(acknowledged) > 0


def _crash_mid_transaction(path: Path, journal_mode: str) -> None:
    """A process writes part of an append in an open transaction, then dies by SIGKILL.

    Plain SQLite, as any version of the appender does it; the cache is tiny so that pages of the
    unfinished transaction reach the disk (the journal, or the WAL)."""
    script = f"""
import sqlite3, sys, time
conn = sqlite3.connect({str(path)!r}, isolation_level=None)
conn.execute("PRAGMA journal_mode = {journal_mode}")
conn.execute("PRAGMA cache_size = 1")
conn.execute("BEGIN IMMEDIATE")
conn.executemany("INSERT INTO entries VALUES (?, 'order', randomblob(3000), randomblob(32))",
                 [(1000 + i,) for i in range(300)])
print("ready", flush=True)
time.sleep(60)
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=DEADLINE_S)


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_first_verify_after_a_crash_mid_append_is_clean(shared, journal_mode):
    """In rollback-journal mode the crash leaves a hot journal that a read-only connection cannot
    roll back ('attempt to write a readonly database'); verify must still see the last committed
    log, and so must the next append."""
    world, _ = shared
    before = verify_ledger(world.path)
    _crash_mid_transaction(world.path, journal_mode)
    if journal_mode == "delete":
        assert world.path.with_name(world.path.name + "-journal").exists()  # a hot journal
    report = verify_ledger(world.path)
    assert report.ok, report.problem
    assert (report.entries, report.root_hex) == (before.entries, before.root_hex)
    with Ledger.open(world.path, world.operator) as ledger:
        ledger.append([world.order("alice", "after-crash", side="buy")])
    assert verify_ledger(world.path).ok


def test_a_reader_holding_the_file_does_not_block_an_append(world):
    """A reader in a long read transaction (here: for the whole append) neither blocks the append
    nor makes it claim that the tables disagree."""
    reader = sqlite3.connect(world.path, isolation_level=None)
    reader.execute("BEGIN")
    (seen,) = reader.execute("SELECT COUNT(*) FROM entries").fetchone()
    try:
        result = world.ledger.append([world.order("alice", "o1", side="buy")])
        assert result.size == seen + 1
        # the reader still sees its snapshot
        assert reader.execute("SELECT COUNT(*) FROM entries").fetchone() == (seen,)
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert verify_ledger(world.path).ok


def test_a_held_write_lock_gives_busy_after_a_bounded_wait(world, tmp_path):
    """Another process holds the write lock: append waits ``--wait`` seconds and then says busy
    (exit 2, nothing written); verify is not blocked by it."""
    world.ledger.close()
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(world.order("alice", "o1", side="buy").to_json()) + "\n")
    holder = sqlite3.connect(world.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["ledger", "append", str(world.path), str(records),
                                     "--wait", "0.2"])
        assert result.exit_code == 2 and "is busy" in result.output, result.output
        with Ledger.open(world.path, busy_timeout_s=0.1) as ledger:
            with pytest.raises(InputError, match="is busy"):
                ledger.append([world.order("bob", "o2", side="buy")])
        assert verify_ledger(world.path).ok  # readers are not blocked by a writer
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    done = runner.invoke(app, ["ledger", "append", str(world.path), str(records)])
    assert done.exit_code == 0 and "appended 1 entries" in done.output
