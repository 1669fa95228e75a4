"""The append-only ledger: signed records checked by the rules and stored in SQLite.

:class:`Ledger` keeps the rules' state (:class:`~lemgrid.ledger.rules.LedgerState`) in memory and
the log in a file (:mod:`lemgrid.ledger.db`, which holds all SQL). Each :meth:`Ledger.append` is
one write transaction: entries appended meanwhile by other processes are replayed first, then the
batch (and, if asked, the checkpoint that covers it) is checked and stored whole or not at all,
and the in-memory state is rolled back with it.

Published checkpoints are also written, one per line, to a *witness file* next to the database
(``<ledger>.witness.jsonl``); a copy held by someone other than the operator (or a chain anchor)
is what lets the verifier detect a log cut short after a published checkpoint. A line is written
with one ``write`` to a file opened ``O_APPEND``, after the checkpoint is committed: a crash can
leave a checkpoint unpublished, never a published one missing from the log or half a line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lemgrid.errors import InputError
from lemgrid.ledger.db import (
    BUSY_TIMEOUT_S,
    FORMAT,
    INDEX_TABLES,
    LedgerDB,
    LedgerStorage,
    Row,
    index_rows,
)
from lemgrid.ledger.identity import key_id, public_bytes, sign_payload
from lemgrid.ledger.journal import Rejection
from lemgrid.ledger.merkle import MerkleTree
from lemgrid.ledger.records import RecordError, SignedRecord
from lemgrid.ledger.rules import LedgerState, Prepared, check_batch, gc_paused

__all__ = ["FORMAT", "INDEX_TABLES", "INCLUSION_FORMAT", "CONSISTENCY_FORMAT", "AppendResult",
           "Ledger", "default_witness_path", "log_id_of"]

INCLUSION_FORMAT = "lemgrid-inclusion-proof/1"
CONSISTENCY_FORMAT = "lemgrid-consistency-proof/1"
#: Version of the log-init record (2: participant records and key possession name the log).
LOG_VERSION = 2


def default_witness_path(path: str | Path) -> Path:
    """Where published checkpoints of the ledger at ``path`` are written by default."""
    path = Path(path)
    return path.with_name(path.name + ".witness.jsonl")


@dataclass(frozen=True)
class AppendResult:
    """What an append did.

    Attributes
    ----------
    first_seq : int
        Position of the first entry written.
    size : int
        Number of entries in the log afterwards.
    root_hex : str
        Merkle root of the log afterwards.
    rejected : tuple of str
        Reasons of soft rejections recorded as rejection entries (mismatching reveals).
    checkpoint : dict or None
        The checkpoint entry appended with the batch (``payload``, ``seq``, ``sig``, ``signer``),
        if one was asked for.
    """

    first_seq: int
    size: int
    root_hex: str
    rejected: tuple[str, ...] = ()
    checkpoint: dict | None = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ledger:
    """An append-only, verifiable ledger stored in one SQLite file.

    Use :meth:`create` or :meth:`open`; close with :meth:`close` or a ``with`` block.

    Parameters
    ----------
    db : LedgerDB
        Open database.
    state : LedgerState
        State after replaying the stored entries.
    operator_key : Ed25519PrivateKey or None
        The log key; needed to append operator records and checkpoints.
    witness_path : Path or None
        File receiving published checkpoints; None to publish nowhere.
    """

    def __init__(self, db: LedgerStorage, state: LedgerState,
                 operator_key: Ed25519PrivateKey | None, witness_path: Path | None) -> None:
        self._db = db
        self.path = db.path
        self.state = state
        self.witness_path = witness_path
        if operator_key is not None and key_id(operator_key) != state.operator_id:
            raise InputError(f"{self.path}: the operator key given is {key_id(operator_key)}, "
                             f"but the log's operator key is {state.operator_id}")
        self._operator_key = operator_key

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, operator_key: Ed25519PrivateKey, *,
               log_id: str | None = None, created_ms: int | None = None,
               witness_path: str | Path | None | bool = True,
               busy_timeout_s: float = BUSY_TIMEOUT_S) -> Ledger:
        """Create a new ledger file whose first entry is the signed log-init record.

        Parameters
        ----------
        path : str or Path
            Database file to create (must not exist; created with mode 0600).
        operator_key : Ed25519PrivateKey
            The log (operator) key.
        log_id : str, optional
            64 hex digits; random by default.
        created_ms : int, optional
            Creation time [ms since the Unix epoch]; now by default.
        witness_path : path, True or None
            Witness file (must not exist yet); True for ``<path>.witness.jsonl``, None for none.
        busy_timeout_s : float
            How long a write waits for another process's write [s].
        """
        path = Path(path)
        witness = _witness(path, witness_path)
        if witness is not None and (witness.exists() or witness.is_symlink()):
            raise InputError(f"witness file {witness} already exists (checkpoints of an earlier "
                             "ledger?): move it away or choose another ledger path")
        db = LedgerDB.create(path, busy_timeout_s)
        ledger = cls(db, LedgerState(), None, witness)
        ledger._operator_key = operator_key
        payload = _log_init(operator_key, log_id, created_ms)
        try:
            ledger.append([ledger._sign(payload)])
        except BaseException:
            db.close()
            LedgerDB.remove(path)
            raise
        return ledger

    @classmethod
    def open(cls, path: str | Path, operator_key: Ed25519PrivateKey | None = None, *,
             witness_path: str | Path | None | bool = True,
             busy_timeout_s: float = BUSY_TIMEOUT_S) -> Ledger:
        """Open an existing ledger and rebuild its state from the stored entries.

        Signatures are not re-verified here (that is :func:`lemgrid.ledger.verify.verify_ledger`'s
        job); every rule is re-applied, so a corrupt file is refused.
        """
        path = Path(path)
        db = LedgerDB.open(path, busy_timeout_s=busy_timeout_s)
        state = LedgerState()
        try:
            with db.snapshot():
                _replay(state, db.rows(), path)
            if state.size == 0:
                raise InputError(f"ledger {path} holds no entries")
            return cls(db, state, operator_key, _witness(path, witness_path))
        except BaseException:
            db.close()
            raise

    @classmethod
    def create_sql(cls, engine: Any, operator_key: Ed25519PrivateKey, *,
                   log_id: str | None = None, created_ms: int | None = None) -> Ledger:
        """Create the ledger's tables in a SQL database (SQLAlchemy engine) with the log-init
        record. Checkpoints are published through the database (no witness file)."""
        from lemgrid.ledger.sqldb import SqlLedgerDB

        db = SqlLedgerDB.create(engine)
        ledger = cls(db, LedgerState(), None, None)
        ledger._operator_key = operator_key
        payload = _log_init(operator_key, log_id, created_ms)
        ledger.append([ledger._sign(payload)])
        return ledger

    @classmethod
    def open_sql(cls, engine: Any, operator_key: Ed25519PrivateKey | None = None) -> Ledger:
        """Open the ledger held in a SQL database (SQLAlchemy engine) and replay it."""
        from lemgrid.ledger.sqldb import SqlLedgerDB

        db = SqlLedgerDB.open(engine)
        state = LedgerState()
        with db.snapshot():
            _replay(state, db.rows(), db.path)
        if state.size == 0:
            raise InputError(f"ledger {db.path} holds no entries")
        return cls(db, state, operator_key, None)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- facts ------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of entries."""
        return self.state.size

    @property
    def log_id(self) -> str:
        """The log's id (64 hex digits)."""
        if self.state.log_id is None:
            raise InputError(f"ledger {self.path} has no log-init record")
        return self.state.log_id

    @property
    def operator_public_key_hex(self) -> str:
        """The operator (log) public key, 64 hex digits."""
        if self.state.operator_key is None:
            raise InputError(f"ledger {self.path} has no log-init record")
        return public_bytes(self.state.operator_key).hex()

    def root(self) -> bytes:
        """Current Merkle root."""
        return self.state.tree.root()

    def entry(self, seq: int) -> dict:
        """Entry ``seq`` as a JSON object (``payload``, ``seq``, ``sig``, ``signer``)."""
        if type(seq) is not int or not 0 <= seq < self.size:
            raise InputError(f"entry index must be in 0..{self.size - 1}, got {seq!r}")
        return json.loads(self._db.body(seq))

    def entries(self, kind: str | None = None) -> Iterator[dict]:
        """All entries (of one kind) in log order, as JSON objects."""
        for body in self._db.bodies(kind):
            yield json.loads(body)

    def leaf_hashes(self, size: int | None = None) -> list[bytes]:
        """Stored leaf hashes of the first ``size`` entries."""
        return self._db.leaf_hashes(self.size if size is None else size)

    # -- appending --------------------------------------------------------------------------
    def _sign(self, payload: dict) -> SignedRecord:
        if self._operator_key is None:
            raise InputError(f"ledger {self.path}: appending {payload.get('kind')} records needs "
                             "the operator key")
        return SignedRecord(payload, key_id(self._operator_key),
                            sign_payload(self._operator_key, payload))

    def append(self, records: Sequence[SignedRecord], *, checkpoint: bool = False,
               label: str | None = None, timestamp_ms: int | None = None) -> AppendResult:
        """Verify and append signed records, all or nothing, in one transaction.

        Parameters
        ----------
        records : sequence of SignedRecord
            Signed by participants or by the operator, in the order they are to be logged.
        checkpoint : bool
            Also append, in the same transaction, a signed checkpoint covering the batch (needs
            the operator key), and publish it to the witness file once committed.
        label : str, optional
            The checkpoint's label (e.g. the market interval or gate closure it marks).
        timestamp_ms : int, optional
            The checkpoint's time [ms since the Unix epoch]; default now, or the previous
            checkpoint's time if that one is ahead of this process's clock (time never goes back).

        Returns
        -------
        AppendResult

        Raises
        ------
        Rejection, RecordError
            At the first record that breaks a rule or its schema; nothing is written. A reveal
            that matches no commitment is not an error: it is recorded as a rejection entry.
            A checkpoint dated ahead of the clock is refused (it would block later ones).
        LedgerBusy
            If another process holds the write lock for longer than the busy timeout.
        """
        state = self.state
        token = state.begin()
        try:
            with self._db.write() as tx:
                result, batch = self._append_in(tx, records, checkpoint, label, timestamp_ms)
        except BaseException:
            state.rollback(token)
            raise
        state.commit()
        self._publish([body for _, kind, body, _ in batch.entries if kind == "checkpoint"])
        return result

    def _append_in(self, tx: Any, records: Sequence[SignedRecord], checkpoint: bool,
                   label: str | None, timestamp_ms: int | None) -> tuple[AppendResult, _Batch]:
        """Check and insert a batch inside the open write transaction ``tx``."""
        state = self.state
        _replay(state, tx.rows(state.size), self.path)  # appended by other processes
        now_ms = _now_ms()
        first = state.size
        batch = _Batch(self, now_ms)
        check_batch(state, records, batch.on_entry, batch.on_soft, clock_ms=now_ms)
        cp_entry = None
        if checkpoint:
            cp_entry = batch.add_checkpoint(label, timestamp_ms)
        tx.insert(batch.entries, batch.index)
        return (AppendResult(first, state.size, state.tree.root().hex(), tuple(batch.rejected),
                             cp_entry), batch)

    @contextlib.contextmanager
    def transaction(self, conn: Any) -> Iterator[_Transaction]:
        """Appends that commit with the caller's database transaction (the server's effects).

        Parameters
        ----------
        conn : sqlalchemy.engine.Connection
            A connection of the engine the ledger lives in, inside a transaction the caller
            commits after this block; the ledger's write lock is taken in it.

        Yields
        ------
        _Transaction
            ``append(records, ...)`` and ``append_operator(payloads)`` as on the ledger; the
            entries are inserted through ``conn``.

        Notes
        -----
        The in-memory state is rolled back if the block raises. If the caller's commit fails
        after the block, call :meth:`resync` (the server does, for every failed commit).
        """
        from lemgrid.ledger.sqldb import SqlLedgerDB

        if not isinstance(self._db, SqlLedgerDB):
            raise InputError(f"ledger {self.path} is a file ledger; transactions with other "
                             "tables need the ledger in a SQL database (Ledger.open_sql)")
        SqlLedgerDB.lock(conn)
        tx = _Transaction(self, self._db.bound(conn))
        token = self.state.begin()
        try:
            yield tx
        except BaseException:
            self.state.rollback(token)
            raise
        self.state.commit()

    @contextlib.contextmanager
    def group(self, conn: Any) -> Iterator[_Group]:
        """Many independent appends committed together with the caller's transaction.

        Unlike :meth:`transaction`, a rejected append undoes only itself: the others of the group
        stay (a group commit of orders from many participants). The entries are inserted through
        ``conn`` when the block ends, in one statement per table.

        Parameters
        ----------
        conn : sqlalchemy.engine.Connection
            As for :meth:`transaction`.

        Notes
        -----
        If the block raises, the in-memory state is rebuilt here as it was before the group; if
        the caller's commit fails afterwards, call :meth:`resync` (the state is then ahead of the
        database).
        """
        from lemgrid.ledger.sqldb import SqlLedgerDB

        if not isinstance(self._db, SqlLedgerDB):
            raise InputError(f"ledger {self.path} is a file ledger; transactions with other "
                             "tables need the ledger in a SQL database (Ledger.open_sql)")
        SqlLedgerDB.lock(conn)
        db = self._db.bound(conn)
        _replay(self.state, db.rows(self.state.size), self.path)  # other processes'
        start = self.state.size
        try:
            group = _Group(self)
            yield group
            db.insert(group.entries, group.index)
        except BaseException:
            # Rebuilt through the caller's connection: a second one would wait for the write
            # lock this transaction holds. If the connection is broken, the caller's resync()
            # after its transaction does it.
            with contextlib.suppress(Exception):
                state = LedgerState()
                _replay(state, (row for row in db.rows() if row[0] < start), self.path)
                self.state = state
            raise

    def resync(self) -> None:
        """Rebuild the in-memory state from the stored entries (after a failed commit)."""
        state = LedgerState()
        with self._db.snapshot():
            _replay(state, self._db.rows(), self.path)
        self.state = state

    def _publish(self, bodies: list[bytes]) -> None:
        if self.witness_path is None or not bodies:
            return
        try:
            fd = os.open(self.witness_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                         0o644)
            try:
                os.write(fd, b"".join(body + b"\n" for body in bodies))
            finally:
                os.close(fd)
        except OSError as exc:
            raise InputError(f"the checkpoint was recorded in {self.path} but could not be "
                             f"published to the witness file {self.witness_path} "
                             f"({exc.strerror}); run `lemgrid ledger checkpoint` again once it "
                             "is writable") from None

    def append_operator(self, payloads: Sequence[dict]) -> AppendResult:
        """Sign payloads with the operator key and append them (all or nothing)."""
        return self.append([self._sign(p) for p in payloads])

    def checkpoint(self, label: str | None = None, timestamp_ms: int | None = None) -> dict:
        """Append a signed checkpoint of the current tree and publish it to the witness file.

        Parameters
        ----------
        label : str, optional
            E.g. the market interval or gate closure the checkpoint marks.
        timestamp_ms : int, optional
            Checkpoint time [ms since the Unix epoch]; now by default.

        Returns
        -------
        dict
            The checkpoint entry (``payload``, ``seq``, ``sig``, ``signer``).
        """
        entry = self.append([], checkpoint=True, label=label, timestamp_ms=timestamp_ms).checkpoint
        if entry is None:
            raise RuntimeError(f"ledger {self.path}: the checkpoint append recorded no checkpoint")
        return entry

    def close_reveals(self, market_id: str, interval: Any) -> AppendResult:
        """Reject every commitment of a market interval still unrevealed, then close reveals."""
        return self.append_operator(self.reveal_closure_payloads(market_id, interval))

    def reveal_closure_payloads(self, market_id: str, interval: Any) -> list[dict]:
        """The operator records that close the reveals of a market interval: an ``unrevealed``
        rejection per commitment still open, then the ``reveal-closure``."""
        payloads = [{"kind": "rejection", "reason": "unrevealed", "market_id": market_id,
                     "interval": interval, "participant": participant, "commitment": digest}
                    for digest, participant in self.state.sealed.open_commitments(market_id,
                                                                                  interval)]
        payloads.append({"kind": "reveal-closure", "market_id": market_id, "interval": interval})
        return payloads

    # -- proofs -----------------------------------------------------------------------------
    def inclusion_proof(self, seq: int, checkpoint_seq: int | None = None) -> dict:
        """Inclusion proof of entry ``seq`` against a checkpoint that covers it.

        Parameters
        ----------
        seq : int
            Position of the entry.
        checkpoint_seq : int, optional
            Position of the checkpoint entry to prove against; default the latest one.

        Returns
        -------
        dict
            ``format``, ``log_id``, ``log_key``, ``leaf_index``, ``tree_size``, ``entry``,
            ``audit_path`` (hex, leaf to root) and ``checkpoint`` (the signed checkpoint entry).
            :func:`lemgrid.ledger.proofs.check_proof` verifies it without the database.
        """
        entry = self.entry(seq)
        covering = [c for c in self.state.checkpoints if c.tree_size > seq]
        if checkpoint_seq is not None:
            chosen = [c for c in covering if c.seq == checkpoint_seq]
            if not chosen:
                raise InputError(f"entry {checkpoint_seq} is not a checkpoint covering entry "
                                 f"{seq} (those are at entries {[c.seq for c in covering]})")
            covering = chosen
        if not covering:
            last = self.state.checkpoints[-1].tree_size if self.state.checkpoints else 0
            raise InputError(f"entry {seq} is not covered by a checkpoint yet (the last "
                             f"checkpoint covers entries 0..{last - 1}); append one with "
                             "`lemgrid ledger checkpoint`")
        checkpoint = covering[-1]
        tree = MerkleTree(self.leaf_hashes(checkpoint.tree_size))
        return {"format": INCLUSION_FORMAT, "log_id": self.log_id,
                "log_key": self.operator_public_key_hex, "leaf_index": seq,
                "tree_size": checkpoint.tree_size, "entry": entry,
                "audit_path": [h.hex() for h in tree.inclusion_path(seq, checkpoint.tree_size)],
                "checkpoint": self.entry(checkpoint.seq)}

    def consistency_proof(self, first_seq: int, second_seq: int) -> dict:
        """Consistency proof between two checkpoint entries (given by their positions)."""
        by_seq = {c.seq: c for c in self.state.checkpoints}
        for seq in (first_seq, second_seq):
            if seq not in by_seq:
                raise InputError(f"entry {seq} is not a checkpoint (checkpoints are at entries "
                                 f"{sorted(by_seq) or 'none'})")
        first, second = by_seq[first_seq], by_seq[second_seq]
        if first.tree_size > second.tree_size:
            raise InputError("the first checkpoint must not be newer than the second")
        tree = MerkleTree(self.leaf_hashes(second.tree_size))
        return {"format": CONSISTENCY_FORMAT, "log_id": self.log_id,
                "log_key": self.operator_public_key_hex,
                "first": self.entry(first_seq), "second": self.entry(second_seq),
                "consistency_path": [h.hex() for h in tree.consistency_path(first.tree_size,
                                                                             second.tree_size)]}


