"""A simulated run on the verifiable ledger: ``lemgrid simulate --ledger PATH``.

Each day-ahead session of a :class:`~lemgrid.sim.results.SimulationResult` becomes one batch of
the ledger, appended with its signed checkpoint in one transaction, in this order:

1. (first session) each participant's ``key-registration``, bound to its meter;
2. the participants' signed ``order`` records, with the sellers' ``capability`` declared as
   all they offer in the interval: for the order markets (uniform, pay-as-bid, continuous) the
   real bids the agents sent (``SimulationResult.tables["orders"]``: every order with its
   quantity and limit price, filled or not; the intraday session as a market of its own,
   ``<market>/intraday``); for designs that clear no orders (the community manager schedules,
   P2P negotiates) each participant's position in the interval, a buy of what it bought or a
   sell of what it sold at the interval's local price;
3. the ``trade`` records between those orders (the clearing's own trades at their prices, or
   for positions buyers and sellers paired in participant order at the local price; whole Wh),
   one ``clearing`` per market interval and a balanced ``settlement`` of its trades;
4. the DSO's activations (``flex-activation``, up or down, addressed to the device that delivers
   it);
5. per interval and participant a ``meter-reading`` signed by the participant's key (import and
   export in whole Wh), then per interval a balanced ``delivery-settlement`` (what each
   participant pays against one counterparty account);
6. one ``statement`` per participant: the session's bill by component in µ€.

Every checkpoint is then anchored on an EVM chain (``contracts/anchor.vy``): an in-process EVM by
default, or a JSON-RPC node. Each participant's key is derived deterministically from the
scenario, the seed and its id, so the same run gives the same keys: demonstration keys, derived
from public data, never for real use. They are kept in the keystore ``<ledger>.keys.json``.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lemgrid.errors import InputError
from lemgrid.ledger.db import LedgerDB
from lemgrid.ledger.identity import Keystore, registration_payload, sign_record
from lemgrid.ledger.integration import default_keystore_path
from lemgrid.ledger.records import SignedRecord, order_payload
from lemgrid.ledger.spending import settlement_postings
from lemgrid.ledger.store import Ledger, default_witness_path
from lemgrid.ledger.units import eur_per_kwh_to_meur, eur_to_ueur, kwh_to_wh
from lemgrid.ledger.verify import Anchor

if TYPE_CHECKING:
    from lemgrid.sim.results import SimulationResult

_KEY_CONTEXT = b"lemgrid-sim-key/v1\x00"
#: The account that receives what participants pay for delivery (retailer, DSO and state).
COUNTERPARTY_ACCOUNT = "operator:counterparties"
#: Statement fields and the bill components (``SimulationResult.participant_series``) in them.
#: Community benefit sharing counts with the surplus share, flexibility income with the market.
STATEMENT_COMPONENTS = {
    "market_ueur": ("market_eur", "flex_eur"),
    "surplus_share_ueur": ("surplus_share_eur", "sharing_eur"),
    "retail_energy_ueur": ("retail_energy_eur",),
    "network_ueur": ("network_eur",),
    "imbalance_ueur": ("imbalance_eur",),
    "levies_ueur": ("levies_eur",),
    "fixed_ueur": ("fixed_eur",),
}


def simulation_key(scenario: str, seed: int, name: str) -> Ed25519PrivateKey:
    """The deterministic demonstration key of a simulated participant (or ``"operator"``)."""
    digest = hashlib.sha256(_KEY_CONTEXT + f"{scenario}\x00{seed}\x00{name}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(digest)


def meter_of(participant: str) -> str:
    """The metering point a simulated participant's key is bound to."""
    return f"meter:{participant}"


def market_id_of(result: SimulationResult, start: int) -> str:
    """The market id of the session starting at interval ``start``."""
    day = result.time_index[start].strftime("%Y-%m-%d")
    return f"{result.scenario}/{result.design}/{day}"[:200]


def _wh(kwh: np.ndarray) -> np.ndarray:
    """kWh to whole Wh, rounded down (a recorded quantity never exceeds what was traded)."""
    return np.floor(np.round(np.asarray(kwh, float) * 1000.0, 6)).astype(np.int64)


