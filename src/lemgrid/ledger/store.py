"""The append-only ledger in SQLite.

One table holds the log (``entries``: position, kind, canonical bytes, leaf hash); a few index
tables repeat the facts that must be unique (nonces, order ids, trade ids, settled trades) under
UNIQUE constraints, as a second line of defence behind the in-memory rules. Triggers abort any
UPDATE or DELETE on every table. Each :meth:`Ledger.append` is one SQLite transaction: a batch is
stored whole or not at all, and the in-memory state is rolled back with it.

Published checkpoints are also written, one per line, to a *witness file* next to the database
(``<ledger>.witness.jsonl``); a copy held by someone other than the operator (or a chain anchor)
is what lets the verifier detect a log cut short after a published checkpoint.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lemgrid.errors import InputError
from lemgrid.ledger.identity import key_id, public_bytes, sign_payload
from lemgrid.ledger.journal import Rejection
from lemgrid.ledger.merkle import MerkleTree
from lemgrid.ledger.records import RecordError, SignedRecord
from lemgrid.ledger.rules import LedgerState, Prepared, check_batch, gc_paused

FORMAT = "lemgrid-ledger/1"
INCLUSION_FORMAT = "lemgrid-inclusion-proof/1"
CONSISTENCY_FORMAT = "lemgrid-consistency-proof/1"

#: Index tables: name -> (columns, primary key).
INDEX_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "nonces": (("key_id", "nonce", "seq"), ("key_id", "nonce")),
    "orders": (("market_id", "order_id", "seq"), ("market_id", "order_id")),
    "trades": (("market_id", "trade_id", "seq"), ("market_id", "trade_id")),
    "settled_trades": (("market_id", "trade_id", "settlement_id", "seq"),
                       ("market_id", "trade_id")),
}


def _schema() -> str:
    tables = ["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
              "CREATE TABLE entries (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
              "body BLOB NOT NULL, leaf_hash BLOB NOT NULL)"]
    for name, (columns, key) in INDEX_TABLES.items():
        cols = ", ".join(f"{c} {'INTEGER' if c == 'seq' else 'TEXT'} NOT NULL" for c in columns)
        tables.append(f"CREATE TABLE {name} ({cols}, PRIMARY KEY ({', '.join(key)})) "
                      "WITHOUT ROWID")
    for name in ["meta", "entries", *INDEX_TABLES]:
        for action in ("UPDATE", "DELETE"):
            tables.append(f"CREATE TRIGGER {name}_no_{action.lower()} BEFORE {action} ON {name} "
                          f"BEGIN SELECT RAISE(ABORT, 'ledger table {name} is append-only'); END")
    tables.append(f"INSERT INTO meta VALUES ('format', '{FORMAT}')")
    return "BEGIN;\n" + ";\n".join(tables) + ";\nCOMMIT;"


def index_rows(prepared: Prepared, seq: int) -> dict[str, list[tuple]]:
    """The index-table rows an accepted entry adds."""
    p, signer, kind = prepared.record.payload, prepared.record.signer, prepared.kind
    rows: dict[str, list[tuple]] = {}
    if "nonce" in p:
        rows["nonces"] = [(signer, p["nonce"], seq)]
    if kind == "order":
        rows["orders"] = [(p["market_id"], p["order_id"], seq)]
    elif kind == "reveal":
        order = p["order"]
        rows["nonces"].append((signer, order["nonce"], seq))
        rows["orders"] = [(order["market_id"], order["order_id"], seq)]
    elif kind == "trade":
        rows["trades"] = [(p["market_id"], p["trade_id"], seq)]
    elif kind == "settlement":
        rows["settled_trades"] = [(p["market_id"], t, p["settlement_id"], seq)
                                  for t in p["trade_ids"]]
    return rows


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
        Merkle root of the log afterwards (not yet signed: see :meth:`Ledger.checkpoint`).
    rejected : tuple of str
        Reasons of soft rejections recorded as rejection entries (mismatching reveals).
    """

    first_seq: int
    size: int
    root_hex: str
    rejected: tuple[str, ...] = ()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ledger:
    """An append-only, verifiable ledger stored in one SQLite file.

    Use :meth:`create` or :meth:`open`; close with :meth:`close` or a ``with`` block.

    Parameters
    ----------
    conn : sqlite3.Connection
        Open connection.
    path : Path
        Database file.
    state : LedgerState
        State after replaying the stored entries.
    operator_key : Ed25519PrivateKey or None
        The log key; needed to append operator records and checkpoints.
    witness_path : Path or None
        File receiving published checkpoints; None to publish nowhere.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, state: LedgerState,
                 operator_key: Ed25519PrivateKey | None, witness_path: Path | None) -> None:
        self._conn = conn
        self.path = path
        self.state = state
        self.witness_path = witness_path
        if operator_key is not None and key_id(operator_key) != state.operator_id:
            raise InputError(f"{path}: the operator key given is {key_id(operator_key)}, but the "
                             f"log's operator key is {state.operator_id}")
        self._operator_key = operator_key

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, operator_key: Ed25519PrivateKey, *,
               log_id: str | None = None, created_ms: int | None = None,
               witness_path: str | Path | None | bool = True) -> Ledger:
        """Create a new ledger file whose first entry is the signed log-init record.

        Parameters
        ----------
        path : str or Path
            Database file to create (must not exist).
        operator_key : Ed25519PrivateKey
            The log (operator) key.
        log_id : str, optional
            64 hex digits; random by default.
        created_ms : int, optional
            Creation time [ms since the Unix epoch]; now by default.
        witness_path : path, True or None
            Witness file; True for ``<path>.witness.jsonl``, None for none.
        """
        path = Path(path)
        if path.exists():
            raise InputError(f"ledger {path} already exists")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.executescript(_schema())
        ledger = cls(conn, path, LedgerState(), None, _witness(path, witness_path))
        ledger._operator_key = operator_key
        payload = {"kind": "log-init", "log_id": log_id or secrets.token_hex(32),
                   "operator_key": public_bytes(operator_key).hex(),
                   "created_ms": _now_ms() if created_ms is None else created_ms, "version": 1}
        try:
            ledger.append([ledger._sign(payload)])
        except Exception:
            conn.close()
            path.unlink(missing_ok=True)
            raise
        return ledger

    @classmethod
    def open(cls, path: str | Path, operator_key: Ed25519PrivateKey | None = None, *,
             witness_path: str | Path | None | bool = True) -> Ledger:
        """Open an existing ledger and rebuild its state from the stored entries.

        Signatures are not re-verified here (that is :func:`lemgrid.ledger.verify.verify_ledger`'s
        job); every rule is re-applied, so a corrupt file is refused.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"ledger {path} does not exist")
        try:
            conn = sqlite3.connect(path, isolation_level=None)
            fmt = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{path}: not a lemgrid ledger ({exc})") from None
        if fmt is None or fmt[0] != FORMAT:
            conn.close()
            raise InputError(f"{path}: not a lemgrid ledger (format {fmt and fmt[0]!r})")
        state = LedgerState()
        pending: dict = {}
        with gc_paused():
            for seq, _kind, body, _leaf in _rows(conn):
                try:
                    if seq != state.size:
                        raise Rejection(f"entry {state.size} is missing", "structure")
                    record = SignedRecord.from_json(json.loads(body))
                    state.apply(state.prepare(record, pending), True)
                except (ValueError, RecordError, Rejection) as exc:
                    conn.close()
                    raise InputError(f"ledger {path} is corrupt at entry {seq}: {exc}; run "
                                     "`lemgrid ledger verify`") from None
        if state.size == 0:
            conn.close()
            raise InputError(f"ledger {path} holds no entries")
        return cls(conn, path, state, operator_key, _witness(path, witness_path))

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

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
        return self.state.log_id  # type: ignore[return-value]

    @property
    def operator_public_key_hex(self) -> str:
        """The operator (log) public key, 64 hex digits."""
        return public_bytes(self.state.operator_key).hex()  # type: ignore[arg-type]

    def root(self) -> bytes:
        """Current Merkle root."""
        return self.state.tree.root()

    def entry(self, seq: int) -> dict:
        """Entry ``seq`` as a JSON object (``payload``, ``seq``, ``sig``, ``signer``)."""
        if not isinstance(seq, int) or not 0 <= seq < self.size:
            raise InputError(f"entry index must be in 0..{self.size - 1}, got {seq!r}")
        row = self._conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()
        return json.loads(row[0])

    def entries(self, kind: str | None = None) -> Iterator[dict]:
        """All entries (of one kind) in log order, as JSON objects."""
        sql = "SELECT body FROM entries" + (" WHERE kind = ?" if kind else "") + " ORDER BY seq"
        for (body,) in self._conn.execute(sql, (kind,) if kind else ()):
            yield json.loads(body)

    def leaf_hashes(self, size: int | None = None) -> list[bytes]:
        """Stored leaf hashes of the first ``size`` entries."""
        size = self.size if size is None else size
        return [row[0] for row in self._conn.execute(
            "SELECT leaf_hash FROM entries WHERE seq < ? ORDER BY seq", (size,))]

    # -- appending --------------------------------------------------------------------------
    def _sign(self, payload: dict) -> SignedRecord:
        if self._operator_key is None:
            raise InputError(f"ledger {self.path}: appending {payload.get('kind')} records needs "
                             "the operator key")
        return SignedRecord(payload, key_id(self._operator_key),
                            sign_payload(self._operator_key, payload))

    def append(self, records: Sequence[SignedRecord]) -> AppendResult:
        """Verify and append signed records, all or nothing.

        Parameters
        ----------
        records : sequence of SignedRecord
            Signed by participants or by the operator, in the order they are to be logged.

        Returns
        -------
        AppendResult

        Raises
        ------
        Rejection, RecordError
            At the first record that breaks a rule or its schema; nothing is written. A reveal
            that matches no commitment is not an error: it is recorded as a rejection entry.
        """
        state = self.state
        first = state.size
        token = state.begin()
        entries: list[tuple] = []
        index: dict[str, list[tuple]] = {name: [] for name in INDEX_TABLES}
        rejected: list[str] = []

        def on_entry(_i: int, prepared: Prepared, data: bytes, digest: bytes) -> None:
            seq = state.size - 1
            entries.append((seq, prepared.kind, data, digest))
            for table, rows in index_rows(prepared, seq).items():
                index[table].extend(rows)

        def on_soft(i: int, prepared: Prepared, exc: Rejection) -> None:
            p = prepared.record.payload
            rejection = self._sign({"kind": "rejection", "reason": exc.code,
                                    "market_id": p["market_id"], "interval": p["interval"],
                                    "participant": p["participant"],
                                    "submission": prepared.record.to_json()})
            item = state.prepare(rejection, {})
            on_entry(i, item, *state.apply(item, True))
            rejected.append(f"record {i}: {exc.reason}")

        try:
            check_batch(state, records, on_entry, on_soft)
            self._write(entries, index)
        except BaseException:
            state.rollback(token)
            raise
        state.commit()
        return AppendResult(first, state.size, state.tree.root().hex(), tuple(rejected))

    def _write(self, entries: list[tuple], index: dict[str, list[tuple]]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            # The in-memory state is only valid if nobody else appended since it was built.
            (stored,) = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM entries").fetchone()
            if entries and stored != entries[0][0]:
                conn.execute("ROLLBACK")
                raise InputError(f"ledger {self.path} holds {stored} entries, this process "
                                 f"expected {entries[0][0]}: another process appended to it; "
                                 "open it again")
            conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", entries)
            for table, rows in index.items():
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise InputError(f"ledger {self.path}: the database refused the batch ({exc}); its "
                             "tables disagree with its entries: run `lemgrid ledger verify`"
                             ) from None

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
        payload = {"kind": "checkpoint", "log_id": self.log_id, "tree_size": self.size,
                   "root_hash": self.root().hex(),
                   "timestamp_ms": _now_ms() if timestamp_ms is None else timestamp_ms}
        if label is not None:
            payload["label"] = label
        result = self.append_operator([payload])
        seq = result.first_seq
        body = self._conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
        if self.witness_path is not None:
            with open(self.witness_path, "ab") as out:
                out.write(body + b"\n")
        return json.loads(body)

    def close_reveals(self, market_id: str, interval: Any) -> AppendResult:
        """Reject every commitment of a market interval still unrevealed, then close reveals."""
        payloads = [{"kind": "rejection", "reason": "unrevealed", "market_id": market_id,
                     "interval": interval, "participant": participant, "commitment": digest}
                    for digest, participant in self.state.sealed.open_commitments(market_id,
                                                                                  interval)]
        payloads.append({"kind": "reveal-closure", "market_id": market_id, "interval": interval})
        return self.append_operator(payloads)

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


def _witness(path: Path, witness_path: str | Path | None | bool) -> Path | None:
    if witness_path is True:
        return default_witness_path(path)
    if witness_path is None or witness_path is False:
        return None
    return Path(witness_path)


def _rows(conn: sqlite3.Connection, chunk: int = 8192) -> Iterator[tuple]:
    cursor = conn.execute("SELECT seq, kind, body, leaf_hash FROM entries ORDER BY seq")
    while rows := cursor.fetchmany(chunk):
        yield from rows
