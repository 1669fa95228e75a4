"""The ledger's tables on SQLAlchemy Core, so that they live in any SQL database (SQLite or
PostgreSQL): the market server keeps them in its own database and appends to them in the same
transaction as the effect each record describes.

:class:`SqlLedgerDB` offers the same reading and writing methods as :class:`~lemgrid.ledger.db.
LedgerDB` (the single-file ledger of the lab), on a SQLAlchemy engine. Its tables carry a
``ledger_`` prefix so that they sit beside the server's own tables. Two ways to write:

* :meth:`SqlLedgerDB.write` opens its own transaction (``lemgrid ledger`` commands);
* :meth:`SqlLedgerDB.bound` wraps a connection whose transaction the caller owns (the server):
  entries are inserted there and are committed or rolled back with the caller's effect.

Append-only is enforced by the rules and the verifier (``lemgrid ledger verify`` recomputes every
hash and index row); the lab's SQLite file adds triggers on top, which this portable schema leaves
out.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lemgrid.errors import InputError
from lemgrid.ledger.db import BUSY_TIMEOUT_S, FORMAT, INDEX_TABLES, LedgerDamaged

__all__ = ["METADATA", "SqlLedgerDB", "insert_rows", "is_database_url", "make_engine"]

METADATA = sa.MetaData()

META = sa.Table("ledger_meta", METADATA,
                sa.Column("key", sa.String(100), primary_key=True),
                sa.Column("value", sa.Text, nullable=False))
ENTRIES = sa.Table("ledger_entries", METADATA,
                   sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
                   sa.Column("kind", sa.String(40), nullable=False),
                   sa.Column("body", sa.LargeBinary, nullable=False),
                   sa.Column("leaf_hash", sa.LargeBinary, nullable=False))
INDEX = {name: sa.Table(f"ledger_{name}", METADATA,
                        *[sa.Column(c, sa.BigInteger if c == "seq" else sa.String(200),
                                    primary_key=c in key, autoincrement=False, nullable=False)
                          for c in columns])
         for name, (columns, key) in INDEX_TABLES.items()}


def is_database_url(target: object) -> bool:
    """True if ``target`` is a SQLAlchemy database URL (``sqlite:///...``, ``postgresql://...``)."""
    return isinstance(target, str) and "://" in target


def make_engine(url: str, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with ``synchronous = FULL``; PostgreSQL through
    psycopg 3 (``postgresql://`` is read as ``postgresql+psycopg://``).

    Raises
    ------
    InputError
        If the URL is not one SQLAlchemy can open.
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_s,
                                                         "check_same_thread": False})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
                dbapi_conn.isolation_level = None  # SQLAlchemy issues BEGIN itself (below)
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = FULL")
                cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
                cur.close()

            @sa.event.listens_for(engine, "begin")
            def _begin(conn) -> None:  # noqa: ANN001
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
        raise InputError(f"database URL {url!r}: {exc}") from None
    return engine


_INSERTS: dict[tuple[str, str], tuple[str, Callable[[Mapping], tuple] | None]] = {}


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping]) -> None:
    """Insert rows (one mapping per row, keyed by column name) with one ``executemany``.

    The INSERT is compiled once per dialect and table and handed to the driver as it is, which
    costs about half of what SQLAlchemy's per-row parameter processing does; only for columns
    whose values the driver takes as they are (strings, integers, bytes).
    """
    key = (conn.dialect.name, table.name)
    if key not in _INSERTS:
        compiled = table.insert().compile(dialect=conn.dialect)
        positional = compiled.positiontup
        _INSERTS[key] = (str(compiled), None if positional is None else (
            operator.itemgetter(*positional) if len(positional) > 1
            else lambda row: (row[positional[0]],)))
    sql, values = _INSERTS[key]
    if values is None:
        conn.exec_driver_sql(sql, [dict(row) for row in rows])
    else:
        conn.exec_driver_sql(sql, [values(row) for row in rows])


