"""Verify a whole ledger from its stored bytes: what ``lemgrid ledger verify`` runs.

The verifier trusts nothing the store computed. For every entry, in order, it checks that the
positions are contiguous, that the stored bytes are the canonical encoding of the entry at that
position, that the stored leaf hash is the hash of those bytes, that the signature verifies, and
that the entry obeys every ledger rule (:mod:`lemgrid.ledger.rules`: identities, replays,
revocations, double spending, sealed bids, checkpoint roots). It then checks consistency proofs
between successive checkpoints, the published checkpoints of a witness file (which reveal a log
cut short or rewritten after publication), optional on-chain anchors, and that the index tables
hold exactly the rows the entries imply. It stops at the first problem and names the entry.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lemgrid.errors import InputError
from lemgrid.ledger.identity import PublicKey, public_bytes, signature_valid, signing_message
from lemgrid.ledger.journal import Rejection
from lemgrid.ledger.merkle import MerkleTree, leaf_hash, verify_consistency
from lemgrid.ledger.records import RecordError, SignedRecord, validate_payload
from lemgrid.ledger.rules import LedgerState, Prepared, check_batch
from lemgrid.ledger.store import FORMAT, INDEX_TABLES, default_witness_path, index_rows

_CHUNK = 4096


@dataclass(frozen=True)
class Anchor:
    """A checkpoint root published elsewhere (e.g. on chain): tree size, root, checkpoint hash."""

    tree_size: int
    root_hex: str
    checkpoint_leaf_hex: str
    where: str


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_ledger`.

    Attributes
    ----------
    ok : bool
        True only if every check held.
    entries : int
        Entries verified.
    checkpoints : int
        Checkpoints in the log.
    root_hex : str
        Merkle root of the verified entries.
    witnessed : int
        Published (witness) checkpoints matched.
    anchored : int
        On-chain anchors matched.
    bad_entry : int or None
        Position of the first bad entry, when the problem is one entry.
    problem : str or None
        What failed.
    """

    ok: bool
    entries: int
    checkpoints: int
    root_hex: str
    witnessed: int = 0
    anchored: int = 0
    bad_entry: int | None = None
    problem: str | None = None


