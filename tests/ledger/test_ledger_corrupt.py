"""Damaged ledger files: random bit flips anywhere in the file never make verify raise; it fails
cleanly (or the file is not a ledger at all), and passes only if the log is the original one."""

from __future__ import annotations

import random
import shutil

from lemgrid.errors import InputError
from lemgrid.ledger.db import LedgerDB
from lemgrid.ledger.store import Ledger, default_witness_path
from lemgrid.ledger.verify import verify_ledger

from .test_ledger_tamper import _busy

N_FLIPS = 400


def test_random_bit_flips_in_the_file_fail_cleanly(tmp_path):
    (tmp_path / "original").mkdir()
    original = _busy(tmp_path / "original").path
    reference = verify_ledger(original)
    assert reference.ok
    data = original.read_bytes()
    rng = random.Random(14)
    path = tmp_path / "flipped.db"
    shutil.copy(default_witness_path(original), default_witness_path(path))
    outcomes = {"failed": 0, "not a ledger": 0, "unchanged": 0}
    for _ in range(N_FLIPS):
        LedgerDB.remove(path)
        flipped = bytearray(data)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        try:
            report = verify_ledger(path)
        except InputError as exc:  # the header no longer says SQLite / lemgrid
            assert "not a lemgrid ledger" in str(exc)
            outcomes["not a ledger"] += 1
            continue
        if report.ok:  # the flip hit bytes the log does not use: the log must be the same
            assert (report.entries, report.root_hex) == (reference.entries, reference.root_hex)
            outcomes["unchanged"] += 1
        else:
            assert report.problem
            outcomes["failed"] += 1
    assert outcomes["failed"] > N_FLIPS // 4, outcomes


def test_a_damaged_page_is_a_failed_verification_naming_the_damage(tmp_path):
    path = _busy(tmp_path).path
    with Ledger.open(path) as ledger:
        size = ledger.size
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page:3 * page] = bytes(range(256)) * (page // 256)  # a b-tree page overwritten
    path.write_bytes(bytes(data))
    report = verify_ledger(path)
    assert not report.ok and "damaged" in report.problem, report.problem
    assert report.entries < size or "quick_check" in report.problem
