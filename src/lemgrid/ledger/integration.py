"""Record a market clearing in a ledger: orders, trades, clearing results, settlement, checkpoint.

:func:`record_clearing` is what ``lemgrid clear ORDERS.csv --ledger PATH`` calls. It takes plain
records (the order rows and the trades a clearing produced, floats in kWh and €/kWh), converts them
to integer units, signs the orders with each participant's key (demo keys from a keystore next to
the ledger when the orders carry no signatures), and appends everything with a signed checkpoint
in one all-or-nothing transaction.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lemgrid.errors import InputError
from lemgrid.ledger.identity import (
    Keystore,
    generate_key,
    key_id,
    registration_payload,
    sign_record,
)
from lemgrid.ledger.journal import Rejection
from lemgrid.ledger.db import LedgerDB
from lemgrid.ledger.records import (
    HINTS,
    SignedRecord,
    check_envelope,
    order_payload,
    valid_interval,
)
from lemgrid.ledger.spending import settlement_postings
from lemgrid.ledger.store import Ledger
from lemgrid.ledger.units import eur_per_kwh_to_meur, kwh_to_wh, kwh_to_wh_floor


def default_keystore_path(ledger_path: str | Path) -> Path:
    """Where the demo keystore of the ledger at ``ledger_path`` lives: ``<ledger>.keys.json``."""
    path = Path(ledger_path)
    return path.with_name(path.name + ".keys.json")


@dataclass(frozen=True)
class ClearingRecord:
    """What :func:`record_clearing` appended.

    Attributes
    ----------
    ledger_path : Path
    first_seq : int
        Position of the first entry appended.
    size : int
        Entries in the log afterwards (the checkpoint included).
    keys_registered, capabilities, orders, trades, clearings, settlements : int
        Records appended, per kind.
    checkpoint_seq : int
        Position of the checkpoint entry.
    root_hex : str
        Root the checkpoint signs.
    dropped_wh : float
        Energy lost to rounding trade quantities down to whole Wh [Wh] (< 1 Wh per trade).
    keystore_path : Path or None
        The keystore used for demo keys.
    """

    ledger_path: Path
    first_seq: int
    size: int
    keys_registered: int
    capabilities: int
    orders: int
    trades: int
    clearings: int
    settlements: int
    checkpoint_seq: int
    root_hex: str
    dropped_wh: float
    keystore_path: Path | None


def _missing(value: Any) -> bool:
    """None, NaN, an empty string, or pandas' NA / NaT (without importing pandas)."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value == ""