class _Transaction:
    """Appends inside a caller's database transaction (see :meth:`Ledger.transaction`)."""

    def __init__(self, ledger: Ledger, db: Any) -> None:
        self.ledger, self._db = ledger, db
        self.results: list[AppendResult] = []

    def append(self, records: Sequence[SignedRecord], *, checkpoint: bool = False,
               label: str | None = None, timestamp_ms: int | None = None) -> AppendResult:
        """Check and insert records (and a checkpoint covering them, if asked)."""
        result, _ = self.ledger._append_in(self._db, records, checkpoint, label, timestamp_ms)
        self.results.append(result)
        return result

    def append_operator(self, payloads: Sequence[dict], **kwargs: Any) -> AppendResult:
        """Sign payloads with the operator key and append them."""
        return self.append([self.ledger._sign(p) for p in payloads], **kwargs)


class _Group:
    """Independent appends of one group (see :meth:`Ledger.group`)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.entries: list[tuple] = []
        self.index: dict[str, list[tuple]] = {name: [] for name in INDEX_TABLES}

    def append(self, records: Sequence[SignedRecord], *,
               verified: Container[tuple[bytes, str, bytes]] = ()) -> AppendResult:
        """Check records as one all-or-nothing append; a :class:`Rejection` undoes only them.

        ``verified`` holds signatures already checked by the caller (see
        :func:`~lemgrid.ledger.rules.check_batch`).

        Raises
        ------
        Rejection, RecordError
            As :meth:`Ledger.append`; the group's other appends are kept.
        """
        state = self.ledger.state
        token = state.begin()
        now_ms = _now_ms()
        first = state.size
        batch = _Batch(self.ledger, now_ms)
        try:
            check_batch(state, records, batch.on_entry, batch.on_soft, clock_ms=now_ms,
                        verified=verified)
        except BaseException:
            state.rollback(token)
            raise
        state.commit()
        self.entries.extend(batch.entries)
        for name, rows in batch.index.items():
            self.index[name].extend(rows)
        return AppendResult(first, state.size, state.tree.root().hex(), tuple(batch.rejected))

    def append_operator(self, payloads: Sequence[dict]) -> AppendResult:
        """Sign payloads with the operator key and append them (one append of the group)."""
        return self.append([self.ledger._sign(p) for p in payloads])


class _Batch:
    """The entries and index rows of one append, as the rules accept them."""

    def __init__(self, ledger: Ledger, now_ms: int) -> None:
        self.ledger, self.now_ms = ledger, now_ms
        self.entries: list[tuple] = []
        self.index: dict[str, list[tuple]] = {name: [] for name in INDEX_TABLES}
        self.rejected: list[str] = []

    def on_entry(self, _i: int, prepared: Prepared, data: bytes, digest: bytes) -> None:
        seq = self.ledger.state.size - 1
        self.entries.append((seq, prepared.kind, data, digest))
        for table, rows in index_rows(prepared.kind, prepared.record.payload,
                                      prepared.record.signer, seq).items():
            self.index[table].extend(rows)

    def _add_own(self, payload: dict) -> bytes:
        """Sign an operator record made during the append and apply it; returns its bytes."""
        state = self.ledger.state
        item = state.prepare(self.ledger._sign(payload), {})
        data, digest = state.apply(item, True, clock_ms=self.now_ms)
        self.on_entry(-1, item, data, digest)
        return data

    def on_soft(self, i: int, prepared: Prepared, exc: Rejection) -> None:
        p = prepared.record.payload
        self._add_own({"kind": "rejection", "reason": exc.code, "market_id": p["market_id"],
                       "interval": p["interval"], "participant": p["participant"],
                       "submission": prepared.record.to_json()})
        self.rejected.append(f"record {i}: {exc.reason}")

    def add_checkpoint(self, label: str | None, timestamp_ms: int | None) -> dict:
        state = self.ledger.state
        if timestamp_ms is None:
            last = state.checkpoints[-1].timestamp_ms if state.checkpoints else 0
            timestamp_ms = max(self.now_ms, last)
        payload = {"kind": "checkpoint", "log_id": state.log_id, "tree_size": state.size,
                   "root_hash": state.tree.root().hex(), "timestamp_ms": timestamp_ms}
        if label is not None:
            payload["label"] = label
        try:
            data = self._add_own(payload)
        except RecordError as exc:  # e.g. a label too long
            raise Rejection(f"checkpoint: {exc}", "bad-record") from None
        return json.loads(data)


def _log_init(operator_key: Ed25519PrivateKey, log_id: str | None,
              created_ms: int | None) -> dict:
    """The first record of a new log: its id (random unless given), the operator's key."""
    return {"kind": "log-init", "log_id": log_id or secrets.token_hex(32),
            "operator_key": public_bytes(operator_key).hex(),
            "created_ms": _now_ms() if created_ms is None else created_ms,
            "version": LOG_VERSION}