def _session_bounds(result: SimulationResult) -> list[tuple[int, int]]:
    days = result.time_index.normalize()
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    stops = np.r_[starts[1:], len(days)]
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


@dataclass(frozen=True)
class SimulationLedger:
    """What :func:`record_simulation` wrote."""

    path: Path
    entries: int
    sessions: int
    checkpoints: int
    anchored: int
    chain: str
    contract: str
    counts: dict[str, int]
    #: The checkpoint roots read back from the chain after anchoring (for
    #: :func:`lemgrid.ledger.verify.verify_ledger`'s ``anchors``).
    anchors: tuple[Anchor, ...] = ()


def _pair(buyers: list[tuple[str, int]], sellers: list[tuple[str, int]]) -> list[tuple]:
    """Pair buy and sell quantities (Wh) in order: (buyer, seller, Wh) pieces, none > either."""
    pieces = []
    b = s = 0
    left_b = buyers[0][1] if buyers else 0
    left_s = sellers[0][1] if sellers else 0
    while b < len(buyers) and s < len(sellers):
        q = min(left_b, left_s)
        if q > 0:
            pieces.append((buyers[b][0], sellers[s][0], q))
        left_b -= q
        left_s -= q
        if left_b == 0:
            b += 1
            left_b = buyers[b][1] if b < len(buyers) else 0
        if left_s == 0:
            s += 1
            left_s = sellers[s][1] if s < len(sellers) else 0
    return pieces


def _interval_price_meur(result: SimulationResult, t: int, paid_eur: float,
                         bought_kwh: float) -> int:
    price = float(result.price_eur_per_kwh[t])
    if not math.isfinite(price):
        price = paid_eur / bought_kwh if bought_kwh > 0 else 0.0
    return eur_per_kwh_to_meur(price)


@dataclass(frozen=True)
class _Book:
    """One market interval of a session as the ledger records it: the orders (side,
    participant, Wh, limit price in m€/kWh) and the trades between them (buyer, seller, Wh,
    price in m€/kWh)."""

    market_id: str
    interval: int
    orders: list[tuple[str, str, int, int]]
    trades: list[tuple[str, str, int, int]]


def _books_from_orders(result: SimulationResult, orders: Any, trades: Any, market: str,
                       start: int, stop: int) -> list[_Book]:
    """The sessions' real bids and trades (the ``orders`` and ``trades`` tables of the order
    markets), in whole Wh rounded down (so no order is filled beyond its quantity); the
    intraday session is a market of its own (``<market>/intraday``)."""
    def cut(table: Any) -> Any:
        """The session's rows with their horizon interval ``t`` and whole ``quantity_wh``."""
        rows = table.assign(t=result.time_index.get_indexer(pd.DatetimeIndex(table["interval"])))
        rows = rows[(rows.t >= start) & (rows.t < stop)]
        rows = rows.assign(quantity_wh=_wh(rows.quantity_kwh.to_numpy()))
        return rows[rows.quantity_wh > 0]

    bids = cut(orders).sort_values(["session", "t", "side", "participant"])
    deals = cut(trades)
    deals_of = dict(iter(deals.groupby(["session", "t"], observed=True)))
    books = []
    for key, book in bids.groupby(["session", "t"], observed=True, sort=False):
        session, t = key
        matched = deals_of.get(key)
        books.append(_Book(
            market if session == "day-ahead" else f"{market}/{session}", int(t),
            [(str(side), str(p), int(q), eur_per_kwh_to_meur(float(price)))
             for side, p, q, price in zip(book.side, book.participant, book.quantity_wh,
                                          book.price_eur_per_kwh)],
            [] if matched is None else [
                (str(b), str(s), int(q), eur_per_kwh_to_meur(float(price)))
                for b, s, q, price in zip(matched.buyer, matched.seller, matched.quantity_wh,
                                          matched.price_eur_per_kwh)]))
    # Every interval of the session is cleared, with or without orders.
    ordered = {b.interval for b in books if b.market_id == market}
    books += [_Book(market, t, [], []) for t in range(start, stop) if t not in ordered]
    return sorted(books, key=lambda b: (b.market_id != market, b.interval))


