"""The ledger's SQLite storage: schema, connections, read snapshots and write transactions.

Every SQL statement and every transaction of the ledger is in this module, so that moving the
tables into another database (the market server's, through SQLAlchemy) changes this module only.

* **Tables.** ``entries`` is the log (position, kind, canonical leaf bytes, leaf hash); the index
  tables repeat the facts that must be unique (nonces, order ids, trade ids, settled trades) under
  primary keys, as a second line of defence behind the rules. Triggers abort any UPDATE or DELETE.
* **Concurrency.** The file is in WAL mode: a reader works on one snapshot for as long as its
  read transaction lasts, and appends by other processes neither block it nor show up in it. One
  writer at a time: a write transaction waits up to ``busy_timeout_s`` for the write lock, then
  fails with :class:`LedgerBusy`.
* **Crashes.** A process killed mid-append leaves uncommitted frames in the WAL (or, for a file in
  rollback-journal mode, a hot journal); SQLite ignores them (rolls the journal back) when the file
  is next opened, so the log is the one of the last committed append. A committed append is on disk
  (``synchronous = FULL``) before :meth:`LedgerDB.write` returns.
* **Permissions.** The file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600 (never
  through a planted symlink); SQLite gives the ``-wal`` and ``-shm`` files the same mode.

References
----------
.. [1] SQLite, "Write-Ahead Logging", https://www.sqlite.org/wal.html
.. [2] SQLite, "Atomic Commit In SQLite" (hot journals), https://www.sqlite.org/atomiccommit.html
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from lemgrid.errors import InputError

FORMAT = "lemgrid-ledger/2"

#: Seconds a write waits for another process's write transaction before giving up as busy.
BUSY_TIMEOUT_S = 10.0

#: Index tables: name -> (columns, primary key).
INDEX_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "nonces": (("key_id", "nonce", "seq"), ("key_id", "nonce")),
    "orders": (("market_id", "order_id", "seq"), ("market_id", "order_id")),
    "trades": (("market_id", "trade_id", "seq"), ("market_id", "trade_id")),
    "settled_trades": (("market_id", "trade_id", "settlement_id", "seq"),
                       ("market_id", "trade_id")),
}

#: A stored entry: (seq, kind, body, leaf_hash), as SQLite holds them (kind as UTF-8 bytes).
Row = tuple


class LedgerStorage(Protocol):
    """What the ledger needs of its storage: the SQLite file (:class:`LedgerDB`) or a SQL
    database through SQLAlchemy (:class:`lemgrid.ledger.sqldb.SqlLedgerDB`)."""

    @property
    def path(self) -> Path | str:
        """Where the ledger is (file path, or database URL without its password)."""
        ...

    def close(self) -> None: ...
    def snapshot(self) -> AbstractContextManager[LedgerStorage]: ...
    def write(self) -> AbstractContextManager[LedgerStorage]: ...
    def rows(self, start: int = 0) -> Iterator[Row]: ...
    def body(self, seq: int) -> bytes: ...
    def bodies(self, kind: str | None = None) -> Iterator[bytes]: ...
    def leaf_hashes(self, size: int) -> list[bytes]: ...
    def index_rows(self, table: str) -> set[tuple]: ...
    def integrity_problem(self) -> str | None: ...
    def insert(self, entries: Sequence[tuple], index: Mapping[str, Sequence[tuple]]) -> None: ...


class LedgerBusy(InputError):
    """Another process held the ledger's write lock for longer than the busy timeout."""


class LedgerDamaged(InputError):
    """The file cannot be read as a ledger database (corrupt pages, undecodable values, ...)."""


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


