"""The market operator's state transitions: each runs in one database transaction that also
appends its ledger records, so that no effect exists without its record or the reverse.

:class:`Market` is used by the FastAPI app (:mod:`lemgrid.service.app`) and needs no HTTP: the
tests drive sessions on a simulated clock through :meth:`Market.tick`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lemgrid.errors import InputError
from lemgrid.ledger.identity import key_id
from lemgrid.ledger.journal import Rejection
from lemgrid.ledger.records import SignedRecord
from lemgrid.ledger.sqldb import METADATA as LEDGER_METADATA
from lemgrid.ledger.rules import gc_paused
from lemgrid.ledger.sqldb import insert_rows, make_engine
from lemgrid.ledger.store import Ledger
from lemgrid.service import engine as lab
from lemgrid.service import tables as t

ROLES = ("operator", "participant", "aggregator", "dso", "tso")
#: Session states of a sealed-bid session before it is cleared (:mod:`lemgrid.service.sealed`).
SEALED_STATES = ("commit", "reveal")
#: At most this many orders are committed in one transaction by the order writer.
MAX_GROUP = 512


_KEYS_PER_QUERY = 256


@functools.lru_cache(maxsize=16)
def _idempotency_query(size: int) -> sa.Select:
    """The stored idempotency rows of ``size`` (key id, key) pairs, bound as ``k0, i0, ...``:
    one statement per size, so that SQLAlchemy compiles it once (an expanding ``IN`` is
    rendered anew on every call, which cost more than the rest of a group's reads)."""
    pairs = [sa.tuple_(sa.bindparam(f"k{j}"), sa.bindparam(f"i{j}")) for j in range(size)]
    return sa.select(t.idempotency).where(
        sa.tuple_(t.idempotency.c.key_id, t.idempotency.c.idem_key).in_(pairs))


class Refused(Exception):
    """A request refused with an HTTP status and a message naming the field."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


#: Ledger rejection codes -> HTTP status.
_STATUS = {"not-owner": 403, "wrong-meter": 403, "unknown-key": 403, "bad-signature": 403,
           "revoked-key": 403, "not-operator": 403, "replay": 409, "duplicate": 409,
           "double-spend": 409, "closed": 409, "too-late": 409, "filled": 409,
           "no-capability": 409, "unknown-order": 404}


def refused_by_ledger(exc: Rejection) -> Refused:
    """The HTTP answer to a record the ledger's rules refuse."""
    return Refused(_STATUS.get(exc.code, 422), f"ledger refused the record ({exc.code}): "
                                               f"{exc.reason}")


@dataclass
class _Intake:
    """An order waiting for the order writer; ``answer`` is set after its batch commits."""

    identity: dict
    market_id: str
    record: SignedRecord
    idem_key: str | None
    body_sha256: str
    answer: Any = field(default_factory=Future)  # or an asyncio future (the app's)
    #: The message of the order's signature, if the app has verified it already (then the
    #: ledger does not verify it again; see :mod:`lemgrid.service.verifier`).
    order_message: bytes | None = None


class _Staged:
    """A group's transaction, written but not committed (:meth:`Market.stage_orders`)."""

    def __init__(self, market: Market, conn: sa.engine.Connection, trans: Any,
                 outcomes: list[tuple[int, dict, bool] | BaseException]) -> None:
        self.market, self.conn, self.trans, self.outcomes = market, conn, trans, outcomes

    def commit(self) -> None:
        """Commit (the database's sync happens here) and release the write lock; on failure
        the ledger's state is rebuilt from the database and the error raised."""
        try:
            self.trans.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                self.conn.close()  # rolls back, and frees SQLite's write lock for the resync
            try:
                self.market.ledger.resync()
                self.market.intraday.reset()
            finally:
                self.market._lock.release()
            raise
        try:
            self.conn.close()
        finally:
            self.market._lock.release()


class Market:
    """One market: database, ledger, clock and live-feed subscribers.

    Parameters
    ----------
    db_url : str
        SQLAlchemy URL (``sqlite:///market.db`` or ``postgresql://...``).
    operator_key : Ed25519PrivateKey
        The operator's (log) key; signs operator records and checkpoints.
    clock_ms : callable
        Current time [ms since the Unix epoch]; wall time in production, simulated in tests.
    spec : MarketSpec, optional
        From a scenario: the meters keys may be bound to, and the default mechanism.
    """

    def __init__(self, db_url: str, operator_key: Ed25519PrivateKey,
                 clock_ms: Callable[[], int], spec: lab.MarketSpec | None = None) -> None:
        self.engine = make_engine(db_url)
        self.clock_ms = clock_ms
        self.spec = spec
        self.operator_key = operator_key
        from lemgrid.service.migrations import upgrade

        upgrade(self.engine)
        with self.engine.connect() as conn:
            has_log = conn.execute(sa.text("SELECT COUNT(*) FROM ledger_entries")).scalar()
        self.ledger = (Ledger.open_sql(self.engine, operator_key) if has_log
                       else Ledger.create_sql(self.engine, operator_key))
        self._lock = threading.Lock()
        self._nonce_lock = threading.Lock()
        self._nonces: dict[tuple[str, str], int] = {}
        self._approved: dict[str, dict] = {}
        self.subscribers: list[Callable[[dict], None]] = []
        self._ensure_operator()
        from lemgrid.service.grid import Grid

        #: The DSO's side (traffic light, flexibility), when the scenario has a ``dso:`` block.
        self.grid = Grid(self, spec.dso_scenario) if spec and spec.dso_scenario else None
        from lemgrid.service.intraday import ContinuousBooks

        #: The open continuous sessions' order books (matched on arrival).
        self.intraday = ContinuousBooks(self)
        with self.engine.connect() as conn:  # never a database read on a request's path
            for row in conn.execute(sa.select(t.identities).where(t.identities.c.approved)):
                self._approved[row.key_id] = dict(row._mapping)

    def close(self) -> None:
        """Close the database."""
        self.engine.dispose()

    @property
    def log_id(self) -> str:
        return self.ledger.log_id

    def _ensure_operator(self) -> None:
        kid = key_id(self.operator_key)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(t.identities.c.key_id).where(
                    t.identities.c.key_id == kid)).first() is None:
                from lemgrid.ledger.identity import public_bytes
                conn.execute(t.identities.insert().values(
                    participant="operator", role="operator", meter="-", key_id=kid,
                    public_key=public_bytes(self.operator_key).hex(), pop_sig="0" * 128,
                    members="", approved=True))

    # -- transactions -----------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[tuple[sa.engine.Connection, Any]]:
        """One transaction over the server's tables and the ledger (one writer at a time)."""
        with self._lock:
            try:
                try:
                    with self.engine.begin() as conn, self.ledger.transaction(conn) as tx:
                        yield conn, tx
                except BaseException:
                    # What the block did to a continuous session's book was not committed.
                    self.intraday.reset()
                    raise
            except Rejection as exc:
                raise refused_by_ledger(exc) from None
            except sa.exc.IntegrityError:
                self.ledger.resync()
                raise Refused(409, "conflicts with a stored row (a concurrent duplicate)") \
                    from None
            except (sa.exc.OperationalError, sa.exc.InterfaceError):
                self.ledger.resync()
                raise

    def publish(self, event: dict) -> None:
        """Send an event to the live-feed subscribers."""
        for send in list(self.subscribers):
            send(event)

    # -- identities -------------------------------------------------------------------------
    def identity_by_key(self, kid: str) -> dict | None:
        """The identity of a key id (approved identities are held in memory: they never
        change; only a pending or unknown key costs a database read)."""
        cached = self._approved.get(kid)
        if cached is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.identities).where(t.identities.c.key_id == kid)).first()
        if row is None:
            return None
        identity = dict(row._mapping)
        if identity["approved"]:
            self._approved[kid] = identity
        return identity

    def use_request_nonce(self, kid: str, nonce: str, timestamp_ms: int) -> bool:
        """Spend a request nonce; False if the key used it within the acceptance window.

        Kept in memory: a request replayed after a restart can repeat no effect, because every
        effect carries its own ledger nonce (orders, cancels) or is refused twice (approvals,
        sessions, capabilities).
        """
        from lemgrid.service.signing import MAX_SKEW_MS

        with self._nonce_lock:
            if (kid, nonce) in self._nonces:
                return False
            self._nonces[(kid, nonce)] = timestamp_ms
            if len(self._nonces) > 100_000:  # forget what is outside the window anyway
                oldest = self.clock_ms() - 2 * MAX_SKEW_MS
                self._nonces = {k: ts for k, ts in self._nonces.items() if ts >= oldest}
            return True

    def register(self, participant: str, role: str, meter: str, public_key: str, pop_sig: str,
                 members: list[str]) -> dict:
        """A pending identity (the operator approves it; only then does its key work)."""
        from lemgrid.ledger.identity import public_key_from_hex

        if role == "operator":
            raise Refused(422, "role: the operator is not registered over the API")
        if self.spec is not None and role == "participant" and meter not in self.spec.meters:
            raise Refused(422, f"meter: {meter!r} is not a meter of this market's scenario")
        try:
            kid = key_id(bytes(public_key_from_hex(public_key)))
        except InputError as exc:
            raise Refused(422, str(exc)) from None
        with self._lock, self.engine.begin() as conn:
            taken = conn.execute(sa.select(t.identities.c.participant).where(
                (t.identities.c.participant == participant) | (t.identities.c.key_id == kid))
            ).first()
            if taken is not None:
                raise Refused(409, f"participant: {participant!r} or its key is already "
                                   "registered")
            conn.execute(t.identities.insert().values(
                participant=participant, role=role, meter=meter, public_key=public_key,
                key_id=kid, pop_sig=pop_sig, members=",".join(members), approved=False))
        return {"participant": participant, "key_id": kid, "approved": False}

    def approve(self, participant: str) -> dict:
        """Approve an identity: its key-registration record is appended with the flag."""
        with self.write() as (conn, tx):
            row = conn.execute(sa.select(t.identities).where(
                t.identities.c.participant == participant)).first()
            if row is None:
                raise Refused(404, f"participant: {participant!r} is not registered")
            if row.approved:
                raise Refused(409, f"participant: {participant!r} is already approved")
            result = tx.append_operator([{
                "kind": "key-registration", "participant": participant, "meter": row.meter,
                "public_key": row.public_key, "pop_sig": row.pop_sig}])
            conn.execute(t.identities.update().where(t.identities.c.participant == participant)
                         .values(approved=True))
        self._approved[row.key_id] = {**row._mapping, "approved": True}
        return {"participant": participant, "approved": True, "seq": result.first_seq}

    def members_of(self, identity: dict) -> set[str]:
        """Whose orders and statements an identity may read."""
        if identity["role"] == "aggregator":
            scenario = self.spec.aggregators.get(identity["participant"], ()) if self.spec else ()
            return {identity["participant"], *filter(None, identity["members"].split(",")),
                    *scenario}
        return {identity["participant"]}

    def acts_for(self, identity: dict, participant: str) -> bool:
        """Whether the identity's key may sign orders and cancels of ``participant``: a
        participant its own, an aggregator its members' (registered with it and approved by
        the operator, or the scenario's) and nobody else's, not even its own."""
        if identity["role"] == "aggregator":
            return participant != identity["participant"] and participant in self.members_of(
                identity)
        return participant == identity["participant"]

    def _meter_of(self, participant: str) -> str:
        with self.engine.connect() as conn:
            meter = conn.execute(sa.select(t.identities.c.meter).where(
                (t.identities.c.participant == participant) & t.identities.c.approved)).scalar()
        if meter is None:
            raise Refused(403, f"payload.participant: {participant!r} is not an approved "
                               "identity")
        return meter

    def mandate_in(self, tx: Any, identity: dict, participant: str) -> None:
        """Inside a write transaction: the ledger's ``mandate`` for an aggregator acting for a
        member, the first time it does (so that the log shows who may sign for whom)."""
        if participant == identity["participant"]:
            return
        if (identity["participant"], participant) not in self.ledger.state.mandates:
            tx.append_operator([{"kind": "mandate", "aggregator": identity["participant"],
                                 "participant": participant}])

    # -- sessions ---------------------------------------------------------------------------
    def create_session(self, market_id: str, interval: int, gate_ms: int,
                       mechanism: str | None) -> dict:
        mechanism = self.check_mechanism(mechanism, lab.SESSION_MECHANISMS)
        with self._lock, self.engine.begin() as conn:
            self.insert_session(conn, market_id, interval, gate_ms, mechanism, "open")
        return self.session(market_id)

    def check_mechanism(self, mechanism: str | None, allowed: tuple[str, ...]) -> str:
        """A new session's mechanism: the one asked for (the scenario's design by default),
        if ``allowed``; in a market without a local market (design ``none``) only ``none``."""
        default = self.spec.mechanism if self.spec else "uniform"
        mechanism = mechanism or default
        if mechanism not in allowed:
            raise Refused(422, f"mechanism: must be one of {', '.join(allowed)}, got "
                               f"{mechanism!r}")
        if default == lab.NO_MARKET and mechanism != lab.NO_MARKET:
            raise Refused(422, f"mechanism: this market's scenario has no local market (design "
                               f"{lab.NO_MARKET!r}); its sessions take no orders")
        return mechanism

    @staticmethod
    def insert_session(conn: sa.engine.Connection, market_id: str, interval: int, gate_ms: int,
                       mechanism: str, state: str) -> None:
        """Insert a new session row (409 if the market id is taken)."""
        if conn.execute(sa.select(t.sessions.c.market_id).where(
                t.sessions.c.market_id == market_id)).first() is not None:
            raise Refused(409, f"market_id: session {market_id!r} already exists")
        conn.execute(t.sessions.insert().values(market_id=market_id, interval=interval,
                                                mechanism=mechanism, gate_ms=gate_ms,
                                                state=state))

    def session(self, market_id: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.sessions).where(
                t.sessions.c.market_id == market_id)).first()
        if row is None:
            raise Refused(404, f"market_id: no session {market_id!r}")
        return dict(row._mapping)

    def set_capability(self, participant: str, interval: int, sellable_wh: int,
                       source: str) -> dict:
        """Sellable energy of a participant in an interval (bounds its sell orders and trades)."""
        with self.write() as (conn, tx):
            if conn.execute(sa.select(t.identities.c.participant).where(
                    (t.identities.c.participant == participant)
                    & t.identities.c.approved)).first() is None:
                raise Refused(404, f"participant: {participant!r} is not an approved identity")
            result = tx.append_operator([{"kind": "capability", "participant": participant,
                                          "interval": interval, "sellable_wh": sellable_wh,
                                          "source": source}])
            conn.execute(t.capabilities.insert().values(participant=participant,
                                                        interval=interval,
                                                        sellable_wh=sellable_wh))
        return {"participant": participant, "interval": interval, "sellable_wh": sellable_wh,
                "seq": result.first_seq}

    # -- orders -----------------------------------------------------------------------------
    def check_own(self, identity: dict, market_id: str, record: SignedRecord, *,
                  for_members: bool = False) -> None:
        """A participant record (order, cancel, meter reading, commit, reveal) for this path's
        market and log, signed by the requesting key and naming its own participant (and
        meter), or with ``for_members`` one the key :meth:`acts_for` (and that one's meter)."""
        p = record.payload
        if p["market_id"] != market_id:
            raise Refused(422, f"payload.market_id: {p['market_id']!r} differs from the "
                               f"path's market {market_id!r}")
        if record.signer != identity["key_id"]:
            raise Refused(403, f"signer: the {p['kind']} must be signed by the requesting key")
        meter = identity["meter"]
        if for_members and identity["role"] == "aggregator":
            if not self.acts_for(identity, p["participant"]):
                raise Refused(403, f"payload.participant: {p['participant']!r} is not a member "
                                   "you act for")
            if "meter" in p:
                meter = self._meter_of(p["participant"])
        elif p["participant"] != identity["participant"]:
            raise Refused(403, f"payload.participant: {p['participant']!r} is not you")
        if "meter" in p and p["meter"] != meter:
            raise Refused(403, f"payload.meter: {p['meter']!r} is not the meter of "
                               f"{p['participant']!r}")
        if p["log_id"] != self.log_id:
            raise Refused(422, f"payload.log_id: this market's log is {self.log_id}")

    def submit_order(self, identity: dict, market_id: str, record: SignedRecord,
                     idem_key: str | None, body_sha256: str) -> tuple[int, dict]:
        """Accept one signed order without HTTP (tests, scripts): :meth:`check_order`, then
        :meth:`commit_orders` of it alone, in the calling thread; ``(status, answer)``.

        The app commits through the same :meth:`commit_orders`, in groups
        (``lemgrid.service.app._OrderWriter``): there is one order writer, not a thread here.
        """
        item = self.check_order(identity, market_id, record, idem_key, body_sha256)
        self.commit_orders([item])
        return item.answer.result()

    def check_order(self, identity: dict, market_id: str, record: SignedRecord,
                    idem_key: str | None, body_sha256: str, answer: Any = None,
                    order_message: bytes | None = None) -> _Intake:
        """Check what needs no database; the order, ready for :meth:`commit_orders`.

        ``answer`` is the future to resolve (a new ``concurrent.futures.Future`` by default; the
        app passes an asyncio one). ``order_message`` is the message of the order's signature
        if the caller has verified that signature (it is then not verified again).

        Raises
        ------
        Refused
            If the order is not the signing participant's or not for this market and log.
        """
        self.check_own(identity, market_id, record, for_members=True)
        if answer is None:
            return _Intake(identity, market_id, record, idem_key, body_sha256)
        return _Intake(identity, market_id, record, idem_key, body_sha256, answer,
                       order_message)

    def commit_orders(self, group: list[_Intake]) -> None:
        """Commit a group of checked orders in one transaction (one sync) and resolve each
        order's future after the commit: ``(status, answer)`` or its :class:`Refused` error.

        If the transaction as a whole fails, each order is tried in a transaction of its own.
        """
        try:
            staged = self.stage_orders(group)
            staged.commit()
        except Exception as exc:  # noqa: BLE001  (then each order on its own)
            self.commit_one_by_one(group, exc)
            return
        self.finish_orders(group, staged.outcomes)

    def commit_one_by_one(self, group: list[_Intake], exc: BaseException) -> None:
        """After a group's transaction failed: each order in a transaction of its own."""
        logging.getLogger("lemgrid.service").warning(
            "group of %d orders failed (%s): committing them one by one", len(group), exc)
        outcomes: list[tuple[int, dict, bool] | BaseException] = []
        for item in group:
            try:
                staged = self.stage_orders([item])
                staged.commit()
                outcomes.extend(staged.outcomes)
            except Exception as one:  # noqa: BLE001  (answered as an error)
                outcomes.append(one)
        self.finish_orders(group, outcomes)

    def finish_orders(self, group: list[_Intake],
                      outcomes: Sequence[tuple[int, dict, bool] | BaseException]) -> None:
        """Answer each order of a committed group and announce the new ones on the feed."""
        for item, outcome in zip(group, outcomes):
            if isinstance(outcome, BaseException):
                item.answer.set_exception(outcome)
                continue
            status, answer, fresh = outcome
            item.answer.set_result((status, answer))
            if fresh:
                p = item.record.payload
                self.publish({"event": "order", "market_id": item.market_id,
                              "order_id": p["order_id"], "side": p["side"],
                              "quantity_wh": p["quantity_wh"],
                              "price_meur_per_kwh": p["price_meur_per_kwh"]})
                self.intraday.publish(item.market_id, answer)

    def stage_orders(self, group: list[_Intake]) -> _Staged:
        """Everything of a group's transaction but its commit: the write lock is taken, the
        ledger entries, order rows and idempotency rows are written. The caller must call
        :meth:`_Staged.commit` (the app does so on another thread, so that the event loop goes
        on reading requests while the database syncs).

        Raises
        ------
        Exception
            If the transaction as a whole fails (nothing kept, the lock released).
        """
        outcomes: list[tuple[int, dict, bool] | BaseException] = []
        self._lock.acquire()
        conn = None
        try:
            conn = self.engine.connect()
            trans = conn.begin()
            verified = {(bytes.fromhex(item.identity["public_key"]), item.record.sig,
                         item.order_message) for item in group if item.order_message}
            with gc_paused(), self.ledger.group(conn) as ledger:
                self.intraday.begin(conn)
                stored = self._stored_answers(conn, group)
                sessions = {m: conn.execute(sa.select(t.sessions).where(
                    t.sessions.c.market_id == m)).first()
                    for m in {item.market_id for item in group}}
                order_rows: list[dict] = []
                idem_rows: list[dict] = []
                for item in group:
                    try:
                        outcomes.append(self._accept(item, stored, sessions, ledger,
                                                     order_rows, idem_rows, verified))
                    except Refused as exc:
                        outcomes.append(exc)
                if order_rows:
                    insert_rows(conn, t.orders, order_rows)
                self.intraday.flush(conn)  # continuous sessions' trades and fills
                if idem_rows:
                    insert_rows(conn, t.idempotency, idem_rows)
        except BaseException:
            try:
                if conn is not None:
                    conn.close()  # rolls the transaction back
            finally:
                self.ledger.resync()  # the state may hold entries that were not committed
                self.intraday.reset()  # and the books, orders and trades
                self._lock.release()
            raise
        return _Staged(self, conn, trans, outcomes)

    @staticmethod
    def _stored_answers(conn: sa.engine.Connection, group: list[_Intake]) -> dict:
        """Stored idempotency rows of the group's keys: ``(key_id, idem_key) -> (sha, status,
        answer)``."""
        keys = list({(item.identity["key_id"], item.idem_key) for item in group
                     if item.idem_key is not None})
        stored: dict[tuple[str, str], tuple[str, int, dict]] = {}
        for i in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[i:i + _KEYS_PER_QUERY]
            size = max(8, 1 << (len(chunk) - 1).bit_length())  # few statement shapes
            chunk += [chunk[-1]] * (size - len(chunk))
            params = {}
            for j, (kid, idem) in enumerate(chunk):
                params[f"k{j}"], params[f"i{j}"] = kid, idem
            for row in conn.execute(_idempotency_query(size), params):
                stored[(row.key_id, row.idem_key)] = (row.body_sha256, row.status_code,
                                                      json.loads(row.response))
        return stored

    def _accept(self, item: _Intake, stored: dict, sessions: dict, ledger: Any,
                order_rows: list[dict], idem_rows: list[dict],
                verified: set[tuple[bytes, str, bytes]]) -> tuple[int, dict, bool]:
        """One order of a group: the earlier answer for its idempotency key, or its ledger
        entry and rows (added to ``order_rows`` and ``idem_rows``)."""
        p, market_id = item.record.payload, item.market_id
        idem = (item.identity["key_id"], item.idem_key)
        if item.idem_key is not None and idem in stored:
            sha, status, answer = stored[idem]
            if sha != item.body_sha256:
                raise Refused(409, "Idempotency-Key: already used with another body")
            return status, answer, False
        session = sessions[market_id]
        if session is None:
            raise Refused(404, f"market_id: no session {market_id!r}")
        if p["interval"] != session.interval:
            raise Refused(422, f"payload.interval: session {market_id!r} trades interval "
                               f"{session.interval}")
        if session.mechanism == lab.NO_MARKET:
            raise Refused(409, f"market_id: session {market_id!r} has no local market (design "
                               f"{lab.NO_MARKET!r}): it takes no orders")
        if session.state in SEALED_STATES:
            raise Refused(409, f"market_id: session {market_id!r} is sealed-bid: post a "
                               f"commitment to /markets/{market_id}/commits")
        now = self.clock_ms()
        if session.state != "open" or now >= session.gate_ms:
            raise Refused(409, f"market_id: the gate of session {market_id!r} is closed")
        valid_until_ms = p.get("valid_until_ms")
        if valid_until_ms is not None and session.mechanism != "continuous":
            raise Refused(422, "payload.valid_until_ms: only orders of continuous sessions have "
                               f"a validity (session {market_id!r} is an auction)")
        if valid_until_ms is not None and valid_until_ms <= now:
            raise Refused(422, f"payload.valid_until_ms: {valid_until_ms} is not after the "
                               f"market's clock ({now})")
        if session.mechanism == "continuous":  # what expired before this order left the book
            self.intraday.expire(ledger, session, now)
        try:
            self.mandate_in(ledger, item.identity, p["participant"])
            result = ledger.append([item.record], verified=verified)
        except Rejection as exc:
            raise refused_by_ledger(exc) from None
        order_rows.append(dict(
            market_id=market_id, order_id=p["order_id"], participant=p["participant"],
            side=p["side"], quantity_wh=p["quantity_wh"],
            price_meur_per_kwh=p["price_meur_per_kwh"], arrival=result.first_seq,
            status="open", filled_wh=0, valid_until_ms=valid_until_ms))
        answer = {"market_id": market_id, "order_id": p["order_id"], "status": "open",
                  "seq": result.first_seq}
        if session.mechanism == "continuous":  # matched on arrival (lemgrid.service.intraday)
            answer = self.intraday.match(ledger, session, order_rows[-1], answer)
        if item.idem_key is not None:
            idem_rows.append(dict(key_id=idem[0], idem_key=item.idem_key,
                                  body_sha256=item.body_sha256, status_code=201,
                                  response=json.dumps(answer)))
            stored[idem] = (item.body_sha256, 201, answer)  # a retry within the same group
        return 201, answer, True

    def order(self, identity: dict, market_id: str, order_id: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.orders).where(
                (t.orders.c.market_id == market_id) & (t.orders.c.order_id == order_id))).first()
        if row is None or (identity["role"] != "operator"
                           and row.participant not in self.members_of(identity)):
            raise Refused(404, f"order_id: no order {order_id!r} of yours in {market_id!r}")
        return dict(row._mapping)

    def cancel(self, identity: dict, market_id: str, record: SignedRecord) -> dict:
        p = record.payload
        self.check_own(identity, market_id, record, for_members=True)
        with self.write() as (conn, tx):
            row = conn.execute(sa.select(t.orders).where(
                (t.orders.c.market_id == market_id)
                & (t.orders.c.order_id == p["order_id"]))).first()
            if row is None or row.participant != p["participant"]:
                raise Refused(404, f"payload.order_id: no order {p['order_id']!r} of "
                                   f"{p['participant']!r}")
            gate_ms = conn.execute(sa.select(t.sessions.c.gate_ms).where(
                t.sessions.c.market_id == market_id)).scalar()
            now = self.clock_ms()
            if (row.status != "open" or gate_ms is None or gate_ms <= now
                    or (row.valid_until_ms is not None and row.valid_until_ms < now)):
                raise Refused(409, f"payload.order_id: order {p['order_id']!r} is no longer open")
            self.mandate_in(tx, identity, p["participant"])
            tx.append([record])
            conn.execute(t.orders.update().where(
                (t.orders.c.market_id == market_id) & (t.orders.c.order_id == p["order_id"]))
                .values(status="cancelled"))
            self.intraday.cancel(market_id, p["order_id"])  # last: a failed commit resets it
        self.publish({"event": "cancel", "market_id": market_id, "order_id": p["order_id"]})
        return {"market_id": market_id, "order_id": p["order_id"], "status": "cancelled"}

    # -- gate closure, clearing, settlement -------------------------------------------------
    def tick(self) -> list[str]:
        """Close, clear and settle every open session whose gate time has passed, and settle
        every delivery whose readings deadline has passed."""
        now = self.clock_ms()
        with self.engine.connect() as conn:
            due = [r.market_id for r in conn.execute(sa.select(t.sessions).where(
                (t.sessions.c.state == "open") & (t.sessions.c.gate_ms <= now))
                .order_by(t.sessions.c.gate_ms))]
        for market_id in due:
            self.close_and_clear(market_id)
        self.expire_orders()
        from lemgrid.service import community, delivery, sealed

        if self.grid is not None:
            self.grid.catch_up()
        return due + sealed.tick(self) + community.tick(self) + delivery.settle_due(self)

    def expire_orders(self) -> None:
        """Take the orders whose validity has ended out of the open continuous sessions'
        books: an ``order-expiry`` record and the row's status, in one transaction."""
        now = self.clock_ms()
        with self.engine.connect() as conn:
            markets = set(conn.execute(sa.select(t.orders.c.market_id).join(
                t.sessions, t.sessions.c.market_id == t.orders.c.market_id).where(
                (t.orders.c.status == "open") & (t.orders.c.valid_until_ms < now)
                & (t.sessions.c.state == "open")
                & (t.sessions.c.mechanism == "continuous"))).scalars())
        for market_id in sorted(markets):
            with self.write() as (conn, tx):
                self.intraday.begin(conn)
                session = conn.execute(sa.select(t.sessions).where(
                    t.sessions.c.market_id == market_id)).one()
                self.intraday.expire(tx, session, now)
                self.intraday.flush(conn)

    def close_and_clear(self, market_id: str) -> dict:
        """Gate closure, clearing by the lab's mechanism, trades, settlement and a signed
        checkpoint: all in one transaction."""
        with self.write() as (conn, tx):
            s = conn.execute(sa.select(t.sessions).where(
                t.sessions.c.market_id == market_id)).first()
            if s is None or s.state != "open":
                raise Refused(409, f"market_id: session {market_id!r} is not open")
            result, trades = self.clear_in(conn, tx, s, [
                {"kind": "gate-closure", "market_id": market_id, "interval": s.interval}])
        return self.published_clearing(market_id, result, trades)

    def clear_in(self, conn: sa.engine.Connection, tx: Any, s: Any,
                 head: list[dict]) -> tuple[Any, list[dict]]:
        """Inside a write transaction: the ``head`` records, clearing of the session's open
        orders by the lab's mechanism, trades, settlement, rows and a signed checkpoint."""
        from lemgrid.service import intraday

        market_id = s.market_id
        if s.mechanism == intraday.CONTINUOUS:
            # Matched on arrival: the trades are in the ledger; the rest of the book expires.
            trades = intraday.session_trades(conn, market_id, s.interval)
            new_trades: list[dict] = []
            cash_eur = intraday.cash_flows(trades)
            self.intraday.close(market_id)
        else:
            rows = [dict(r._mapping, interval=s.interval) for r in conn.execute(
                sa.select(t.orders).where((t.orders.c.market_id == market_id)
                                          & (t.orders.c.status == "open"))
                .order_by(t.orders.c.arrival))]
            trades, cash_eur = lab.clear_orders(rows, s.mechanism, market_id)
            new_trades = trades
        postings = lab.settle(cash_eur)  # sums to zero: the session's budget balance
        records = [*head,
                   *new_trades,
                   {"kind": "clearing", "market_id": market_id, "interval": s.interval,
                    "n_trades": len(trades),
                    "volume_wh": sum(x["quantity_wh"] for x in trades)}]
        if trades and postings:
            records.append({"kind": "settlement", "settlement_id": f"{market_id}-s",
                            "market_id": market_id,
                            "trade_ids": [x["trade_id"] for x in trades],
                            "postings": postings})
        result = tx.append_operator(records, checkpoint=True, label=f"session {market_id}")
        if new_trades:
            conn.execute(t.trades.insert(), [
                {**{k: x[k] for k in ("market_id", "trade_id", "buyer", "seller",
                                      "buy_order_id", "sell_order_id", "quantity_wh",
                                      "price_meur_per_kwh")},
                 "seq": result.first_seq + len(head) + i} for i, x in enumerate(new_trades)])
        if postings:
            conn.execute(t.statements.insert(), [
                {"market_id": market_id, "participant": p["account"],
                 "amount_ueur": p["amount_ueur"]} for p in postings])
        filled: dict[str, int] = {}
        for x in new_trades:
            for side in ("buy_order_id", "sell_order_id"):
                filled[x[side]] = filled.get(x[side], 0) + x["quantity_wh"]
        for order_id, wh in filled.items():
            conn.execute(t.orders.update().where(
                (t.orders.c.market_id == market_id) & (t.orders.c.order_id == order_id))
                .values(filled_wh=wh))
        conn.execute(t.orders.update().where(
            (t.orders.c.market_id == market_id) & (t.orders.c.status == "open"))
            .values(status="cleared"))
        conn.execute(t.sessions.update().where(t.sessions.c.market_id == market_id)
                     .values(state="settled"))
        return result, trades

    def published_clearing(self, market_id: str, result: Any, trades: list[dict]) -> dict:
        """Announce a committed clearing on the feed; its summary."""
        summary = {"market_id": market_id, "n_trades": len(trades),
                   "volume_wh": sum(x["quantity_wh"] for x in trades),
                   "checkpoint_seq": result.checkpoint["seq"]}
        with self.engine.connect() as conn:
            s = conn.execute(sa.select(t.sessions.c.interval, t.sessions.c.mechanism).where(
                t.sessions.c.market_id == market_id)).one()
        self.publish({"event": "gate-closure", "market_id": market_id})
        if s.mechanism != "continuous":  # a continuous session's trades were announced as made
            for x in trades:
                self.publish({"event": "trade", **{k: x[k] for k in (
                    "market_id", "trade_id", "quantity_wh", "price_meur_per_kwh")}})
        self.publish({"event": "checkpoint", "seq": result.checkpoint["seq"],
                      "tree_size": result.checkpoint["payload"]["tree_size"],
                      "root_hash": result.checkpoint["payload"]["root_hash"]})
        if self.grid is not None:
            light = self.grid.after_clearing(market_id, s.interval)
            if light is not None:
                summary["traffic_light"] = light["state"]
        return summary

    # -- reading ----------------------------------------------------------------------------
    def trades(self, identity: dict, market_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                sa.select(t.trades).where(t.trades.c.market_id == market_id)
                .order_by(t.trades.c.seq, t.trades.c.trade_id))]
        if identity["role"] in ("operator", "dso", "tso"):
            return rows
        mine = self.members_of(identity)
        return [r for r in rows if r["buyer"] in mine or r["seller"] in mine]

    def statement(self, identity: dict, market_id: str, participant: str) -> dict:
        if identity["role"] != "operator" and participant not in self.members_of(identity):
            raise Refused(403, f"participant: the statement of {participant!r} is not yours")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.statements).where(
                (t.statements.c.market_id == market_id)
                & (t.statements.c.participant == participant))).first()
            session = conn.execute(sa.select(t.sessions.c.state).where(
                t.sessions.c.market_id == market_id)).first()
        if session is None or session.state != "settled":
            raise Refused(404, f"market_id: session {market_id!r} is not settled")
        return {"market_id": market_id, "participant": participant,
                "amount_ueur": 0 if row is None else row.amount_ueur}

    def budget(self, market_id: str) -> dict:
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(
                t.statements.c.amount_ueur), 0)).where(
                t.statements.c.market_id == market_id)).scalar()
        return {"market_id": market_id, "sum_amount_ueur": int(total or 0),
                "balanced": not total}

    def checkpoints(self) -> list[dict]:
        return [self.ledger.entry(c.seq) for c in self.ledger.state.checkpoints]


__all__ = ["Market", "Refused", "ROLES", "LEDGER_METADATA"]