def _books_from_positions(result: SimulationResult, market: str, start: int, stop: int
                          ) -> list[_Book]:
    """For designs that clear no orders (the community manager schedules, P2P negotiates): per
    interval, each participant's position as its order, a buy of what it bought or a sell of what
    it sold at the interval's local price, buyers and sellers paired in participant order."""
    ids = [str(p) for p in result.participant_ids]
    bought = _wh(result.local_bought_kwh[start:stop])
    sold = _wh(result.local_sold_kwh[start:stop])
    market_eur = result.participant_series["market_eur"][start:stop]
    books = []
    for k, t in enumerate(range(start, stop)):
        buyers = [(ids[i], int(bought[k, i])) for i in range(len(ids)) if bought[k, i] > 0]
        sellers = [(ids[i], int(sold[k, i])) for i in range(len(ids)) if sold[k, i] > 0]
        price = _interval_price_meur(
            result, t, float(np.clip(market_eur[k], 0, None).sum()),
            float(result.local_bought_kwh[t].sum()))
        pieces = _pair(buyers, sellers) if buyers and sellers else []
        filled: dict[tuple[str, str], int] = defaultdict(int)
        for b, s, q in pieces:
            filled[("buy", b)] += q
            filled[("sell", s)] += q
        books.append(_Book(market, t, [(side, p, q, price) for (side, p), q in
                                       sorted(filled.items())],
                           [(b, s, q, price) for b, s, q in pieces]))
    return books


def session_records(result: SimulationResult, keys: Keystore, log_id: str, start: int,
                    stop: int, register: bool) -> list[SignedRecord]:
    """The signed records of one session (see the module docstring), in log order."""
    ids = [str(p) for p in result.participant_ids]
    series = result.participant_series
    market = market_id_of(result, start)
    operator = keys.operator
    operator_payloads: list[dict] = []
    participant_records: list[SignedRecord] = []
    if register:
        operator_payloads += [registration_payload(keys.participants[p], p, meter_of(p), log_id)
                              for p in ids]
    orders, trades = result.tables.get("orders"), result.tables.get("trades")
    books = (_books_from_orders(result, orders, trades, market, start, stop)
             if orders is not None and trades is not None
             else _books_from_positions(result, market, start, stop))
    # What each seller declares it can sell in an interval: all it offers there.
    sellable: dict[tuple[str, int], int] = defaultdict(int)
    for book in books:
        for side, participant, quantity, _ in book.orders:
            if side == "sell":
                sellable[(participant, book.interval)] += quantity
    operator_payloads += [{"kind": "capability", "participant": participant, "interval": t,
                           "sellable_wh": wh, "source": "declared"}
                          for (participant, t), wh in sorted(sellable.items(),
                                                             key=lambda x: (x[0][1], x[0][0]))]
    trades_tail: list[dict] = []
    for book in books:
        t, market_id = book.interval, book.market_id
        for side, participant, quantity, limit in book.orders:
            participant_records.append(sign_record(keys.participants[participant], order_payload(
                log_id=log_id, market_id=market_id, interval=t,
                order_id=f"{t}/{side}/{participant}", participant=participant,
                meter=meter_of(participant), side=side, quantity_wh=quantity,
                price_meur_per_kwh=limit, nonce=f"{market_id}/{t}/order/{side}")))
        interval_trades = [{"kind": "trade", "market_id": market_id, "interval": t,
                            "trade_id": f"{t}/{n}", "buyer": b, "seller": s, "quantity_wh": q,
                            "price_meur_per_kwh": price, "buy_order_id": f"{t}/buy/{b}",
                            "sell_order_id": f"{t}/sell/{s}"}
                           for n, (b, s, q, price) in enumerate(book.trades)]
        trades_tail += interval_trades
        volume = sum(q for _, _, q, _ in book.trades)
        clearing: dict[str, Any] = {"kind": "clearing", "market_id": market_id, "interval": t,
                                    "n_trades": len(interval_trades), "volume_wh": volume}
        if interval_trades:  # the volume-weighted price of the trades
            clearing["price_meur_per_kwh"] = round(
                sum(q * price for _, _, q, price in book.trades) / volume)
        trades_tail.append(clearing)
        if interval_trades:
            trades_tail.append({"kind": "settlement", "settlement_id": f"{market_id}/{t}",
                                "market_id": market_id,
                                "trade_ids": [x["trade_id"] for x in interval_trades],
                                "postings": settlement_postings(interval_trades)})
    trades_tail += activation_payloads(result, start, stop)

    readings: list[SignedRecord] = []
    deliveries: list[dict] = []
    metered_kwh = np.asarray(result.metered_kw[start:stop]) * result.dt_h
    import_wh = np.round(np.clip(-metered_kwh, 0, None) * 1000).astype(np.int64)
    export_wh = np.round(np.clip(metered_kwh, 0, None) * 1000).astype(np.int64)
    cost = series["cost_eur"][start:stop]
    for k, t in enumerate(range(start, stop)):
        for i, p in enumerate(ids):
            readings.append(sign_record(keys.participants[p], {
                "kind": "meter-reading", "log_id": log_id, "market_id": market, "interval": t,
                "participant": p, "meter": meter_of(p), "import_wh": int(import_wh[k, i]),
                "export_wh": int(export_wh[k, i]), "nonce": f"{market}/{t}/reading"}))
        paid = [-eur_to_ueur(cost[k, i]) for i in range(len(ids))]
        postings: list[dict] = [{"account": p, "amount_ueur": a} for p, a in zip(ids, paid)]
        postings.append({"account": COUNTERPARTY_ACCOUNT, "amount_ueur": -sum(paid)})
        deliveries.append({"kind": "delivery-settlement", "market_id": market, "interval": t,
                           "postings": postings})
    statements = [statement_payload(result, market, start, stop, i, p) for i, p in enumerate(ids)]
    head = [sign_record(operator, p) for p in operator_payloads]
    tail = [sign_record(operator, p) for p in trades_tail]
    closing = [sign_record(operator, p) for p in deliveries + statements]
    return head + participant_records + tail + readings + closing