def _plain(value: Any, field: str) -> Any:
    """numpy / pandas scalars to plain Python values; aware timestamps to UTC interval names."""
    if isinstance(value, bool):
        raise InputError(f"{field} must not be a boolean, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, datetime):  # pandas.Timestamp is a datetime
        if value.tzinfo is None or value.utcoffset() is None:
            raise InputError(f"{field} must be timezone-aware, got {value.isoformat()!r}")
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _interval(value: Any, field: str) -> int | str:
    if _missing(value):
        return 0
    value = _plain(value, field)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not valid_interval(value):
        raise InputError(f"{field} must be {HINTS['interval']}, got {value!r}")
    return value


def _text(row: Mapping, name: str, where: str) -> str:
    value = row.get(name)
    if _missing(value):
        raise InputError(f"{where}: {name} is missing")
    return str(_plain(value, f"{where}: {name}"))


def _optional_text(row: Mapping, name: str) -> str | None:
    value = row.get(name)
    return None if _missing(value) else str(_plain(value, name))


def record_clearing(ledger_path: str | Path, orders: Sequence[Mapping],
                    trades: Sequence[Mapping], market_id: str, *,
                    keys: Keystore | None = None, settle: bool = True,
                    timestamp_ms: int | None = None) -> ClearingRecord:
    """Append a market clearing to a ledger (created if missing) and checkpoint it.

    Parameters
    ----------
    ledger_path : str or Path
        Ledger file; created with a new operator key if it does not exist.
    orders : sequence of dict
        Order rows: ``order_id``, ``participant``, ``side`` (buy|sell), ``quantity_kwh`` [kWh],
        ``price_eur_per_kwh`` [€/kWh], optional ``interval`` (default 0) and ``bus`` (the
        metering point; default the participant id). Rows that carry ``signature``, ``key_id``
        and ``nonce`` are taken as signed by the participant (over the canonical order payload,
        which names the ledger's ``log_id``; see ``docs/ledger.md``); others are signed with
        demo keys.
    trades : sequence of dict
        Trades: ``buy_order_id``, ``sell_order_id``, ``quantity_kwh`` [kWh],
        ``price_eur_per_kwh`` [€/kWh], optional ``interval`` and ``trade_id``.
    market_id : str
        Market (session) id; order ids and trade ids are unique within it.
    keys : Keystore, optional
        Operator and participant keys; by default the keystore ``<ledger>.keys.json`` is loaded,
        or created with fresh keys. New participant keys are registered in the ledger.
    settle : bool
        Also append one balanced settlement per interval (buyers pay sellers the trade value).
    timestamp_ms : int, optional
        Checkpoint time [ms since the Unix epoch]; now by default.

    Returns
    -------
    ClearingRecord

    Raises
    ------
    InputError
        For a malformed row (the message names the row and field) or a record the ledger
        refuses (replay, double spend, unknown order, ...); nothing is appended then.

    Notes
    -----
    Without metering data, each seller's capability for an interval (the sellable energy the
    no-double-spending rule checks against) is *declared* as the total of its sell orders in this
    clearing, unless the ledger already holds one; a later clearing of the same interval then
    cannot sell the same energy again. Quantities round to whole Wh (ties to even) and prices to
    whole m€/kWh; trade quantities round down so that rounding never over-fills an order.
    """
    ledger_path = Path(ledger_path)
    if not isinstance(market_id, str) or not market_id:
        raise InputError(f"market_id must be a non-empty string, got {market_id!r}")
    keystore_path = None
    if keys is None:
        keystore_path = default_keystore_path(ledger_path)
        if keystore_path.exists():
            keys = Keystore.load(keystore_path)
        elif ledger_path.exists():
            raise InputError(f"ledger {ledger_path} exists but its keystore {keystore_path} does "
                             "not; pass the operator's keys")
        else:
            keys = Keystore(operator=generate_key())
    rows = _order_rows(orders, market_id)
    trade_rows = _trade_rows(trades, rows, market_id)

    created = not ledger_path.exists()
    ledger = (Ledger.create(ledger_path, keys.operator) if created
              else Ledger.open(ledger_path, keys.operator))
    try:
        records, counts, new_keys = _records(ledger, keys, rows, trade_rows, market_id, settle)
        if keystore_path is not None and (new_keys or created):
            keys.save(keystore_path)  # before appending: a registered key must not be lost
        try:
            # One transaction: the clearing is recorded with its checkpoint or not at all.
            result = ledger.append(records, checkpoint=True, label=market_id,
                                   timestamp_ms=timestamp_ms)
        except Rejection as exc:
            what = "its checkpoint" if exc.index is None else _describe(records[exc.index])
            raise InputError(f"ledger refused {what}: {exc.reason}") from None
    except BaseException:
        ledger.close()
        if created and ledger.size <= 1:  # nothing but its log-init: as if never created
            LedgerDB.remove(ledger_path)
        raise
    ledger.close()
    checkpoint = result.checkpoint
    assert checkpoint is not None
    return ClearingRecord(ledger_path, result.first_seq, result.size,
                          counts["key-registration"], counts["capability"], counts["order"],
                          counts["trade"], counts["clearing"], counts["settlement"],
                          checkpoint["seq"], checkpoint["payload"]["root_hash"],
                          sum(t["dropped_wh"] for t in trade_rows), keystore_path)


def _describe(record: SignedRecord) -> str:
    p = record.payload
    name = {"order": "order_id", "trade": "trade_id", "settlement": "settlement_id",
            "key-registration": "participant", "capability": "participant"}.get(p["kind"])
    return f"{p['kind']} {p[name]!r}" if name else p["kind"]


def _order_rows(orders: Sequence[Mapping], market_id: str) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for n, row in enumerate(orders):
        where = f"order {n}"
        order_id = _text(row, "order_id", where)
        where = f"order {n} ({order_id!r})"
        if order_id in rows:
            raise InputError(f"{where}: duplicate order_id")
        participant = _text(row, "participant", where)
        side = _text(row, "side", where).lower()
        if side not in ("buy", "sell"):
            raise InputError(f"{where}: side must be 'buy' or 'sell', got {row.get('side')!r}")
        quantity_wh = kwh_to_wh(_plain(row.get("quantity_kwh"), "quantity_kwh"),
                                f"{where}: quantity_kwh")
        if quantity_wh <= 0:
            raise InputError(f"{where}: quantity_kwh must be at least 0.0005 kWh (1 Wh after "
                             f"rounding), got {row.get('quantity_kwh')!r}")
        payload = {"market_id": market_id,
                   "interval": _interval(row.get("interval"), f"{where}: interval"),
                   "order_id": order_id, "participant": participant,
                   "meter": _optional_text(row, "bus") or participant, "side": side,
                   "quantity_wh": quantity_wh,
                   "price_meur_per_kwh": eur_per_kwh_to_meur(
                       _plain(row.get("price_eur_per_kwh"), "price_eur_per_kwh"),
                       f"{where}: price_eur_per_kwh")}
        signature = _optional_text(row, "signature")
        if signature is not None:
            payload["nonce"] = _text(row, "nonce", where)
            signed = {"signer": _text(row, "key_id", where), "sig": signature}
            check_envelope(signed["signer"], signed["sig"], where)
        else:
            payload["nonce"] = f"{market_id}/{order_id}"
            signed = None
        rows[order_id] = {"payload": payload, "signed": signed}
    return rows


def _trade_rows(trades: Sequence[Mapping], rows: Mapping[str, dict],
                market_id: str) -> list[dict]:
    out = []
    for n, row in enumerate(trades):
        where = f"trade {n}"
        buy_id, sell_id = _text(row, "buy_order_id", where), _text(row, "sell_order_id", where)
        for order_id, side in ((buy_id, "buy"), (sell_id, "sell")):
            order = rows.get(order_id)
            if order is None:
                raise InputError(f"{where}: {side}_order_id {order_id!r} is not among the orders")
            if order["payload"]["side"] != side:
                raise InputError(f"{where}: {side}_order_id {order_id!r} is a "
                                 f"{order['payload']['side']} order")
        buy, sell = rows[buy_id]["payload"], rows[sell_id]["payload"]
        interval = (buy["interval"] if _missing(row.get("interval"))
                    else _interval(row.get("interval"), f"{where}: interval"))
        quantity_kwh = _plain(row.get("quantity_kwh"), "quantity_kwh")
        quantity_wh = kwh_to_wh_floor(quantity_kwh, f"{where}: quantity_kwh")
        if quantity_wh < 0:
            raise InputError(f"{where}: quantity_kwh must be positive, got {quantity_kwh!r}")
        out.append({"trade_id": _optional_text(row, "trade_id") or f"{interval}/{n}",
                    "interval": interval, "buyer": buy["participant"],
                    "seller": sell["participant"], "buy_order_id": buy_id,
                    "sell_order_id": sell_id, "quantity_wh": quantity_wh,
                    "price_meur_per_kwh": eur_per_kwh_to_meur(
                        _plain(row.get("price_eur_per_kwh"), "price_eur_per_kwh"),
                        f"{where}: price_eur_per_kwh"),
                    "dropped_wh": float(quantity_kwh) * 1000.0 - quantity_wh})
    return out


def _records(ledger: Ledger, keys: Keystore, rows: Mapping[str, dict], trade_rows: list[dict],
             market_id: str, settle: bool) -> tuple[list[SignedRecord], dict[str, int], bool]:
    state, operator = ledger.state, keys.operator
    counts: dict[str, int] = defaultdict(int)
    registrations, records = [], []
    registered = {info.participant: kid for kid, info in state.keys.items()
                  if kid not in state.revoked}
    new_keys = False
    for order in rows.values():
        p = order_payload(log_id=ledger.log_id, **order["payload"])
        participant = p["participant"]
        if order["signed"] is not None:
            records.append(SignedRecord(p, **order["signed"]))
            continue
        key, fresh = keys.participant_key(participant)
        new_keys |= fresh
        if participant in registered and registered[participant] != key_id(key):
            raise InputError(f"order {p['order_id']!r}: participant {participant!r} is "
                             f"registered with key {registered[participant]} whose private key "
                             "is not in the keystore; sign its orders")
        if participant not in registered:
            registrations.append(registration_payload(key, participant, p["meter"],
                                                      ledger.log_id))
            registered[participant] = key_id(key)
        records.append(sign_record(key, p))
    counts["key-registration"] = len(registrations)
    counts["order"] = len(rows)

    declared: dict[tuple, int] = defaultdict(int)
    for order in rows.values():
        p = order["payload"]
        if p["side"] == "sell" and (p["participant"], p["interval"]) not in \
                state.spending.capability:
            declared[(p["participant"], p["interval"])] += p["quantity_wh"]
    capabilities = [{"kind": "capability", "participant": participant, "interval": interval,
                     "sellable_wh": wh, "source": "declared"}
                    for (participant, interval), wh in declared.items()]
    counts["capability"] = len(capabilities)

    operator_payloads: list[dict] = []
    by_interval: dict[Any, list[dict]] = defaultdict(list)
    for t in trade_rows:
        if t["quantity_wh"] == 0:
            continue
        payload = {"kind": "trade", "market_id": market_id,
                   **{k: v for k, v in t.items() if k != "dropped_wh"}}
        operator_payloads.append(payload)
        by_interval[t["interval"]].append(payload)
    counts["trade"] = len(operator_payloads)
    intervals = sorted({o["payload"]["interval"] for o in rows.values()} | set(by_interval),
                       key=lambda v: (isinstance(v, str), v))
    for interval in intervals:
        interval_trades = by_interval.get(interval, [])
        clearing = {"kind": "clearing", "market_id": market_id, "interval": interval,
                    "n_trades": len(interval_trades),
                    "volume_wh": sum(t["quantity_wh"] for t in interval_trades)}
        prices = {t["price_meur_per_kwh"] for t in interval_trades}
        if len(prices) == 1:
            clearing["price_meur_per_kwh"] = prices.pop()
        operator_payloads.append(clearing)
        counts["clearing"] += 1
        if settle and interval_trades:
            operator_payloads.append({"kind": "settlement",
                                      "settlement_id": f"{market_id}/{interval}",
                                      "market_id": market_id,
                                      "trade_ids": [t["trade_id"] for t in interval_trades],
                                      "postings": settlement_postings(interval_trades)})
            counts["settlement"] += 1
    operator_records = [sign_record(operator, p) for p in registrations + capabilities]
    tail = [sign_record(operator, p) for p in operator_payloads]
    return operator_records + records + tail, counts, new_keys