def _replay(state: LedgerState, rows: Iterable[Row], path: Path | str) -> None:
    """Apply stored entries to ``state`` through the rules (signatures are not re-verified)."""
    pending: dict = {}
    with gc_paused():
        for seq, _kind, body, _leaf in rows:
            try:
                if seq != state.size:
                    raise Rejection(f"entry {state.size} is missing", "structure")
                record = SignedRecord.from_json(json.loads(body))
                state.apply(state.prepare(record, pending), True)
            except (ValueError, TypeError, RecordError, Rejection) as exc:
                raise InputError(f"ledger {path} is corrupt at entry {seq}: {exc}; run "
                                 "`lemgrid ledger verify`") from None


def log_id_of(path: str | Path) -> str:
    """The id of the ledger at ``path``, read from its log-init entry (without replaying the log).

    Raises
    ------
    InputError
        If the file is not a ledger or its first entry is not a log-init record.
    """
    path = Path(path)
    db = LedgerDB.open(path, readonly=True)
    try:
        payload = json.loads(db.body(0)).get("payload")
    except (ValueError, AttributeError):
        payload = None
    finally:
        db.close()
    if type(payload) is not dict or payload.get("kind") != "log-init":
        raise InputError(f"ledger {path}: its first entry is not a log-init record")
    return payload["log_id"]


def _witness(path: Path, witness_path: str | Path | None | bool) -> Path | None:
    if witness_path is True:
        return default_witness_path(path)
    if witness_path is None or witness_path is False:
        return None
    return Path(witness_path)