def statement_payload(result: SimulationResult, market: str, start: int, stop: int, i: int,
                      participant: str) -> dict:
    """A participant's ``statement`` of one session (sums over its intervals) in Wh and µ€."""
    s = result.participant_series
    window = slice(start, stop)

    def wh(name: str) -> int:
        return kwh_to_wh(float(np.asarray(s[name])[window, i].sum()), name)

    metered_kwh = np.asarray(result.metered_kw)[window, i] * result.dt_h
    parts = {field: eur_to_ueur(sum(float(np.asarray(s[c])[window, i].sum())
                                    for c in components if c in s))
             for field, components in STATEMENT_COMPONENTS.items()}
    return {"kind": "statement", "market_id": market, "interval": stop - 1,
            "participant": participant, "bought_wh": wh("local_bought_kwh"),
            "sold_wh": wh("local_sold_kwh"),
            "metered_import_wh": int(np.round(np.clip(-metered_kwh, 0, None) * 1000).sum()),
            "metered_export_wh": int(np.round(np.clip(metered_kwh, 0, None) * 1000).sum()),
            "imbalance_short_wh": wh("imbalance_short_kwh"),
            "imbalance_long_wh": wh("imbalance_long_kwh"), **parts,
            "total_ueur": sum(parts.values())}


def activation_payloads(result: SimulationResult, start: int, stop: int) -> list[dict]:
    """The DSO's up and down activations of intervals [start, stop) as ``flex-activation``
    payloads addressed to the device (``resource``) that delivers them; reservations (which
    activate nothing) are not signals."""
    table = result.tables.get("flex_activations")
    if table is None or table.empty:
        return []
    position = {ts: k for k, ts in enumerate(result.time_index)}
    out = []
    for n, row in enumerate(table.itertuples(index=False)):
        t = position.get(row.interval)
        if t is None or not start <= t < stop or row.direction not in ("up", "down"):
            continue
        power_w = int(round(float(row.kw) * 1000))
        if power_w <= 0:
            continue
        provider, device = str(row.provider), str(row.resource)
        out.append({"kind": "flex-activation", "activation_id": f"{t}/{n}",
                    "offer_id": f"{t}/{provider}/{device}", "provider": provider,
                    "interval": t, "direction": row.direction, "power_w": power_w,
                    "price_meur_per_kwh": eur_per_kwh_to_meur(row.price_eur_per_kwh),
                    "buyer": str(row.buyer), "utilisation_ueur": eur_to_ueur(row.utilisation_eur),
                    "device": f"{provider}/{device}"[:200]})
    return out