class SqlLedgerDB:
    """The ledger's tables in a SQL database.

    Parameters
    ----------
    engine : Engine
        Where the tables are.
    conn : Connection, optional
        A connection inside a transaction owned by the caller (see :meth:`bound`).
    """

    def __init__(self, engine: Engine, conn: Connection | None = None) -> None:
        self.engine = engine
        self.path = engine.url.render_as_string(hide_password=True)
        self.busy_timeout_s = BUSY_TIMEOUT_S
        self._conn = conn
        self._owned: Connection | None = None

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(cls, engine: Engine) -> SqlLedgerDB:
        """Create the ledger tables (refused if they already hold a ledger)."""
        METADATA.create_all(engine)
        db = cls(engine)
        with engine.begin() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(ENTRIES)).scalar():
                raise InputError(f"{db.path} already holds a ledger")
            if conn.execute(sa.select(META.c.value).where(META.c.key == "format")).first() is None:
                conn.execute(META.insert().values(key="format", value=FORMAT))
        return db

    @classmethod
    def open(cls, engine: Engine, readonly: bool = False) -> SqlLedgerDB:  # noqa: ARG003
        """Open the ledger tables of a database and check their format."""
        db = cls(engine)
        try:
            with engine.connect() as conn:
                row = conn.execute(sa.select(META.c.value).where(META.c.key == "format")).first()
        except sa.exc.OperationalError as exc:
            raise InputError(f"database {db.path}: cannot open it ({exc.orig})") from None
        except sa.exc.ProgrammingError:
            row = None
        except sa.exc.DatabaseError as exc:
            raise LedgerDamaged(f"database {db.path}: {exc.orig}") from None
        if row is None:
            raise InputError(f"database {db.path} holds no lemgrid ledger (no ledger_meta "
                             "format row)")
        if row[0] != FORMAT:
            raise InputError(f"{db.path}: not a lemgrid ledger of format {FORMAT} (format "
                             f"{row[0]!r})")
        return db

    def bound(self, conn: Connection) -> SqlLedgerDB:
        """The same tables, read and written through ``conn`` (whose transaction the caller
        commits or rolls back)."""
        return SqlLedgerDB(self.engine, conn)

    def close(self) -> None:
        """Release the snapshot connection, if any (the engine stays open)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    # -- transactions -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _c(self) -> Iterator[Connection]:
        """The connection to read through: the bound one, the snapshot's, or a short-lived one
        (never left open: on SQLite an open transaction would hold the write lock)."""
        if self._conn is not None:
            yield self._conn
        elif self._owned is not None:
            yield self._owned
        else:
            with self.engine.connect() as conn:
                yield conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[SqlLedgerDB]:
        """A read transaction: every read inside sees one committed state."""
        if self._conn is not None:
            yield self
            return
        conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        self._owned = conn
        try:
            with conn.begin():
                yield self
        finally:
            conn.close()
            self._owned = None

    @contextlib.contextmanager
    def write(self) -> Iterator[SqlLedgerDB]:
        """A write transaction, committed when the block ends (inside the caller's own
        transaction if bound)."""
        if self._conn is not None:
            yield self
            return
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("LOCK TABLE ledger_entries IN EXCLUSIVE MODE"))
            yield SqlLedgerDB(self.engine, conn)

    @staticmethod
    def lock(conn: Connection) -> None:
        """Take the ledger's write lock in ``conn``'s transaction (one appender at a time)."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("LOCK TABLE ledger_entries IN EXCLUSIVE MODE"))

    # -- reading ----------------------------------------------------------------------------
    def rows(self, start: int = 0) -> Iterator[tuple]:
        """Stored entries ``(seq, kind, body, leaf_hash)`` from ``start`` on, in log order."""
        with self._c() as conn:
            result = conn.execute(sa.select(ENTRIES).where(ENTRIES.c.seq >= start)
                                  .order_by(ENTRIES.c.seq)).all()
        for seq, kind, body, leaf in result:
            yield int(seq), kind, bytes(body), bytes(leaf)

    def body(self, seq: int) -> bytes:
        """Stored bytes of entry ``seq``."""
        with self._c() as conn:
            row = conn.execute(sa.select(ENTRIES.c.body).where(ENTRIES.c.seq == seq)).first()
        if row is None:
            raise LedgerDamaged(f"ledger {self.path}: entry {seq} is missing")
        return bytes(row[0])

    def bodies(self, kind: str | None = None) -> Iterator[bytes]:
        """Stored bytes of all entries (of one kind), in log order."""
        query = sa.select(ENTRIES.c.body).order_by(ENTRIES.c.seq)
        if kind:
            query = query.where(ENTRIES.c.kind == kind)
        with self._c() as conn:
            rows = conn.execute(query).all()
        for (body,) in rows:
            yield bytes(body)

    def leaf_hashes(self, size: int) -> list[bytes]:
        """Stored leaf hashes of the first ``size`` entries."""
        with self._c() as conn:
            return [bytes(r[0]) for r in conn.execute(
                sa.select(ENTRIES.c.leaf_hash).where(ENTRIES.c.seq < size)
                .order_by(ENTRIES.c.seq))]

    def index_rows(self, table: str) -> set[tuple]:
        """The rows of an index table."""
        with self._c() as conn:
            return {tuple(row) for row in conn.execute(sa.select(INDEX[table]))}

    def integrity_problem(self) -> str | None:
        """SQLite's ``quick_check`` on SQLite; None on servers that check pages themselves."""
        if self.engine.dialect.name != "sqlite":
            return None
        with self._c() as conn:
            first = conn.exec_driver_sql("PRAGMA quick_check(1)").first()
        message = first[0] if first else "no answer"
        return None if message == "ok" else str(message)

    # -- writing ----------------------------------------------------------------------------
    def insert(self, entries: Sequence[tuple], index: Mapping[str, Sequence[tuple]]) -> None:
        """Insert entries ``(seq, kind, body, leaf_hash)`` and their index rows."""
        conn = self._conn
        if conn is None:
            raise InputError("ledger insert outside a write transaction")
        try:
            if entries:
                insert_rows(conn, ENTRIES, [dict(seq=s, kind=k, body=b, leaf_hash=h)
                                            for s, k, b, h in entries])
            for name, rows in index.items():
                if rows:
                    cols = INDEX_TABLES[name][0]
                    insert_rows(conn, INDEX[name], [dict(zip(cols, r)) for r in rows])
        except sa.exc.IntegrityError as exc:
            raise InputError(f"ledger {self.path}: the database refused the batch ({exc.orig}): "
                             "its index tables disagree with its entries; run `lemgrid ledger "
                             "verify`") from None
