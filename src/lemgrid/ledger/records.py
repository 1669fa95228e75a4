"""Ledger record kinds, their payload schemas, signed envelopes and the leaf encoding.

A *payload* is a plain dict with a ``kind`` and the fields listed in :data:`SCHEMAS`, in integer
units only. A :class:`SignedRecord` wraps a payload with the signer's key id and an Ed25519
signature over it. An *entry* of the log is a signed record at a position ``seq``; its leaf data
(hashed into the Merkle tree) is the canonical JSON of
``{"payload": ..., "seq": ..., "sig": ..., "signer": ...}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lemgrid.errors import InputError
from lemgrid.ledger.canonical import CanonicalError, canonical_bytes

_HEX = re.compile(r"[0-9a-f]*")
_UTC_START = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


class RecordError(InputError):
    """A payload that does not follow its kind's schema; the message names the field."""


Check = Callable[[Any], bool]


def _text(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= 200


def _int(value: Any) -> bool:
    return type(value) is int


def _str(value: Any) -> bool:
    return type(value) is str and len(value) <= 2000


def _positive(value: Any) -> bool:
    return type(value) is int and value > 0


def _non_negative(value: Any) -> bool:
    return type(value) is int and value >= 0


def _hex(length: int) -> Check:
    def check(value: Any) -> bool:
        return type(value) is str and len(value) == length and _HEX.fullmatch(value) is not None
    return check


def valid_interval(value: Any) -> bool:
    """True for a delivery interval in its one canonical form.

    An interval is a non-negative integer index, or a UTC start time written exactly as
    ``YYYY-MM-DDTHH:MM:SSZ``. Nothing else is accepted, so that one interval has one spelling
    (``1`` and ``"1"``, or ``"...T12:00Z"`` and ``"...T12:00:00+00:00"``, would otherwise be two
    intervals whose energy could each be sold).
    """
    if type(value) is int:
        return value >= 0
    if type(value) is not str or _UTC_START.fullmatch(value) is None:
        return False
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


#: What a field must hold, for error messages (fields not listed: see the schema table).
HINTS = {"interval": "an integer index >= 0 or a UTC start time 'YYYY-MM-DDTHH:MM:SSZ'",
         "log_id": "the 64-hex-digit id of the log the record is for"}


def _one_of(*options: Any) -> Check:
    def check(value: Any) -> bool:
        return any(type(value) is type(option) and value == option for option in options)
    return check


def _texts(value: Any) -> bool:
    return type(value) is list and len(value) > 0 and all(_text(v) for v in value)


def _postings(value: Any) -> bool:
    return (type(value) is list and len(value) > 0
            and all(type(p) is dict and p.keys() == {"account", "amount_ueur"}
                    and _text(p["account"]) and _int(p["amount_ueur"]) for p in value))


def _object(value: Any) -> bool:
    return type(value) is dict


#: A real number written as a decimal string (``repr`` of a float): signed records carry no
#: floats, and a decimal string is exact both ways (Python's ``float(repr(x)) == x``).
DECIMAL = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def is_decimal(value: Any) -> bool:
    """A decimal string of a finite real number (at most 40 characters)."""
    return type(value) is str and len(value) <= 40 and DECIMAL.fullmatch(value) is not None


def _decimals(value: Any) -> bool:
    return (type(value) is list and 0 < len(value) <= 100_000
            and all(is_decimal(v) for v in value))


def _price_points(value: Any) -> bool:
    return (type(value) is list and 2 <= len(value) <= 100
            and all(type(p) is list and len(p) == 2 and _non_negative(p[0]) and _int(p[1])
                    for p in value))


def _balanced_postings(value: Any) -> bool:
    return value == [] or _postings(value)


_is_hex32, _is_hex64, _is_hex128 = _hex(32), _hex(64), _hex(128)

_ORDER_FIELDS: dict[str, Check] = {
    "log_id": _is_hex64, "market_id": _text, "interval": valid_interval, "order_id": _text,
    "participant": _text, "meter": _text, "side": _one_of("buy", "sell"), "quantity_wh": _positive,
    "price_meur_per_kwh": _int, "nonce": _text,
}

#: Required fields per kind; optional ones are listed in :data:`OPTIONAL`.
SCHEMAS: dict[str, dict[str, Check]] = {
    "log-init": {"log_id": _is_hex64, "operator_key": _is_hex64, "created_ms": _non_negative,
                 "version": _one_of(2)},
    "key-registration": {"participant": _text, "meter": _text, "public_key": _is_hex64,
                         "pop_sig": _is_hex128},
    "key-revocation": {"log_id": _is_hex64, "key_id": _is_hex32, "reason": _text,
                       "nonce": _text},
    "capability": {"participant": _text, "interval": valid_interval,
                   "sellable_wh": _non_negative,
                   "source": _one_of("metered", "forecast", "declared")},
    "order": _ORDER_FIELDS,
    "commit": {"log_id": _is_hex64, "market_id": _text, "interval": valid_interval,
               "participant": _text, "commitment": _is_hex64, "nonce": _text},
    "cancel": {"log_id": _is_hex64, "market_id": _text, "order_id": _text,
               "participant": _text, "nonce": _text},
    "gate-closure": {"market_id": _text, "interval": valid_interval},
    "reveal": {"log_id": _is_hex64, "market_id": _text, "interval": valid_interval,
               "participant": _text, "salt": _is_hex64, "order": _object, "nonce": _text},
    "reveal-closure": {"market_id": _text, "interval": valid_interval},
    "rejection": {"reason": _one_of("reveal-mismatch", "unrevealed"), "market_id": _text,
                  "interval": valid_interval, "participant": _text},
    "trade": {"market_id": _text, "interval": valid_interval, "trade_id": _text, "buyer": _text,
              "seller": _text, "quantity_wh": _positive, "price_meur_per_kwh": _int},
    "clearing": {"market_id": _text, "interval": valid_interval, "n_trades": _non_negative,
                 "volume_wh": _non_negative},
    # A resting order of a continuous session whose validity ended: its unfilled remainder
    # leaves the book (and the seller's offered energy).
    "order-expiry": {"market_id": _text, "interval": valid_interval, "order_id": _text,
                     "remaining_wh": _non_negative},
    "settlement": {"settlement_id": _text, "market_id": _text, "trade_ids": _texts,
                   "postings": _postings},
    "checkpoint": {"log_id": _is_hex64, "tree_size": _non_negative, "root_hash": _is_hex64,
                   "timestamp_ms": _non_negative},
    # The operator vouches that an aggregator's keys may sign orders and cancels for a member.
    "mandate": {"aggregator": _text, "participant": _text},
    # A meter's registers over one delivery interval, signed by the key bound to the meter.
    "meter-reading": {"log_id": _is_hex64, "market_id": _text, "interval": valid_interval,
                      "participant": _text, "meter": _text, "import_wh": _non_negative,
                      "export_wh": _non_negative, "nonce": _text},
    # Closes a session's metering: no reading for it afterwards; its postings (what participants
    # pay for delivery and what the retailer, DSO and state receive) must balance.
    "delivery-settlement": {"market_id": _text, "interval": valid_interval,
                            "postings": _postings},
    # One participant's statement of a delivered session [Wh, µ€; costs positive = pays].
    "statement": {"market_id": _text, "interval": valid_interval, "participant": _text,
                  "bought_wh": _non_negative, "sold_wh": _non_negative,
                  "metered_import_wh": _non_negative, "metered_export_wh": _non_negative,
                  "imbalance_short_wh": _non_negative, "imbalance_long_wh": _non_negative,
                  "market_ueur": _int, "surplus_share_ueur": _int, "retail_energy_ueur": _int,
                  "network_ueur": _int, "imbalance_ueur": _int, "levies_ueur": _int,
                  "fixed_ueur": _int, "total_ueur": _int},
    # The DSO's grid validation and flexibility (lemgrid.service.grid).
    "traffic-light": {"market_id": _text, "interval": valid_interval,
                      "state": _one_of("green", "amber", "red"), "reason": _str},
    "flex-offer": {"log_id": _is_hex64, "offer_id": _text, "participant": _text,
                   "meter": _text, "interval": valid_interval, "resource": _text,
                   "asset": _non_negative, "direction": _one_of("up", "down"),
                   "power_w": _positive, "price_meur_per_kwh": _int, "nonce": _text},
    # A request for flexibility the TSO made over the server's API (cleared with the DSO's day).
    "flex-request": {"request_id": _text, "buyer": _text, "requested_by": _text,
                     "interval": valid_interval, "direction": _one_of("up", "down"),
                     "power_w": _positive, "max_price_meur_per_kwh": _int, "service": _text},
    "flex-activation": {"activation_id": _text, "offer_id": _text, "provider": _text,
                        "interval": valid_interval, "direction": _one_of("up", "down"),
                        "power_w": _positive, "price_meur_per_kwh": _int, "buyer": _text,
                        "utilisation_ueur": _int},
    # An activation's measured delivery (lemgrid.service.grid): what was not delivered and the
    # money that follows (utilisation on the delivered part, penalty on the shortfall).
    "flex-delivery": {"activation_id": _text, "power_w": _positive,
                      "shortfall_w": _non_negative, "utilisation_ueur": _int,
                      "penalty_ueur": _non_negative},
    # A long-term product (lemgrid.service.grid): the DSO reserved a provider's offers of a
    # participant's resources over a day's reservation window [interval, window_stop) and pays
    # their availability, used or not.
    "flex-reservation": {"reservation_id": _text, "provider": _text, "participant": _text,
                         "interval": valid_interval, "window_stop": _positive,
                         "availability_ueur": _non_negative},
    # A member's bid into a community session (lemgrid.service.community): its forecasts [kW]
    # and its assets' rows by kind (decimal strings for reals).
    "community-bid": {"log_id": _is_hex64, "market_id": _text, "interval": valid_interval,
                      "participant": _text, "meter": _text, "load_kw": _decimals,
                      "pv_kw": _decimals, "assets": _object, "nonce": _text},
    # The manager's clearing of a community session: who took part, the hash of the published
    # schedules and positions, and the members' money in the session [µ€] (balanced).
    "community-clearing": {"market_id": _text, "interval": valid_interval, "members": _texts,
                           "results_sha256": _is_hex64, "postings": _balanced_postings},
    # UMEI (lemgrid.service.umei): a bearer token issued on a challenge signed by a registered
    # key, and each accepted UMEI write, attested by the operator under that token.
    "umei-token": {"participant": _text, "key_id": _is_hex32, "challenge": _is_hex64,
                   "challenge_sig": _is_hex128, "token_id": _is_hex64,
                   "expires_ms": _non_negative},
    "umei-request": {"token_id": _is_hex64, "participant": _text, "method": _text,
                     "path": _text, "body_sha256": _is_hex64, "resource": _text,
                     "resource_id": _text},
}

OPTIONAL: dict[str, dict[str, Check]] = {
    "rejection": {"commitment": _is_hex64, "submission": _object},
    "trade": {"buy_order_id": _text, "sell_order_id": _text},
    "clearing": {"price_meur_per_kwh": _int},
    "checkpoint": {"label": _text},
    # The device (asset) a DSO activation is addressed to (lemgrid.ledger.activation).
    "flex-activation": {"device": _text},
    # A continuous-session order's validity: it leaves the book at the first event after it.
    "order": {"valid_until_ms": _non_negative},
    # A minimum acceptance quantity: activated at least this much or not at all; a price
    # curve: [W, m€/kWh] points of the marginal price as more is activated (lemgrid.dso).
    "flex-offer": {"min_power_w": _positive, "price_points": _price_points,
                   # a long-term product's availability price [m€ per kW and hour reserved]
                   "availability_meur_per_kw_h": _positive},
    # The buses a TSO request may be served from (its area; every bus if absent).
    "flex-request": {"buses": _texts},
}

#: Kinds only the log operator signs; the others are signed by participants.
OPERATOR_KINDS = frozenset({"log-init", "key-registration", "capability", "gate-closure",
                            "reveal-closure", "rejection", "trade", "clearing", "settlement",
                            "checkpoint", "delivery-settlement", "statement", "mandate",
                            "traffic-light", "flex-activation", "flex-request",
                            "umei-token", "umei-request", "community-clearing",
                            "order-expiry", "flex-delivery", "flex-reservation"})
#: Kinds a participant signs (a key-revocation may be signed by the operator or the key itself).
#: Each names the log it is for (``log_id``), so that it cannot be replayed into another log.
PARTICIPANT_KINDS = frozenset({"order", "cancel", "commit", "reveal", "key-revocation",
                               "meter-reading", "flex-offer", "community-bid"})


def validate_payload(payload: Any, where: str = "payload") -> str:
    """Check a payload against its kind's schema; returns the kind.

    Raises
    ------
    RecordError
        Naming the first missing, unknown or ill-typed field.
    """
    if type(payload) is not dict:
        raise RecordError(f"{where}: must be a JSON object, got {type(payload).__name__}")
    kind = payload.get("kind")
    if type(kind) is not str or kind not in SCHEMAS:
        raise RecordError(f"{where}.kind: unknown record kind {kind!r} "
                          f"(one of {', '.join(sorted(SCHEMAS))})")
    required = SCHEMAS[kind]
    optional = OPTIONAL.get(kind, {})
    for name, check in required.items():
        if name not in payload:
            raise RecordError(f"{where}.{name}: missing (required for a {kind} record)")
        if not check(payload[name]):
            raise RecordError(_invalid(where, name, payload[name], kind))
    for name, value in payload.items():
        if name == "kind" or name in required:
            continue
        optional_check = optional.get(name)
        if optional_check is None:
            raise RecordError(f"{where}.{name}: unknown field for a {kind} record")
        if not optional_check(value):
            raise RecordError(_invalid(where, name, value, kind))
    return kind


def _invalid(where: str, name: str, value: Any, kind: str) -> str:
    hint = HINTS.get(name)
    return (f"{where}.{name}: invalid value {value!r} for a {kind} record"
            + (f" (expected {hint})" if hint else ""))


def validate_order(order: Any, where: str = "order") -> None:
    """Check an order payload (used for orders inside reveals)."""
    if validate_payload(order, where) != "order":
        raise RecordError(f"{where}.kind: expected 'order', got {order.get('kind')!r}")


@dataclass(frozen=True)
class SignedRecord:
    """A payload with the signer's key id (32 hex digits) and Ed25519 signature (128 hex digits)."""

    payload: dict
    signer: str
    sig: str

    def to_json(self) -> dict:
        """The JSON form ``{"payload": ..., "signer": ..., "sig": ...}``."""
        return {"payload": self.payload, "signer": self.signer, "sig": self.sig}

    @classmethod
    def from_json(cls, obj: Any, where: str = "record") -> SignedRecord:
        """Read the JSON form; checks the envelope, not the payload or the signature."""
        if type(obj) is not dict or set(obj) - {"seq"} != {"payload", "signer", "sig"}:
            raise RecordError(f"{where}: a signed record is an object with exactly 'payload', "
                              "'signer' and 'sig'")
        check_envelope(obj["signer"], obj["sig"], where)
        if type(obj["payload"]) is not dict:
            raise RecordError(f"{where}.payload: must be a JSON object")
        return cls(obj["payload"], obj["signer"], obj["sig"])


def check_envelope(signer: Any, sig: Any, where: str = "record") -> None:
    """Check that a signer key id and a signature are in their one canonical form.

    Raises
    ------
    RecordError
        Unless ``signer`` is 32 and ``sig`` 128 lowercase hex digits (no capitals, no spaces:
        the stored entry must be exactly what the verifier reads back).
    """
    if not _is_hex32(signer):
        raise RecordError(f"{where}.signer: must be a key id (32 lowercase hex digits), "
                          f"got {signer!r}")
    if not _is_hex128(sig):
        raise RecordError(f"{where}.sig: must be an Ed25519 signature (128 lowercase hex "
                          f"digits), got {sig!r}")


def leaf_data(payload_bytes: bytes, seq: int, sig: str, signer: str) -> bytes:
    """Leaf data of an entry: canonical JSON of ``{"payload", "seq", "sig", "signer"}``.

    Built from the payload's canonical bytes directly (keys already in canonical order; ``sig``
    and ``signer`` are hex so need no escaping), which equals ``canonical_bytes`` of the object.
    """
    return b"".join((b'{"payload":', payload_bytes, b',"seq":', str(seq).encode(), b',"sig":"',
                     sig.encode(), b'","signer":"', signer.encode(), b'"}'))


def payload_bytes(payload: dict, where: str = "payload") -> bytes:
    """Canonical bytes of a payload, with canonicalisation errors as :class:`RecordError`."""
    try:
        return canonical_bytes(payload, where)
    except CanonicalError as exc:
        raise RecordError(str(exc)) from None


def order_payload(*, log_id: str, market_id: str, interval: int | str, order_id: str,
                  participant: str, meter: str, side: str, quantity_wh: int,
                  price_meur_per_kwh: int, nonce: str) -> dict:
    """An ``order`` payload, validated.

    Parameters
    ----------
    log_id : str
        The log the order is for (64 hex digits): the signature binds the order to it.
    market_id : str
        Market (e.g. ``"da-2024-06-01"``).
    interval : int or str
        Delivery interval: an index >= 0 or a UTC start time ``YYYY-MM-DDTHH:MM:SSZ``.
    order_id : str
        Unique within the market.
    participant, meter : str
        Who orders, and the metering point its key is bound to.
    side : {"buy", "sell"}
    quantity_wh : int
        Energy [Wh], > 0.
    price_meur_per_kwh : int
        Limit price [m€/kWh].
    nonce : str
        Unique per signing key (replay protection).
    """
    payload = {"kind": "order", "log_id": log_id, "market_id": market_id, "interval": interval,
               "order_id": order_id, "participant": participant, "meter": meter, "side": side,
               "quantity_wh": quantity_wh, "price_meur_per_kwh": price_meur_per_kwh,
               "nonce": nonce}
    validate_payload(payload, "order")
    return payload
