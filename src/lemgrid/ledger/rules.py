"""The ledger's rules: one state machine shared by the append path and the verifier.

:class:`LedgerState` applies entries in log order and rejects any entry that breaks a rule:
unknown or revoked signer, bad signature, replayed nonce, a participant signing for someone else,
a checkpoint whose root is not the root of the entries before it, and the market rules of
:mod:`lemgrid.ledger.spending` and :mod:`lemgrid.ledger.sealed`. Because the store and the verifier
run the very same code, an entry the store accepted is an entry the verifier accepts, and the
verifier recomputes everything from the stored entries alone.

Ed25519 verification dominates the cost, and libsodium (PyNaCl) releases the GIL while verifying,
so :func:`check_batch` verifies a batch's signatures on a thread pool and applies the rules in log
order as the results come in.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Container, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from lemgrid.ledger.identity import (
    SIGNING_CONTEXT,
    PublicKey,
    key_id,
    possession_payload,
    public_key_from_hex,
    signature_valid,
    signing_message,
)
from lemgrid.ledger.journal import Journal, Rejection
from lemgrid.ledger.merkle import CompactRange, leaf_hash
from lemgrid.ledger.records import (
    OPERATOR_KINDS,
    PARTICIPANT_KINDS,
    RecordError,
    SignedRecord,
    check_envelope,
    leaf_data,
    payload_bytes,
    validate_order,
    validate_payload,
)
from lemgrid.ledger.sealed import SealedBook
from lemgrid.ledger.spending import SpendingBook, check_balanced


@dataclass(frozen=True)
class KeyInfo:
    """A registered key and the identity it is bound to."""

    public_key: PublicKey
    participant: str
    meter: str
    seq: int


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint entry as the verifier needs it."""

    seq: int
    tree_size: int
    root: bytes
    timestamp_ms: int


class Prepared(NamedTuple):
    """A record made ready for the rules: canonical bytes and the key that should verify it."""

    record: SignedRecord
    kind: str
    message: bytes
    public_key: PublicKey | None


class BatchToken(NamedTuple):
    """What :meth:`LedgerState.rollback` restores besides the journal."""

    tree: tuple[int, tuple[int, ...], tuple[bytes, ...]]
    log_id: str | None
    operator_key: PublicKey | None
    operator_id: str | None


