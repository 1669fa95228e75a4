"""Metering and settlement of delivered sessions: signed meter readings, imbalance and a
statement per participant, each in one database transaction with its ledger records.

After a session has cleared, the operator opens its metering with a readings deadline. Until then
each participant's key (bound to its meter) posts one signed ``meter-reading`` record for the
session's interval. When the deadline has passed, the scheduler settles the delivery with the
lab's settlement (:func:`lemgrid.service.engine.settle_delivery`): in one transaction the
``delivery-settlement`` record (its postings must balance: the session's budget) and one
``statement`` record per participant, then a signed checkpoint.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from lemgrid.ledger.records import SignedRecord
from lemgrid.service import engine as lab
from lemgrid.service import tables as t
from lemgrid.service.operator import Market, Refused


def _session(conn: sa.engine.Connection, market_id: str):
    row = conn.execute(sa.select(t.sessions).where(t.sessions.c.market_id == market_id)).first()
    if row is None:
        raise Refused(404, f"market_id: no session {market_id!r}")
    return row


def open_metering(market: Market, market_id: str, readings_deadline_ms: int) -> dict:
    """Accept meter readings for a cleared session until ``readings_deadline_ms``."""
    with market.write() as (conn, _tx):
        s = _session(conn, market_id)
        if readings_deadline_ms <= s.gate_ms:
            raise Refused(422, "readings_deadline_ms: must be after the session's gate closure "
                               f"({s.gate_ms})")
        if conn.execute(sa.select(t.deliveries.c.market_id).where(
                t.deliveries.c.market_id == market_id)).first() is not None:
            raise Refused(409, f"market_id: metering of {market_id!r} is already open")
        conn.execute(t.deliveries.insert().values(market_id=market_id, state="metering",
                                                  readings_deadline_ms=readings_deadline_ms))
    return {"market_id": market_id, "readings_deadline_ms": readings_deadline_ms,
            "state": "metering"}


def submit_reading(market: Market, identity: dict, market_id: str,
                   record: SignedRecord) -> dict:
    """Accept a signed meter reading: ledger record and reading row in one transaction."""
    p = record.payload
    market.check_own(identity, market_id, record)
    with market.write() as (conn, tx):
        s = _session(conn, market_id)
        if p["interval"] != s.interval:
            raise Refused(422, f"payload.interval: session {market_id!r} delivers interval "
                               f"{s.interval}")
        d = conn.execute(sa.select(t.deliveries).where(
            t.deliveries.c.market_id == market_id)).first()
        if s.state != "settled" or d is None:
            raise Refused(409, f"market_id: metering of session {market_id!r} is not open")
        if d.state != "metering" or market.clock_ms() >= d.readings_deadline_ms:
            raise Refused(409, f"market_id: the readings deadline of {market_id!r} has passed")
        if conn.execute(sa.select(t.meter_readings.c.meter).where(
                (t.meter_readings.c.market_id == market_id)
                & (t.meter_readings.c.meter == p["meter"]))).first() is not None:
            raise Refused(409, f"payload.meter: {p['meter']!r} already has a reading for "
                               f"{market_id!r}")
        result = tx.append([record])
        conn.execute(t.meter_readings.insert().values(
            market_id=market_id, meter=p["meter"], participant=p["participant"],
            import_wh=p["import_wh"], export_wh=p["export_wh"], seq=result.first_seq))
    market.publish({"event": "meter-reading", "market_id": market_id,
                    "participant": p["participant"]})
    return {"market_id": market_id, "meter": p["meter"], "seq": result.first_seq}


def settle_due(market: Market) -> list[str]:
    """Settle every delivery whose readings deadline has passed."""
    with market.engine.connect() as conn:
        due = [r.market_id for r in conn.execute(sa.select(t.deliveries).where(
            (t.deliveries.c.state == "metering")
            & (t.deliveries.c.readings_deadline_ms <= market.clock_ms()))
            .order_by(t.deliveries.c.readings_deadline_ms))]
    for market_id in due:
        settle(market, market_id)
    return due


def settle(market: Market, market_id: str) -> dict:
    """Settle a delivered session by the lab's settlement: the delivery-settlement record,
    statements, their rows and a signed checkpoint, in one transaction."""
    spec = market.spec
    prices = spec.prices if spec is not None and spec.prices is not None else lab.default_prices()
    dt_h = spec.dt_h if spec is not None else 0.25
    with market.write() as (conn, tx):
        s = _session(conn, market_id)
        d = conn.execute(sa.select(t.deliveries).where(
            t.deliveries.c.market_id == market_id)).first()
        if d is None or d.state != "metering":
            raise Refused(409, f"market_id: delivery of {market_id!r} is not being metered")
        trades = [dict(r._mapping) for r in conn.execute(sa.select(t.trades).where(
            t.trades.c.market_id == market_id))]
        market_ueur = {r.participant: r.amount_ueur for r in conn.execute(
            sa.select(t.statements).where(t.statements.c.market_id == market_id))}
        readings = {r.participant: (r.import_wh, r.export_wh) for r in conn.execute(
            sa.select(t.meter_readings).where(t.meter_readings.c.market_id == market_id))}
        statements, postings, gap_eur = lab.settle_delivery(trades, market_ueur, readings,
                                                            prices, dt_h)
        if abs(gap_eur) > 1e-6 * max(len(statements), 1):
            raise Refused(500, f"market_id: the delivery of {market_id!r} does not balance "
                               f"({gap_eur} EUR)")
        records = []
        if postings:
            records.append({"kind": "delivery-settlement", "market_id": market_id,
                            "interval": s.interval, "postings": postings})
        payloads = [{"kind": "statement", "market_id": market_id, "interval": s.interval,
                     **st} for st in statements]
        if not postings:  # nothing to pay: the record still closes the metering
            records.append({"kind": "delivery-settlement", "market_id": market_id,
                            "interval": s.interval,
                            "postings": [{"account": lab.ROUNDING_ACCOUNT, "amount_ueur": 0}]})
        result = tx.append_operator([*records, *payloads], checkpoint=True,
                                    label=f"delivery {market_id}")
        first = result.first_seq + len(records)
        if payloads:
            conn.execute(t.delivery_statements.insert(), [
                {"market_id": market_id, "participant": st["participant"],
                 "total_ueur": st["total_ueur"], "body": json.dumps(st), "seq": first + i}
                for i, st in enumerate(payloads)])
        conn.execute(t.deliveries.update().where(t.deliveries.c.market_id == market_id)
                     .values(state="settled", budget_gap_ueur=round(gap_eur * 1e6)))
    market.publish({"event": "delivery-settled", "market_id": market_id})
    market.publish({"event": "checkpoint", "seq": result.checkpoint["seq"],
                    "tree_size": result.checkpoint["payload"]["tree_size"],
                    "root_hash": result.checkpoint["payload"]["root_hash"]})
    return {"market_id": market_id, "n_statements": len(payloads),
            "checkpoint_seq": result.checkpoint["seq"]}


def statement(market: Market, identity: dict, market_id: str, participant: str) -> dict:
    """A participant's delivery statement (owner, its aggregator, operator)."""
    if identity["role"] != "operator" and participant not in market.members_of(identity):
        raise Refused(403, f"participant: the statement of {participant!r} is not yours")
    with market.engine.connect() as conn:
        d = conn.execute(sa.select(t.deliveries.c.state).where(
            t.deliveries.c.market_id == market_id)).first()
        row = conn.execute(sa.select(t.delivery_statements).where(
            (t.delivery_statements.c.market_id == market_id)
            & (t.delivery_statements.c.participant == participant))).first()
    if d is None or d.state != "settled":
        raise Refused(404, f"market_id: the delivery of {market_id!r} is not settled")
    if row is None:
        raise Refused(404, f"participant: {participant!r} has no statement in {market_id!r}")
    return {**json.loads(row.body), "seq": row.seq}


def budget(market: Market, market_id: str) -> dict:
    """A delivered session's budget: statements against what retailer, DSO and state receive."""
    with market.engine.connect() as conn:
        d = conn.execute(sa.select(t.deliveries).where(
            t.deliveries.c.market_id == market_id)).first()
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(
            t.delivery_statements.c.total_ueur), 0)).where(
            t.delivery_statements.c.market_id == market_id)).scalar()
    if d is None or d.state != "settled":
        raise Refused(404, f"market_id: the delivery of {market_id!r} is not settled")
    return {"market_id": market_id, "participants_pay_ueur": int(total or 0),
            "budget_gap_ueur": d.budget_gap_ueur, "balanced": d.budget_gap_ueur == 0}