def simulation_keystore(result: SimulationResult, seed: int) -> Keystore:
    """The operator's and every participant's deterministic demonstration key."""
    return Keystore(operator=simulation_key(result.scenario, seed, "operator"),
                    participants={str(p): simulation_key(result.scenario, seed, f"participant:{p}")
                                  for p in result.participant_ids})


def record_simulation(result: SimulationResult, path: str | Path, *, seed: int = 0,
                      rpc_url: str | None = None, anchor: bool = True) -> SimulationLedger:
    """Write a simulated run to a new ledger, one checkpointed batch per session, and anchor
    every checkpoint on an EVM chain.

    Parameters
    ----------
    result : SimulationResult
        What :func:`lemgrid.sim.runner.simulate` returned.
    path : str or Path
        The ledger file to create (must not exist, nor its witness file and keystore).
    seed : int
        Seed the demonstration keys are derived from (the scenario's seed).
    rpc_url : str, optional
        JSON-RPC node to anchor on; default an in-process EVM (gone when the process ends).
    anchor : bool
        Anchor the checkpoints (needs the ``[chain]`` extra).

    Returns
    -------
    SimulationLedger
    """
    path = Path(path)
    keystore_path = default_keystore_path(path)
    for existing, what in ((path, "ledger"), (default_witness_path(path), "witness file"),
                           (keystore_path, "keystore")):
        if existing.exists() or existing.is_symlink():
            raise InputError(f"--ledger: {what} {existing} already exists; choose a new path")
    keys = simulation_keystore(result, seed)
    counts: dict[str, int] = defaultdict(int)
    sessions = _session_bounds(result)
    ledger = Ledger.create(path, keys.operator)
    written: list[Path] = [default_witness_path(path), keystore_path]
    try:
        keys.save(keystore_path)
        for k, (start, stop) in enumerate(sessions):
            records = session_records(result, keys, ledger.log_id, start, stop, register=k == 0)
            for record in records:
                counts[record.payload["kind"]] += 1
            ledger.append(records, checkpoint=True, label=market_id_of(result, start))
        chain_name, address, anchored = "none", "", 0
        anchors: tuple[Anchor, ...] = ()
        if anchor:
            from lemgrid.ledger import chain

            w3 = chain.connect(rpc_url)
            contract = chain.deploy(w3, "anchor")
            anchored = len(chain.anchor_ledger(ledger, contract))
            address = contract.address
            anchors = tuple(chain.read_anchors(contract, ledger.log_id))
            chain_name = rpc_url or "in-process EVM"
            if rpc_url is not None:
                written.append(chain.anchor_record_path(path))
                chain.save_anchor_record(path, int(w3.eth.chain_id), address)
        return SimulationLedger(path, ledger.size, len(sessions), len(ledger.state.checkpoints),
                                anchored, chain_name, address, dict(counts), anchors)
    except BaseException:
        # A run that failed part-way leaves nothing behind: no half-written ledger to be taken
        # for a whole one, and the path is free to try again.
        ledger.close()
        LedgerDB.remove(path)
        for file in written:
            file.unlink(missing_ok=True)
        raise
    finally:
        ledger.close()


def statement_seq(path: str | Path, market_id: str, participant: str) -> int:
    """Position of a participant's statement of a session in a ledger."""
    with Ledger.open(path) as ledger:
        for entry in ledger.entries("statement"):
            p = entry["payload"]
            if p["market_id"] == market_id and p["participant"] == participant:
                return int(entry["seq"])
    raise InputError(f"participant: {participant!r} has no statement in {market_id!r}")


def statement_proof(path: str | Path, market_id: str, participant: str) -> dict[str, Any]:
    """Inclusion proof of a participant's statement against the latest checkpoint
    (check it with :func:`lemgrid.ledger.proofs.check_proof` or ``lemgrid ledger check-proof``)."""
    seq = statement_seq(path, market_id, participant)
    with Ledger.open(path) as ledger:
        return ledger.inclusion_proof(seq)
