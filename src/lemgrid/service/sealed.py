"""Sealed-bid sessions over the API, on the ledger's commit-reveal rules
(:mod:`lemgrid.ledger.sealed`).

A sealed-bid session has a commit window (from its creation to ``gate_ms``) in which participants
post signed ``commit`` records (a hash of the order and a secret salt, in the ledger's canonical
form), and a reveal window (``gate_ms`` to ``reveal_ms``) in which they post signed ``reveal``
records. The scheduler appends the ``gate-closure`` record when the commit window ends; when the
reveal window ends it rejects every unrevealed commitment, appends the ``reveal-closure`` and
clears the revealed orders only, with the session's mechanism, as a plain session is cleared
(:meth:`lemgrid.service.operator.Market.clear_in`). Whether a reveal opens a commitment is
decided by the ledger's rules alone; a reveal they reject is refused with nothing stored.
"""

from __future__ import annotations

import sqlalchemy as sa

from lemgrid.ledger.records import SignedRecord
from lemgrid.ledger.sealed import commitment_digest
from lemgrid.service import tables as t
from lemgrid.service.operator import Market, Refused

#: Mechanisms a sealed-bid session may clear with (a continuous book has no sealed form).
SEALED_MECHANISMS = ("uniform", "pay-as-bid")


def create(market: Market, market_id: str, interval: int, gate_ms: int, reveal_ms: int,
           mechanism: str | None) -> dict:
    """Open a sealed-bid session: commits until ``gate_ms``, reveals until ``reveal_ms``."""
    if market.spec is not None and market.spec.mechanism in SEALED_MECHANISMS:
        mechanism = mechanism or market.spec.mechanism
    mechanism = market.check_mechanism(mechanism or "uniform", SEALED_MECHANISMS)
    if reveal_ms <= gate_ms:
        raise Refused(422, "reveal_ms: the reveal window must end after gate_ms")
    with market.write() as (conn, _tx):
        market.insert_session(conn, market_id, interval, gate_ms, mechanism, "commit")
        conn.execute(t.sealed_sessions.insert().values(market_id=market_id,
                                                       reveal_ms=reveal_ms))
    return {**market.session(market_id), "reveal_ms": reveal_ms}


def _sealed_session(conn: sa.engine.Connection, market_id: str, interval: int):
    row = conn.execute(sa.select(t.sessions, t.sealed_sessions.c.reveal_ms).join(
        t.sealed_sessions, t.sealed_sessions.c.market_id == t.sessions.c.market_id).where(
        t.sessions.c.market_id == market_id)).first()
    if row is None:
        raise Refused(404, f"market_id: no sealed-bid session {market_id!r}")
    if interval != row.interval:
        raise Refused(422, f"payload.interval: session {market_id!r} trades interval "
                           f"{row.interval}")
    return row


def commit(market: Market, identity: dict, market_id: str, record: SignedRecord) -> dict:
    """Accept a signed commitment in the commit window: ledger entry and row, one transaction."""
    p = record.payload
    market.check_own(identity, market_id, record)
    with market.write() as (conn, tx):
        s = _sealed_session(conn, market_id, p["interval"])
        if s.state != "commit" or market.clock_ms() >= s.gate_ms:
            raise Refused(409, f"market_id: the commit window of {market_id!r} is closed")
        result = tx.append([record])
        conn.execute(t.commitments.insert().values(
            market_id=market_id, commitment=p["commitment"], participant=p["participant"],
            state="open", seq=result.first_seq))
    market.publish({"event": "commit", "market_id": market_id, "commitment": p["commitment"]})
    return {"market_id": market_id, "commitment": p["commitment"], "state": "open",
            "seq": result.first_seq}


def reveal(market: Market, identity: dict, market_id: str, record: SignedRecord) -> dict:
    """Accept a signed reveal in the reveal window if it opens one of the participant's
    commitments (the ledger's rules decide); its order joins the session's book."""
    p = record.payload
    market.check_own(identity, market_id, record)
    with market.write() as (conn, tx):
        s = _sealed_session(conn, market_id, p["interval"])
        now = market.clock_ms()
        if s.state != "reveal" or not s.gate_ms <= now < s.reveal_ms:
            raise Refused(409, f"market_id: the reveal window of {market_id!r} is not open")
        result = tx.append([record])
        if result.rejected:  # a soft rejection would be recorded: refuse it whole instead
            raise Refused(409, f"payload: the reveal opens no open commitment of yours "
                               f"({'; '.join(result.rejected)}); nothing stored")
        order = p["order"]
        conn.execute(t.orders.insert().values(
            market_id=market_id, order_id=order["order_id"], participant=order["participant"],
            side=order["side"], quantity_wh=order["quantity_wh"],
            price_meur_per_kwh=order["price_meur_per_kwh"], arrival=result.first_seq,
            status="open", filled_wh=0))
        digest = commitment_digest(order, p["salt"])
        conn.execute(t.commitments.update().where(
            (t.commitments.c.market_id == market_id) & (t.commitments.c.commitment == digest))
            .values(state="revealed"))
    market.publish({"event": "reveal", "market_id": market_id, "order_id": order["order_id"]})
    return {"market_id": market_id, "order_id": order["order_id"], "status": "open",
            "seq": result.first_seq}


def tick(market: Market) -> list[str]:
    """Close the commit windows and the reveal windows that have ended; the sessions cleared."""
    now = market.clock_ms()
    with market.engine.connect() as conn:
        rows = list(conn.execute(sa.select(t.sessions, t.sealed_sessions.c.reveal_ms).join(
            t.sealed_sessions, t.sealed_sessions.c.market_id == t.sessions.c.market_id).where(
            t.sessions.c.state.in_(("commit", "reveal"))).order_by(t.sessions.c.gate_ms)))
    cleared = []
    for s in rows:
        if s.state == "commit" and s.gate_ms <= now:
            _close_commits(market, s.market_id)
        if s.reveal_ms <= now and _close_reveals_and_clear(market, s.market_id):
            cleared.append(s.market_id)
    return cleared


def _close_commits(market: Market, market_id: str) -> None:
    with market.write() as (conn, tx):
        s = conn.execute(sa.select(t.sessions).where(
            t.sessions.c.market_id == market_id)).one()
        if s.state != "commit":  # closed meanwhile by another tick
            return
        tx.append_operator([{"kind": "gate-closure", "market_id": market_id,
                             "interval": s.interval}])
        conn.execute(t.sessions.update().where(t.sessions.c.market_id == market_id)
                     .values(state="reveal"))
    market.publish({"event": "gate-closure", "market_id": market_id, "phase": "reveal"})


def _close_reveals_and_clear(market: Market, market_id: str) -> bool:
    with market.write() as (conn, tx):
        s = conn.execute(sa.select(t.sessions).where(
            t.sessions.c.market_id == market_id)).one()
        if s.state != "reveal":  # cleared meanwhile by another tick
            return False
        head = market.ledger.reveal_closure_payloads(market_id, s.interval)
        conn.execute(t.commitments.update().where(
            (t.commitments.c.market_id == market_id) & (t.commitments.c.state == "open"))
            .values(state="rejected"))
        result, trades = market.clear_in(conn, tx, s, head)
    market.published_clearing(market_id, result, trades)
    return True