def _companions(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _text(value: object) -> object:
    """Text columns arrive as bytes (``text_factory = bytes``): decode, or keep what is there."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


class LedgerDB:
    """One connection to a ledger file. Use :meth:`create` or :meth:`open`.

    Parameters
    ----------
    conn : sqlite3.Connection
        Open connection (autocommit: transactions are explicit).
    path : Path
        Database file.
    busy_timeout_s : float
        Seconds to wait for another process's write lock [s].
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, busy_timeout_s: float) -> None:
        self._conn = conn
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        # Text as bytes: a damaged text value is then a value to report, not an exception from
        # the driver in the middle of a result set.
        conn.text_factory = bytes

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> LedgerDB:
        """Create a new ledger file (mode 0600, never through a symlink) with the schema."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise InputError(f"ledger {path} already exists") from None
        except OSError as exc:
            raise InputError(f"ledger {path}: cannot create it ({exc.strerror})") from None
        os.close(fd)
        try:
            db = cls(cls._connect(path, busy_timeout_s, readonly=False), path, busy_timeout_s)
            with db._errors():
                db._conn.execute("PRAGMA journal_mode = WAL")
                db._conn.executescript(_schema())
        except BaseException:
            cls.remove(path)
            raise
        return db

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False,
             busy_timeout_s: float = BUSY_TIMEOUT_S) -> LedgerDB:
        """Open an existing ledger file and check its format.

        A read-only connection cannot roll back the hot journal an interrupted append leaves in
        rollback-journal mode; if there is one and the file is writable, the connection is made
        read-write (with ``query_only``, so that only SQLite's own recovery writes).
        """
        if not path.is_file():
            raise InputError(f"ledger {path} does not exist")
        conn = None
        try:
            conn = cls._connect(path, busy_timeout_s, readonly)
            db = cls(conn, path, busy_timeout_s)
            fmt = db._format()
        except UnicodeDecodeError:  # SQLite's error message quotes damaged schema text
            if conn is not None:
                conn.close()
            raise LedgerDamaged(f"ledger {path}: the database file is damaged (its schema is "
                                "not valid text)") from None
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            if not (readonly and getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_ROLLBACK"
                    and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
                cls._raise_for(exc, path, busy_timeout_s, opening=True)
            db = cls(cls._connect(path, busy_timeout_s, readonly=False), path, busy_timeout_s)
            try:
                with db._errors(opening=True):
                    db._conn.execute("PRAGMA query_only = ON")
                    fmt = db._format()
            except BaseException:
                db.close()
                raise
        if fmt != FORMAT:
            db.close()
            older = " (written by an older lemgrid: re-create it)" if fmt and \
                str(fmt).startswith("lemgrid-ledger/") else ""
            raise InputError(f"{path}: not a lemgrid ledger of format {FORMAT} (format "
                             f"{fmt!r}){older}")
        return db

    @staticmethod
    def _connect(path: Path, busy_timeout_s: float, readonly: bool) -> sqlite3.Connection:
        if readonly:
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True,
                                   isolation_level=None, timeout=busy_timeout_s)
            conn.execute("PRAGMA cell_size_check = ON")
        else:
            conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_s)
            conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _format(self) -> object:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        return None if row is None else _text(row[0])

    @staticmethod
    def remove(path: Path) -> None:
        """Delete a ledger file and its WAL, shared-memory and journal files."""
        for file in (path, *_companions(path)):
            file.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    # -- errors and transactions ------------------------------------------------------------
    @staticmethod
    def _raise_for(exc: sqlite3.Error, path: Path, busy_timeout_s: float,
                   opening: bool = False) -> None:
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            raise LedgerBusy(f"ledger {path} is busy: another process has held it locked for "
                             f"more than {busy_timeout_s:g} s; try again") from None
        if name.startswith("SQLITE_CORRUPT") or (
                isinstance(exc, sqlite3.OperationalError) and "decode" in str(exc)):
            raise LedgerDamaged(f"ledger {path}: the database file is damaged ({exc})") from None
        if name.startswith("SQLITE_CANTOPEN"):
            raise InputError(f"ledger {path}: cannot open it ({exc}; SQLite needs to create "
                             f"{path.name}-wal and {path.name}-shm next to it)") from None
        if opening and isinstance(exc, sqlite3.DatabaseError):
            raise InputError(f"{path}: not a lemgrid ledger ({exc})") from None
        raise InputError(f"ledger {path}: the database refused the operation ({exc})") from None

    def _translate(self, exc: Exception, opening: bool = False) -> None:
        if isinstance(exc, UnicodeDecodeError):  # an error message quoting damaged text
            raise LedgerDamaged(f"ledger {self.path}: the database file is damaged (text that "
                                "is not valid UTF-8)") from None
        self._raise_for(exc, self.path, self.busy_timeout_s, opening)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def _errors(self, opening: bool = False) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._translate(exc, opening)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[LedgerDB]:
        """A read transaction: every read inside sees the same committed state of the file."""
        with self._errors():
            self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def write(self) -> Iterator[LedgerDB]:
        """A write transaction, committed (and on disk) when the block ends, rolled back if it
        raises. Waits up to ``busy_timeout_s`` for the write lock (:class:`LedgerBusy`)."""
        with self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
            with self._errors():
                self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            raise

    # -- reading ----------------------------------------------------------------------------
    def rows(self, start: int = 0) -> Iterator[Row]:
        """Stored entries from position ``start`` on, in log order, as stored."""
        with self._errors():
            cursor = self._conn.execute("SELECT seq, kind, body, leaf_hash FROM entries "
                                        "WHERE seq >= ? ORDER BY seq", (start,))
        while True:
            try:  # row by row, so that damage is located to the entry
                row = next(cursor, None)
            except (sqlite3.Error, UnicodeDecodeError) as exc:
                self._translate(exc)
            if row is None:
                return
            yield row

    def body(self, seq: int) -> bytes:
        """Stored bytes of entry ``seq``."""
        with self._errors():
            row = self._conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise LedgerDamaged(f"ledger {self.path}: entry {seq} is missing")
        return row[0]

    def bodies(self, kind: str | None = None) -> Iterator[bytes]:
        """Stored bytes of all entries (of one kind), in log order."""
        sql = "SELECT body FROM entries" + (" WHERE kind = ?" if kind else "") + " ORDER BY seq"
        with self._errors():
            for (body,) in self._conn.execute(sql, (kind,) if kind else ()):
                yield body

    def leaf_hashes(self, size: int) -> list[bytes]:
        """Stored leaf hashes of the first ``size`` entries."""
        with self._errors():
            return [row[0] for row in self._conn.execute(
                "SELECT leaf_hash FROM entries WHERE seq < ? ORDER BY seq", (size,))]

    def index_rows(self, table: str) -> set[tuple]:
        """The rows of an index table (text decoded where it decodes)."""
        with self._errors():
            return {tuple(_text(v) for v in row)
                    for row in self._conn.execute(f"SELECT * FROM {table}")}

    def integrity_problem(self) -> str | None:
        """SQLite's ``quick_check`` of the file: None if it holds, else its first complaint."""
        with self._errors():
            first = self._conn.execute("PRAGMA quick_check(1)").fetchone()
        message = _text(first[0]) if first else "no answer"
        return None if message == "ok" else str(message)

    # -- writing ----------------------------------------------------------------------------
    def insert(self, entries: Sequence[tuple], index: Mapping[str, Sequence[tuple]]) -> None:
        """Insert entries ``(seq, kind, body, leaf_hash)`` and their index rows (inside
        :meth:`write`)."""
        try:
            self._conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", entries)
            for table, rows in index.items():
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    self._conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        except sqlite3.IntegrityError as exc:
            raise InputError(f"ledger {self.path}: the database refused the batch ({exc}): its "
                             "index tables disagree with its entries; run `lemgrid ledger "
                             "verify`") from None
        except sqlite3.Error as exc:
            self._raise_for(exc, self.path, self.busy_timeout_s)


def index_rows(kind: str, payload: Mapping, signer: str, seq: int) -> dict[str, list[tuple]]:
    """The index-table rows an accepted entry adds.

    Parameters
    ----------
    kind : str
        Record kind.
    payload : dict
        The record's payload.
    signer : str
        Key id of the signer.
    seq : int
        Position of the entry.
    """
    p = payload
    rows: dict[str, list[tuple]] = {}
    if "nonce" in p:
        rows["nonces"] = [(signer, p["nonce"], seq)]
    if kind == "order":
        rows["orders"] = [(p["market_id"], p["order_id"], seq)]
    elif kind == "reveal":
        order = p["order"]
        rows["nonces"].append((signer, order["nonce"], seq))
        rows["orders"] = [(order["market_id"], order["order_id"], seq)]
    elif kind == "rejection" and "submission" in p:
        # The rejected reveal's nonce is spent: the same reveal cannot be submitted again.
        submission = p["submission"]
        rows["nonces"] = [(submission["signer"], submission["payload"]["nonce"], seq)]
    elif kind == "trade":
        rows["trades"] = [(p["market_id"], p["trade_id"], seq)]
    elif kind == "settlement":
        rows["settled_trades"] = [(p["market_id"], t, p["settlement_id"], seq)
                                  for t in p["trade_ids"]]
    return rows
