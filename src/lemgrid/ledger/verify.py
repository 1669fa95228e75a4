"""Verify a whole ledger from its stored bytes: what ``lemgrid ledger verify`` runs.

The verifier trusts nothing the store computed. For every entry, in order, it checks that the
positions are contiguous, that the stored bytes are the canonical encoding of the entry at that
position, that the stored leaf hash is the hash of those bytes, that the signature verifies, and
that the entry obeys every ledger rule (:mod:`lemgrid.ledger.rules`: identities, replays,
revocations, double spending, sealed bids, checkpoint roots). It then checks consistency proofs
between successive checkpoints, the published checkpoints of a witness file (which reveal a log
cut short or rewritten after publication), optional on-chain anchors, and that the index tables
hold exactly the rows the entries imply, and SQLite's own check of the file. It stops at the first
problem and names the entry.

Everything is read in one snapshot (a read transaction), so appends by other processes while it
runs are simply not seen; the witness file is read before the snapshot is taken, so every
checkpoint published there was committed before the snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lemgrid.errors import InputError
from lemgrid.ledger.db import (
    BUSY_TIMEOUT_S,
    INDEX_TABLES,
    LedgerDamaged,
    LedgerDB,
    LedgerStorage,
    index_rows,
)
from lemgrid.ledger.identity import PublicKey, public_bytes, signature_valid, signing_message
from lemgrid.ledger.journal import Rejection
from lemgrid.ledger.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, verify_consistency
from lemgrid.ledger.records import RecordError, SignedRecord, payload_bytes, validate_payload
from lemgrid.ledger.rules import LedgerState, Prepared, check_batch
from lemgrid.ledger.store import default_witness_path

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
            for table, new in index_rows(prepared.kind, prepared.record.payload,
                                         prepared.record.signer, seq).items():
                self.index[table].update(new)

        try:
            check_batch(self.state, records, on_entry)
        except Rejection as exc:
            seq = base + (exc.index or 0)
            kind = records[exc.index or 0].payload.get("kind")
            raise _Failed(f"entry {seq} ({kind}): {exc.reason}", seq) from None

    def structure(self, seq_expected: int, row: tuple) -> tuple[int, bytes, SignedRecord]:
        seq, kind, body, stored_leaf = row
        if type(seq) is not int:
            raise _Failed(f"entry {seq_expected}: stored position {seq!r} is not an integer",
                          seq_expected)
        if seq != seq_expected:
            if seq > seq_expected:
                raise _Failed(f"entry {seq_expected} is missing (the log jumps from entry "
                              f"{seq_expected - 1} to {seq})", seq_expected)
            raise _Failed(f"entry {seq} appears twice", seq)
        if not isinstance(body, bytes):
            raise _Failed(f"entry {seq}: stored body is not bytes", seq)
        try:
            kind = kind.decode("utf-8") if isinstance(kind, bytes) else kind
        except UnicodeDecodeError:
            raise _Failed(f"entry {seq}: stored kind column is not valid text", seq) from None
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
                  progress: Callable[[int], None] | None = None,
                  busy_timeout_s: float = BUSY_TIMEOUT_S) -> VerifyReport:
    """Recompute and check everything in a ledger file.

    Parameters
    ----------
    path : str or Path
        The ledger: a SQLite file, or a database URL (``sqlite:///server.db``,
        ``postgresql://...``) whose ``ledger_*`` tables hold it (the market server's).
    witness : path, True or None
        File of published checkpoints (one JSON entry per line); True for the default
        ``<path>.witness.jsonl`` if it exists, None to skip.
    log_key : PublicKey, optional
        The operator key the verifier expects (pinned); the log-init entry must declare it.
    anchors : iterable of Anchor
        Checkpoint roots published elsewhere (e.g. read from the chain anchor contract), read
        before this call.
    progress : callable, optional
        Called with the number of entries verified so far.
    busy_timeout_s : float
        How long to wait if another process holds the file locked [s].

    Returns
    -------
    VerifyReport
        ``ok`` is True only if every check held; otherwise ``problem`` says what failed and
        ``bad_entry`` names the first bad entry. A damaged database file is a failed check.

    Raises
    ------
    InputError
        If the file is missing or not a ledger, or the witness file is unreadable or malformed
        (the message names the line and field).
    """
    from lemgrid.ledger.sqldb import SqlLedgerDB, is_database_url, make_engine

    engine = None
    if is_database_url(path):
        engine = make_engine(str(path), busy_timeout_s)
        witness = None if witness is True else witness
    else:
        path = Path(path)
    witness_path = default_witness_path(path) if witness is True else witness
    published: list[tuple[int, bytes, SignedRecord]] = []
    if witness_path and (witness is not True or Path(witness_path).exists()):
        published = _read_witness(Path(witness_path))  # before the snapshot: see module doc
    anchors = list(anchors)
    checker = _Checker()
    witnessed = anchored = 0
    try:
        db = (SqlLedgerDB.open(engine) if engine is not None
              else LedgerDB.open(Path(path), readonly=True, busy_timeout_s=busy_timeout_s))
    except LedgerDamaged as exc:
        return VerifyReport(False, 0, 0, EMPTY_ROOT.hex(), problem=str(exc))
    try:
        with db.snapshot():
            try:
                _walk(db, checker, progress)
                _check_pinned_key(checker.state, log_key)
                _check_consistency(checker)
                witnessed = _check_published(published, checker)
                anchored = _check_anchors(anchors, checker)
                _check_index_tables(db, checker)
                problem = db.integrity_problem()
                if problem is not None:
                    raise _Failed(f"the database file is damaged (SQLite quick_check: {problem})")
            except LedgerDamaged as exc:
                raise _Failed(f"{exc}", checker.state.size) from None
    except _Failed as failed:
        return VerifyReport(False, checker.state.size, len(checker.state.checkpoints),
                            checker.state.tree.root().hex(), witnessed, anchored,
                            failed.bad_entry, failed.problem)
    finally:
        db.close()
        if engine is not None:
            engine.dispose()
    return VerifyReport(True, checker.state.size, len(checker.state.checkpoints),
                        checker.state.tree.root().hex(), witnessed, anchored)


def _walk(db: LedgerStorage, checker: _Checker, progress: Callable[[int], None] | None) -> None:
    rows = db.rows()
    expected = 0
    chunk: list[tuple] = []
    failure: _Failed | None = None
    while True:
        try:
            row = next(rows, None)
        except LedgerDamaged as exc:
            row, failure = None, _Failed(f"entry {expected}: cannot be read: {exc}", expected)
        if row is not None:
            try:
                chunk.append(checker.structure(expected, row))
                expected += 1
            except _Failed as exc:
                failure = exc
        if chunk and (row is None or failure is not None or len(chunk) == _CHUNK):
            # rules first: an earlier entry may break a rule before the structural failure
            checker.run_rules(chunk)
            chunk = []
            if progress is not None:
                progress(checker.state.size)
        if failure is not None:
            raise failure
        if row is None:
            break
    if checker.state.size == 0:
        raise _Failed("the log holds no entries", 0)


def _operator_key(state: LedgerState) -> PublicKey:
    """The key the log-init entry declares (the walk has applied it before any check)."""
    if state.operator_key is None:
        raise _Failed("entry 0: the log has no log-init entry declaring its operator key", 0)
    return state.operator_key


def _check_pinned_key(state: LedgerState, log_key: PublicKey | None) -> None:
    if log_key is not None and public_bytes(log_key) != public_bytes(_operator_key(state)):
        raise _Failed(f"entry 0: the log declares operator key "
                      f"{public_bytes(_operator_key(state)).hex()}, not the expected "
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


def _read_witness(path: Path) -> list[tuple[int, bytes, SignedRecord]]:
    """Published checkpoints: (position, line, record); malformed lines are bad input."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"witness file {path}: {exc.strerror}") from None
    published = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"witness file {path} line {n}"
        try:
            obj = json.loads(line)
        except ValueError:
            raise InputError(f"{where}: not valid JSON") from None
        if type(obj) is not dict or type(obj.get("seq")) is not int:
            raise InputError(f"{where}: not a checkpoint entry (an object with an integer seq)")
        record = SignedRecord.from_json(obj, where)
        if validate_payload(record.payload, f"{where}: payload") != "checkpoint":
            raise InputError(f"{where}: not a checkpoint entry")
        payload_bytes(record.payload, f"{where}: payload")
        published.append((obj["seq"], line, record))
    return published


def _check_published(published: list[tuple[int, bytes, SignedRecord]], checker: _Checker) -> int:
    """Each published checkpoint must be in the log, byte for byte."""
    state = checker.state
    for seq, line, record in published:
        if not signature_valid(_operator_key(state), record.sig, signing_message(record.payload)):
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


def _check_index_tables(db: LedgerStorage, checker: _Checker) -> None:
    for table, expected in checker.index.items():
        stored = db.index_rows(table)
        if stored != expected:
            extra = sorted(stored - expected, key=repr)
            missing = sorted(expected - stored, key=repr)
            row = extra[0] if extra else missing[0]
            what = "holds a row no entry implies" if extra else "lacks the row of"
            seq = row[-1] if type(row[-1]) is int else None
            raise _Failed(f"index table {table} {what} {row!r} (entry {row[-1]!r})", seq)