class LedgerState:
    """Everything the rules need to know about the entries applied so far."""

    def __init__(self) -> None:
        self.journal = Journal()
        self.log_id: str | None = None
        self.operator_key: PublicKey | None = None
        self.operator_id: str | None = None
        self.keys: dict[str, KeyInfo] = {}
        self.revoked: dict[str, int] = {}
        self.meters: dict[str, str] = {}  # participant -> meter
        self.nonces: set[tuple[str, str]] = set()
        self.tree = CompactRange()
        self.checkpoints: list[CheckpointInfo] = []
        #: How the log names intervals, fixed by its first record that names one:
        #: {"interval": "index" | "UTC start time"}.
        self.forms: dict[str, str] = {}
        self.spending = SpendingBook(self.journal)
        self.sealed = SealedBook(self.journal)
        #: (market, interval, meter) of every meter reading; (market, interval) metered and
        #: closed by a delivery-settlement; (market, participant) with a statement.
        self.readings: set[tuple] = set()
        self.delivered: set[tuple] = set()
        self.statements: set[tuple] = set()
        #: (aggregator, member): the aggregator's keys sign orders and cancels for the member.
        self.mandates: set[tuple[str, str]] = set()
        #: (market, participant) of every community bid; community markets cleared.
        self.community_bids: set[tuple[str, str]] = set()
        self.community_cleared: set[str] = set()
        #: The DSO's activations, and those whose measured delivery is settled.
        self.activations: set[str] = set()
        self.flex_delivered: set[str] = set()
        #: The DSO's long-term reservations.
        self.reservations: set[str] = set()

    @property
    def size(self) -> int:
        """Number of entries applied."""
        return self.tree.size

    # -- transactions -----------------------------------------------------------------------
    def begin(self) -> BatchToken:
        """Start an all-or-nothing batch; returns a token for :meth:`rollback`."""
        self.journal.begin()
        return BatchToken(self.tree.snapshot(), self.log_id, self.operator_key, self.operator_id)

    def commit(self) -> None:
        """Keep the changes of the batch."""
        self.journal.commit()

    def rollback(self, token: BatchToken) -> None:
        """Undo every change of the batch."""
        self.journal.rollback()
        snapshot, self.log_id, self.operator_key, self.operator_id = token
        self.tree.restore(snapshot)

    # -- preparing and applying -------------------------------------------------------------
    def prepare(self, record: SignedRecord, pending_keys: dict[str, PublicKey]) -> Prepared:
        """Validate the payload schema and find the key its signature must verify against.

        ``pending_keys`` collects keys registered earlier in the same batch.
        """
        check_envelope(record.signer, record.sig)
        kind = validate_payload(record.payload)
        message = SIGNING_CONTEXT + payload_bytes(record.payload)
        if kind == "log-init":
            init_key = public_key_from_hex(record.payload["operator_key"], "operator_key")
            pending_keys[key_id(init_key)] = init_key
        elif kind == "key-registration":
            new_key = public_key_from_hex(record.payload["public_key"], "public_key")
            pending_keys.setdefault(key_id(new_key), new_key)
        info = self.keys.get(record.signer)
        public_key: PublicKey | None = info.public_key if info is not None else pending_keys.get(record.signer)
        if record.signer == self.operator_id:
            public_key = self.operator_key
        return Prepared(record, kind, message, public_key)

    def apply(self, prepared: Prepared, signature_ok: bool,
              clock_ms: int | None = None) -> tuple[bytes, bytes]:
        """Apply one entry at position :attr:`size`; returns its leaf data and leaf hash.

        ``clock_ms`` is the appending process's clock [ms since the Unix epoch]: given when
        appending (a checkpoint may not be dated ahead of it), None when replaying or verifying.

        Raises
        ------
        Rejection
            If the entry breaks a rule; the state is then unchanged only after :meth:`rollback`.
        """
        record, kind, seq = prepared.record, prepared.kind, self.size
        p = record.payload
        if seq == 0 and kind != "log-init":
            raise Rejection("the first entry of a log must be its log-init record", "structure")
        if kind == "log-init":
            self._init(p, record.signer, seq)
        elif kind in OPERATOR_KINDS:
            if record.signer != self.operator_id:
                raise Rejection(f"{kind} records must be signed by the log operator key "
                                f"{self.operator_id}, not {record.signer}", "not-operator")
        else:
            self._check_participant_signer(record, kind)
        if not signature_ok:
            raise Rejection(f"signature of key {record.signer} does not verify", "bad-signature")
        if kind in PARTICIPANT_KINDS and p["log_id"] != self.log_id:
            raise Rejection(f"log_id: the record was signed for log {p['log_id']}, not for this "
                            f"log {self.log_id}", "wrong-log")
        if "interval" in p:
            self._check_interval_form(p["interval"])
        nonce = p.get("nonce")
        if nonce is not None and (record.signer, nonce) in self.nonces:
            raise Rejection(f"replayed nonce {nonce!r} of key {record.signer}", "replay")
        self._dispatch(kind, p, record, seq, clock_ms)
        if nonce is not None:  # after the rules, so that a soft rejection leaves no trace
            self._use_nonce(record.signer, nonce)
        data = leaf_data(prepared.message[len(SIGNING_CONTEXT):], seq, record.sig, record.signer)
        digest = leaf_hash(data)
        self.tree.append(digest)
        return data, digest

    def _init(self, p: dict, signer: str, seq: int) -> None:
        if seq != 0:
            raise Rejection("log-init may only be the first entry", "structure")
        operator_key = public_key_from_hex(p["operator_key"], "operator_key")
        if signer != key_id(operator_key):
            raise Rejection("log-init must be signed by the operator key it declares",
                            "not-operator")
        self.log_id, self.operator_key, self.operator_id = p["log_id"], operator_key, signer

    def _check_participant_signer(self, record: SignedRecord, kind: str) -> None:
        p, signer = record.payload, record.signer
        if kind == "key-revocation" and signer == self.operator_id:
            return
        info = self.keys.get(signer)
        if info is None:
            raise Rejection(f"signer key {signer} is not registered", "unknown-key")
        if signer in self.revoked:
            raise Rejection(f"signer key {signer} was revoked at entry {self.revoked[signer]}",
                            "revoked-key")
        if kind == "key-revocation":
            if p["key_id"] != signer:
                raise Rejection("a participant key may revoke only itself", "not-owner")
            return
        acting_for = kind in ("order", "cancel") and (info.participant,
                                                      p["participant"]) in self.mandates
        if p["participant"] != info.participant and not acting_for:
            raise Rejection(f"key {signer} belongs to {info.participant!r}, not to "
                            f"{p['participant']!r}", "not-owner")
        # an order names the meter of its participant; a reading only the signer's own meter
        meter = self.meters.get(p["participant"]) if kind == "order" else info.meter
        if kind in ("order", "meter-reading", "community-bid") and p["meter"] != meter:
            raise Rejection(f"{kind} names meter {p['meter']!r} but {p['participant']!r} is bound "
                            f"to meter {meter!r}", "wrong-meter")

    def _check_interval_form(self, interval: Any) -> None:
        form = "index" if type(interval) is int else "UTC start time"
        known = self.forms.get("interval")
        if known is None:
            self.journal.put(self.forms, "interval", form)
        elif known != form:
            raise Rejection(f"interval: this log names intervals by {known}, got {interval!r} (a "
                            f"{form}); one log uses one form, so that an interval has one name",
                            "interval-form")

    def _use_nonce(self, signer: str, nonce: str) -> None:
        if (signer, nonce) in self.nonces:
            raise Rejection(f"replayed nonce {nonce!r} of key {signer}", "replay")
        self.journal.add(self.nonces, (signer, nonce))

    def _dispatch(self, kind: str, p: dict, record: SignedRecord, seq: int,
                  clock_ms: int | None) -> None:
        spending, sealed = self.spending, self.sealed
        if kind == "order":
            sealed.check_open_for_orders(p["market_id"], p["interval"])
            spending.add_order(p)
        elif kind == "cancel":
            spending.cancel(p)
        elif kind == "order-expiry":
            spending.expire(p)
        elif kind == "trade":
            for party in ("buyer", "seller"):
                if p[party] not in self.meters:
                    raise Rejection(f"trade {party} {p[party]!r} is not a registered participant",
                                    "unknown-participant")
            spending.add_trade(p)
        elif kind == "checkpoint":
            self._checkpoint(p, seq, clock_ms)
        elif kind == "key-registration":
            self._register(p, seq)
        elif kind == "key-revocation":
            if p["key_id"] not in self.keys:
                raise Rejection(f"key {p['key_id']} is not registered", "unknown-key")
            if p["key_id"] in self.revoked:
                raise Rejection(f"key {p['key_id']} is already revoked", "duplicate")
            self.journal.put(self.revoked, p["key_id"], seq)
        elif kind == "capability":
            if p["participant"] not in self.meters:
                raise Rejection(f"participant {p['participant']!r} is not registered",
                                "unknown-participant")
            spending.register_capability(p)
        elif kind == "commit":
            sealed.commit(p)
        elif kind == "gate-closure":
            sealed.close_gate(p)
        elif kind == "reveal":
            self._reveal(p, record)
        elif kind == "reveal-closure":
            sealed.close_reveals(p)
        elif kind == "rejection":
            self._rejection(p)
        elif kind == "clearing":
            spending.close_clearing(p)
        elif kind == "settlement":
            spending.settle(p)
        elif kind == "mandate":
            for name in ("aggregator", "participant"):
                if p[name] not in self.meters:
                    raise Rejection(f"mandate {name} {p[name]!r} is not registered",
                                    "unknown-participant")
            if (p["aggregator"], p["participant"]) in self.mandates:
                raise Rejection("mandate already recorded", "duplicate")
            self.journal.add(self.mandates, (p["aggregator"], p["participant"]))
        elif kind in ("meter-reading", "delivery-settlement", "statement"):
            self._metering(kind, p)
        elif kind in ("community-bid", "community-clearing"):
            self._community(kind, p)
        elif kind == "flex-activation":
            self.journal.add(self.activations, p["activation_id"])
        elif kind == "flex-delivery":
            if p["activation_id"] not in self.activations:
                raise Rejection(f"flex-delivery of {p['activation_id']!r}: no such activation",
                                "unknown-activation")
            if p["activation_id"] in self.flex_delivered:
                raise Rejection(f"flex-delivery of {p['activation_id']!r}: its delivery is "
                                "already settled", "duplicate")
            if p["shortfall_w"] > p["power_w"]:
                raise Rejection(f"flex-delivery of {p['activation_id']!r}: a shortfall of "
                                f"{p['shortfall_w']} W on {p['power_w']} W activated",
                                "over-delivery")
            self.journal.add(self.flex_delivered, p["activation_id"])
        elif kind == "flex-reservation":
            if p["reservation_id"] in self.reservations:
                raise Rejection(f"flex-reservation {p['reservation_id']!r} is already recorded",
                                "duplicate")
            if p["window_stop"] <= p["interval"]:
                raise Rejection(f"flex-reservation {p['reservation_id']!r}: its window ends "
                                "before it starts", "bad-window")
            self.journal.add(self.reservations, p["reservation_id"])

    def _community(self, kind: str, p: dict) -> None:
        market = p["market_id"]
        if market in self.community_cleared:
            raise Rejection(f"community market {market!r} is already cleared", "too-late")
        if kind == "community-bid":
            if (market, p["participant"]) in self.community_bids:
                raise Rejection(f"{p['participant']!r} already bid into community market "
                                f"{market!r}", "duplicate")
            self.journal.add(self.community_bids, (market, p["participant"]))
            return
        missing = [m for m in p["members"] if (market, m) not in self.community_bids]
        if missing:
            raise Rejection(f"community-clearing of {market!r} names members without a bid: "
                            f"{', '.join(missing)}", "unknown-participant")
        check_balanced(p["postings"], f"community-clearing of {market!r}")
        self.journal.add(self.community_cleared, market)

    def _metering(self, kind: str, p: dict) -> None:
        session = (p["market_id"], p["interval"])
        if kind == "meter-reading":
            if session in self.delivered:
                raise Rejection(f"market {session[0]!r} interval {session[1]!r}: metering is "
                                "closed (delivery settled)", "too-late")
            if (*session, p["meter"]) in self.readings:
                raise Rejection(f"meter {p['meter']!r} already has a reading for market "
                                f"{session[0]!r} interval {session[1]!r}", "duplicate")
            self.journal.add(self.readings, (*session, p["meter"]))
        elif kind == "delivery-settlement":
            if session in self.delivered:
                raise Rejection(f"market {session[0]!r} interval {session[1]!r}: delivery is "
                                "already settled", "duplicate")
            check_balanced(p["postings"], f"delivery-settlement of {session[0]!r}")
            self.journal.add(self.delivered, session)
        else:
            if session not in self.delivered:
                raise Rejection(f"statement for {session[0]!r} before its delivery-settlement",
                                "too-early")
            if (p["market_id"], p["participant"]) in self.statements:
                raise Rejection(f"{p['participant']!r} already has a statement for "
                                f"{session[0]!r}", "duplicate")
            self.journal.add(self.statements, (p["market_id"], p["participant"]))

    def _register(self, p: dict, seq: int) -> None:
        public_key = public_key_from_hex(p["public_key"], "public_key")
        kid = key_id(public_key)
        if kid in self.keys or kid == self.operator_id:
            raise Rejection(f"key {kid} is already registered", "duplicate")
        participant, meter = p["participant"], p["meter"]
        bound = self.meters.get(participant)
        if bound is not None and bound != meter:
            raise Rejection(f"participant {participant!r} is bound to meter {bound!r}, not "
                            f"{meter!r}", "wrong-meter")
        if self.log_id is None:
            raise Rejection("key-registration before the log's log-init record", "structure")
        proof = signing_message(possession_payload(participant, meter, p["public_key"],
                                                   self.log_id))
        if not signature_valid(public_key, p["pop_sig"], proof):
            raise Rejection("pop_sig: the new key's proof of possession does not verify",
                            "bad-signature")
        self.journal.put(self.keys, kid, KeyInfo(public_key, participant, meter, seq))
        if bound is None:
            self.journal.put(self.meters, participant, meter)

    def _reveal(self, p: dict, record: SignedRecord) -> None:
        try:
            validate_order(p["order"], "reveal.order")
        except RecordError as exc:
            raise Rejection(str(exc), "bad-record") from None
        self.sealed.open_commit(p)
        order = p["order"]
        if order["meter"] != self.keys[record.signer].meter:
            raise Rejection(f"revealed order names meter {order['meter']!r}, not the signer's "
                            "meter", "wrong-meter")
        self._use_nonce(record.signer, order["nonce"])
        self.spending.add_order(order)

    def _rejection(self, p: dict) -> None:
        if p["reason"] == "unrevealed":
            self.sealed.reject_unrevealed(p)
            return
        # reveal-mismatch: the submitted reveal is in the entry; re-check that it was the
        # participant's and that it really matches no open commitment.
        try:
            submission = SignedRecord.from_json(p.get("submission"), "rejection.submission")
            if validate_payload(submission.payload, "rejection.submission.payload") != "reveal":
                raise RecordError("rejection.submission: not a reveal record")
            validate_order(submission.payload["order"], "rejection.submission.payload.order")
        except RecordError as exc:
            raise Rejection(str(exc), "bad-rejection") from None
        sp = submission.payload
        info = self.keys.get(submission.signer)
        if info is None or not info.participant == p["participant"] == sp["participant"]:
            raise Rejection("rejected reveal was not signed by a key of the named participant",
                            "bad-rejection")
        if (sp["market_id"], sp["interval"]) != (p["market_id"], p["interval"]):
            raise Rejection("rejected reveal is for another market interval", "bad-rejection")
        if sp["log_id"] != self.log_id:
            raise Rejection("rejected reveal is for another log", "bad-rejection")
        if not signature_valid(info.public_key, submission.sig, signing_message(sp)):
            raise Rejection("rejected reveal does not carry the participant's valid signature",
                            "bad-rejection")
        try:
            self.sealed.open_commit(dict(sp))
        except Rejection as exc:
            if exc.code != "reveal-mismatch":
                raise Rejection(f"rejected reveal: {exc.reason}", "bad-rejection") from None
        else:
            raise Rejection("the rejected reveal matches an open commitment: the rejection is "
                            "unjustified", "bad-rejection")
        # The rejection spends the reveal's nonce: the same reveal cannot be recorded again.
        self._use_nonce(submission.signer, sp["nonce"])

    def _checkpoint(self, p: dict, seq: int, clock_ms: int | None) -> None:
        if p["log_id"] != self.log_id:
            raise Rejection(f"checkpoint is for log {p['log_id']}, not {self.log_id}",
                            "bad-checkpoint")
        if p["tree_size"] != seq:
            raise Rejection(f"checkpoint must cover the {seq} entries before it, claims "
                            f"{p['tree_size']}", "bad-checkpoint")
        root = self.tree.root()
        if p["root_hash"] != root.hex():
            raise Rejection(f"checkpoint root {p['root_hash']} is not the root {root.hex()} of "
                            "the entries before it", "bad-checkpoint")
        last_ms = self.checkpoints[-1].timestamp_ms if self.checkpoints else 0
        if p["timestamp_ms"] < last_ms:
            raise Rejection(f"checkpoint timestamp {p['timestamp_ms']} ms goes back in time (the "
                            f"previous checkpoint is dated {last_ms} ms)", "bad-checkpoint")
        # Dated ahead of the clock, it would block every later checkpoint until the clock caught
        # up; repeating the previous checkpoint's time (if that one is ahead) is allowed.
        if clock_ms is not None and p["timestamp_ms"] > max(clock_ms, last_ms):
            raise Rejection(f"checkpoint timestamp {p['timestamp_ms']} ms is ahead of the clock "
                            f"({clock_ms} ms)", "future-checkpoint")
        self.journal.append(self.checkpoints,
                            CheckpointInfo(seq, p["tree_size"], root, p["timestamp_ms"]))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while applying records.

    Applying a record allocates a few small objects that form no reference cycles; with a large
    in-memory state each automatic collection rescans all of it, which doubled the cost of
    applying an order in measurements.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- batch checking with parallel signature verification -----------------------------------