class _Failed(Exception):
    def __init__(self, problem: str, bad_entry: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.bad_entry = problem, bad_entry


def _open_readonly(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise InputError(f"ledger {path} does not exist")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        fmt = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not a lemgrid ledger ({exc})") from None
    if fmt is None or fmt[0] != FORMAT:
        conn.close()
        raise InputError(f"{path}: not a lemgrid ledger")
    return conn


class _Checker:
    """Walks the entries of one ledger through the rules."""

    def __init__(self) -> None:
        self.state = LedgerState()
        self.leaves: list[bytes] = []
        self.checkpoint_bodies: dict[int, bytes] = {}
        self.index: dict[str, set[tuple]] = {name: set() for name in INDEX_TABLES}

    def run_rules(self, rows: Sequence[tuple]) -> None:
        """Apply the rules to rows already structurally checked."""
        records = [record for _, _, record in rows]
        base = self.state.size

        def on_entry(i: int, prepared: Prepared, data: bytes, digest: bytes) -> None:
            seq, body, _ = rows[i]
            if data != body:
                raise _Failed(f"entry {seq}: stored bytes are not the canonical encoding of the "
                              "entry", seq)
            self.leaves.append(digest)
            if prepared.kind == "checkpoint":
                self.checkpoint_bodies[seq] = body
            for table, new in index_rows(prepared, seq).items():
                self.index[table].update(new)

        try:
            check_batch(self.state, records, on_entry)
        except Rejection as exc:
            seq = base + (exc.index or 0)
            kind = records[exc.index or 0].payload.get("kind")
            raise _Failed(f"entry {seq} ({kind}): {exc.reason}", seq) from None

    def structure(self, seq_expected: int, row: tuple) -> tuple[int, bytes, SignedRecord]:
        seq, kind, body, stored_leaf = row
        if seq != seq_expected:
            if seq > seq_expected:
                raise _Failed(f"entry {seq_expected} is missing (the log jumps from entry "
                              f"{seq_expected - 1} to {seq})", seq_expected)
            raise _Failed(f"entry {seq} appears twice", seq)
        if not isinstance(body, bytes):
            raise _Failed(f"entry {seq}: stored body is not bytes", seq)
        if stored_leaf != leaf_hash(body):
            raise _Failed(f"entry {seq}: stored leaf hash does not match the entry's bytes "
                          "(entry altered)", seq)
        try:
            obj = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise _Failed(f"entry {seq}: stored bytes are not valid JSON", seq) from None
        if type(obj) is not dict or obj.get("seq") != seq:
            found = obj.get("seq") if type(obj) is dict else None
            raise _Failed(f"entry {seq}: its bytes say position {found!r} (entries moved or "
                          "reordered)", seq)
        try:
            record = SignedRecord.from_json(obj, f"entry {seq}")
        except RecordError as exc:
            raise _Failed(str(exc), seq) from None
        if record.payload.get("kind") != kind:
            raise _Failed(f"entry {seq}: stored kind {kind!r} differs from the entry's kind "
                          f"{record.payload.get('kind')!r}", seq)
        return seq, body, record


def verify_ledger(path: str | Path, *, witness: str | Path | None | bool = True,
                  log_key: PublicKey | None = None,
                  anchors: Iterable[Anchor] = (),
                  progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Recompute and check everything in a ledger file.

    Parameters
    ----------
    path : str or Path
        The ledger (SQLite file).
    witness : path, True or None
        File of published checkpoints (one JSON entry per line); True for the default
        ``<path>.witness.jsonl`` if it exists, None to skip.
    log_key : PublicKey, optional
        The operator key the verifier expects (pinned); the log-init entry must declare it.
    anchors : iterable of Anchor
        Checkpoint roots published elsewhere (e.g. read from the chain anchor contract).
    progress : callable, optional
        Called with the number of entries verified so far.

    Returns
    -------
    VerifyReport
        ``ok`` is True only if every check held; otherwise ``problem`` says what failed and
        ``bad_entry`` names the first bad entry.

    Raises
    ------
    InputError
        If the file is missing or not a ledger, or the witness file is unreadable.
    """
    path = Path(path)
    conn = _open_readonly(path)
    checker = _Checker()
    witnessed = anchored = 0
    try:
        try:
            _walk(conn, checker, progress)
            _check_pinned_key(checker.state, log_key)
            _check_consistency(checker)
            witness_path = default_witness_path(path) if witness is True else witness
            if witness_path and (witness is not True or Path(witness_path).exists()):
                witnessed = _check_published(_read_witness(Path(witness_path)), checker)
            anchored = _check_anchors(list(anchors), checker)
            _check_index_tables(conn, checker)
        finally:
            conn.close()
    except _Failed as failed:
        return VerifyReport(False, checker.state.size, len(checker.state.checkpoints),
                            checker.state.tree.root().hex(), witnessed, anchored,
                            failed.bad_entry, failed.problem)
    return VerifyReport(True, checker.state.size, len(checker.state.checkpoints),
                        checker.state.tree.root().hex(), witnessed, anchored)


def _walk(conn: sqlite3.Connection, checker: _Checker,
          progress: Callable[[int], None] | None) -> None:
    cursor = conn.execute("SELECT seq, kind, body, leaf_hash FROM entries ORDER BY seq")
    expected = 0
    while rows := cursor.fetchmany(_CHUNK):
        good: list[tuple] = []
        failure: _Failed | None = None
        for row in rows:
            try:
                good.append(checker.structure(expected, row))
            except _Failed as exc:
                failure = exc
                break
            expected += 1
        if good:  # rules first: an earlier entry may break a rule before the structural failure
            checker.run_rules(good)
        if failure is not None:
            raise failure
        if progress is not None:
            progress(checker.state.size)
    if checker.state.size == 0:
        raise _Failed("the log holds no entries", 0)


def _check_pinned_key(state: LedgerState, log_key: PublicKey | None) -> None:
    if log_key is not None and public_bytes(log_key) != public_bytes(state.operator_key):
        raise _Failed(f"entry 0: the log declares operator key "
                      f"{public_bytes(state.operator_key).hex()}, not the expected "
                      f"{public_bytes(log_key).hex()}", 0)


def _check_consistency(checker: _Checker) -> None:
    checkpoints = checker.state.checkpoints
    if len(checkpoints) < 2:
        return
    tree = MerkleTree(checker.leaves[:checkpoints[-1].tree_size])
    for first, second in zip(checkpoints, checkpoints[1:]):
        path = tree.consistency_path(first.tree_size, second.tree_size)
        if not verify_consistency(first.tree_size, second.tree_size, first.root, second.root,
                                  path):
            raise _Failed(f"checkpoints at entries {first.seq} and {second.seq} are not "
                          "consistent", second.seq)


def _read_witness(path: Path) -> list[tuple[int, bytes]]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"witness file {path}: {exc.strerror}") from None
    published = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            seq = obj["seq"]
            if type(seq) is not int:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise InputError(f"witness file {path} line {n}: not a checkpoint entry") from None
        published.append((seq, line))
    return published


def _check_published(published: list[tuple[int, bytes]], checker: _Checker) -> int:
    """Each published checkpoint must be in the log, byte for byte."""
    state = checker.state
    for seq, line in published:
        record = SignedRecord.from_json(json.loads(line), f"published checkpoint {seq}")
        try:
            kind = validate_payload(record.payload, f"published checkpoint {seq}")
        except RecordError as exc:
            raise _Failed(f"witness: {exc}") from None
        if kind != "checkpoint" or not signature_valid(state.operator_key, record.sig,
                                                       signing_message(record.payload)):
            raise _Failed(f"witness: published checkpoint for entry {seq} is not a checkpoint "
                          "signed by the log's operator key")
        if seq >= state.size:
            raise _Failed(f"log truncated: a checkpoint was published as entry {seq} (covering "
                          f"{record.payload['tree_size']} entries) but the log holds only "
                          f"{state.size} entries", state.size)
        if checker.checkpoint_bodies.get(seq) != line:
            raise _Failed(f"entry {seq}: differs from the checkpoint published for that position "
                          f"(root {record.payload['root_hash']}); the log was rewritten", seq)
    return len(published)


def _check_anchors(anchors: list[Anchor], checker: _Checker) -> int:
    by_size = {c.tree_size: c for c in checker.state.checkpoints}
    for anchor in anchors:
        checkpoint = by_size.get(anchor.tree_size)
        if checkpoint is None:
            if anchor.tree_size >= checker.state.size:
                raise _Failed(f"log truncated: {anchor.where} anchors a checkpoint of "
                              f"{anchor.tree_size} entries but the log holds only "
                              f"{checker.state.size}", checker.state.size)
            raise _Failed(f"{anchor.where} anchors a checkpoint of {anchor.tree_size} entries "
                          "that the log does not hold")
        if (checkpoint.root.hex() != anchor.root_hex
                or checker.leaves[checkpoint.seq].hex() != anchor.checkpoint_leaf_hex):
            raise _Failed(f"entry {checkpoint.seq}: checkpoint differs from {anchor.where} "
                          f"(anchored root {anchor.root_hex})", checkpoint.seq)
    return len(anchors)


def _check_index_tables(conn: sqlite3.Connection, checker: _Checker) -> None:
    for table, expected in checker.index.items():
        stored = set(conn.execute(f"SELECT * FROM {table}"))
        if stored != expected:
            extra, missing = sorted(stored - expected), sorted(expected - stored)
            row = extra[0] if extra else missing[0]
            what = "holds a row no entry implies" if extra else "lacks the row of"
            raise _Failed(f"index table {table} {what} {row!r} (entry {row[-1]})", row[-1])