_POOL: ThreadPoolExecutor | None = None
_CHUNK = 512


def _pool() -> Executor:
    # A process-wide pool is created lazily: threads cost nothing when idle and creating them
    # per batch would cost more than verifying a small batch.
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                   thread_name_prefix="lemgrid-ed25519")
    return _POOL


def _verify_chunk(items: Sequence[Prepared],
                  verified: Container[tuple[bytes, str, bytes]] = ()) -> list[bool]:
    return [item.public_key is not None
            and ((bytes(item.public_key), item.record.sig, item.message) in verified
                 or signature_valid(item.public_key, item.record.sig, item.message))
            for item in items]


def check_batch(state: LedgerState, records: Sequence[SignedRecord],
                on_entry: Callable[[int, Prepared, bytes, bytes], None],
                on_soft_rejection: Callable[[int, Prepared, Rejection], None] | None = None,
                clock_ms: int | None = None,
                verified: Container[tuple[bytes, str, bytes]] = ()) -> None:
    """Prepare, verify and apply records in order; ``on_entry(i, prepared, data, leaf_hash)``.

    Parameters
    ----------
    state : LedgerState
        Mutated in place; the caller owns the transaction (:meth:`LedgerState.begin`).
    records : sequence of SignedRecord
        Records in log order.
    on_entry : callable
        Called for every accepted record with its index in ``records``.
    on_soft_rejection : callable, optional
        Called for a soft rejection (a mismatching reveal); without it soft rejections raise.
    clock_ms : int, optional
        The appending process's clock [ms since the Unix epoch] (see :meth:`LedgerState.apply`).
    verified : container of (bytes, str, bytes), optional
        ``(raw public key, signature hex, signed message)`` triples that
        :func:`~lemgrid.ledger.identity.signature_valid` has already accepted (the market
        server verifies a request's signatures off its event loop); a record whose key,
        signature and message are all in it is not verified again.

    Raises
    ------
    Rejection
        At the first bad record (schema errors included), with ``index`` set to its position in
        ``records`` and the message starting with ``record i``.
    """
    with gc_paused():
        _check_batch(state, records, on_entry, on_soft_rejection, clock_ms, verified)


def _check_batch(state: LedgerState, records: Sequence[SignedRecord],
                 on_entry: Callable[[int, Prepared, bytes, bytes], None],
                 on_soft_rejection: Callable[[int, Prepared, Rejection], None] | None,
                 clock_ms: int | None, verified: Container[tuple[bytes, str, bytes]]) -> None:
    pending: dict[str, PublicKey] = {}
    use_pool = len(records) > _CHUNK
    batches: list[tuple[list[Prepared], Any]] = []
    chunk: list[Prepared] = []
    for i, record in enumerate(records):
        try:
            chunk.append(state.prepare(record, pending))
        except Rejection as exc:
            raise exc.at(i) from None
        except RecordError as exc:
            raise Rejection(str(exc), "bad-record").at(i) from None
        if len(chunk) == _CHUNK or i == len(records) - 1:
            # Submit as soon as a chunk is ready so that verification overlaps preparation.
            batches.append((chunk, _pool().submit(_verify_chunk, chunk, verified) if use_pool else None))
            chunk = []
    i = 0
    for chunk, future in batches:
        oks = future.result() if future is not None else _verify_chunk(chunk, verified)
        for item, ok in zip(chunk, oks):
            try:
                data, digest = state.apply(item, ok, clock_ms)
            except Rejection as exc:
                if exc.soft and on_soft_rejection is not None:
                    on_soft_rejection(i, item, exc)
                else:
                    raise exc.at(i, item.kind) from None
            else:
                on_entry(i, item, data, digest)
            i += 1
