"""Continuous intraday trading in the server: orders of a ``continuous`` session are matched on
arrival by the lab's order book (:class:`lemgrid.market.continuous.OrderBook`, the book
:func:`~lemgrid.market.continuous.clear_continuous_double_auction` runs for ``lemgrid
simulate``), and each trade is stored and appended to the ledger in the database transaction
that accepts the order causing it.

* The books live in memory, one per open continuous session, and are a function of the stored
  orders: the resting ones (``status = 'open'``: neither filled, cancelled nor expired) with their
  unfilled remainder, entered in arrival order (the ledger position), which gives them back their
  time priority. A book is (re)built from the database the first time a session needs it, and
  every book is dropped whenever a transaction that may have changed one fails, so that a rolled
  back order or trade never stays in memory (after a crash, the books are rebuilt from what was
  committed).
* The book works in the lab's units (kWh, EUR/kWh) on the ledger's integers (Wh / 1000,
  m€/kWh / 1000), exactly as :func:`lemgrid.service.engine.clear_orders` hands a session to the
  lab at gate closure, so that the same arrivals make the same fills. A fill is recorded in Wh
  (every quantity is a whole number of Wh, so rounding removes only float dust) at the resting
  order's price in m€/kWh.
* Gate closure expires what rests; the session's settlement is the cash flow of its trades
  (:func:`cash_flows`), as at gate closure for the auctions.

Everything here runs under the market's write lock (:meth:`Market.commit_orders`,
:meth:`Market.write`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from lemgrid.ledger.units import eur_per_kwh_to_meur
from lemgrid.market.continuous import OrderBook
from lemgrid.service import tables as t

if TYPE_CHECKING:
    from lemgrid.service.operator import Market

#: The session mechanism matched on arrival.
CONTINUOUS = "continuous"

#: What a trade row and a trade event carry (besides ``market_id``).
TRADE_FIELDS = ("trade_id", "buyer", "seller", "buy_order_id", "sell_order_id", "quantity_wh",
                "price_meur_per_kwh")


@dataclass
class _Resting:
    participant: str
    side: str
    quantity_wh: int
    filled_wh: int = 0


@dataclass
class _Session:
    """One open continuous session: its book and what the book's orders are."""

    interval: int
    book: OrderBook = field(default_factory=OrderBook)
    orders: dict[str, _Resting] = field(default_factory=dict)  # the resting orders
    n_trades: int = 0


class ContinuousBooks:
    """The order books of a market's open continuous sessions.

    Parameters
    ----------
    market : Market
        Whose database the books are rebuilt from.
    """

    def __init__(self, market: Market) -> None:
        self.market = market
        self._sessions: dict[str, _Session] = {}
        #: Trade rows and order updates of the transaction in progress (see :meth:`flush`).
        self._trade_rows: list[dict] = []
        self._fills: dict[tuple[str, str], tuple[int, str]] = {}
        self._conn: sa.engine.Connection | None = None

    def begin(self, conn: sa.engine.Connection) -> None:
        """A transaction that may accept orders starts on ``conn`` (books are read through
        it: SQLite's write lock is taken at ``BEGIN``, so a second connection would wait)."""
        self._conn = conn
        self._trade_rows.clear()
        self._fills.clear()

    def reset(self) -> None:
        """Forget every book and what the failed transaction had pending (rebuilt on next
        use from the committed orders)."""
        self._sessions.clear()
        self._trade_rows.clear()
        self._fills.clear()
        self._conn = None

    def _session(self, market_id: str, interval: int) -> _Session:
        """The session's book, built from the committed orders if not in memory.

        Inside a group transaction nothing of this session is pending before its first order in
        the group, which is what asks for the book: the stored rows are the book.
        """
        found = self._sessions.get(market_id)
        if found is not None:
            return found
        conn = self._conn
        if conn is None:
            raise RuntimeError("ContinuousBooks.begin(conn) was not called for this transaction")
        s = _Session(interval)
        rows = conn.execute(sa.select(t.orders).where(
            (t.orders.c.market_id == market_id) & (t.orders.c.status == "open"))
            .order_by(t.orders.c.arrival)).all()
        s.n_trades = conn.execute(sa.select(sa.func.count()).select_from(t.trades).where(
            t.trades.c.market_id == market_id)).scalar_one()
        for r in rows:
            fills = s.book.submit(r.order_id, r.side, (r.quantity_wh - r.filled_wh) / 1000,
                                  r.price_meur_per_kwh / 1000, _valid_until_s(r.valid_until_ms))
            if fills:  # resting orders never cross; if they do, the rows are not a book
                raise RuntimeError(f"session {market_id!r}: stored resting orders cross "
                                   f"({fills[0]})")
            s.orders[r.order_id] = _Resting(r.participant, r.side, r.quantity_wh, r.filled_wh)
        self._sessions[market_id] = s
        return s

    # -- inside the transaction of an order --------------------------------------------------
    def match(self, ledger: Any, session: Any, row: dict, answer: dict) -> dict:
        """Match an accepted order on arrival: its trades appended to the ledger (``ledger``:
        the group or transaction the order went into), its row (``row``, not inserted yet) and
        the rows of the orders it filled updated; the order's answer with its trades.

        Parameters
        ----------
        ledger : ledger group or transaction
        session : row of ``sessions``
            The order's session (``market_id``, ``interval``).
        row : dict
            The order's row of ``orders`` (``status`` and ``filled_wh`` are set here).
        answer : dict
            The order's answer; returned with ``status``, ``filled_wh`` and ``trades``.

        Raises
        ------
        RuntimeError
            If the ledger refuses a trade the book made (a bug: the transaction must fail).
        """
        from lemgrid.ledger.journal import Rejection

        market_id = session.market_id
        s = self._session(market_id, session.interval)
        order_id, quantity_wh = row["order_id"], row["quantity_wh"]
        fills = s.book.submit(order_id, row["side"], quantity_wh / 1000,
                              row["price_meur_per_kwh"] / 1000,
                              _valid_until_s(row.get("valid_until_ms")))
        incoming = _Resting(row["participant"], row["side"], quantity_wh)
        trades: list[dict] = []
        for f in fills:
            buy_id, sell_id = f.buy_order_id, f.sell_order_id
            resting_id = str(sell_id if row["side"] == "buy" else buy_id)
            resting = s.orders[resting_id]
            wh = round(f.quantity_kwh * 1000)
            buyer = row["participant"] if row["side"] == "buy" else resting.participant
            seller = resting.participant if row["side"] == "buy" else row["participant"]
            trades.append({"kind": "trade", "market_id": market_id, "interval": s.interval,
                           "trade_id": f"{market_id}-t{s.n_trades + len(trades)}",
                           "buyer": buyer, "seller": seller, "quantity_wh": wh,
                           "price_meur_per_kwh": eur_per_kwh_to_meur(f.price_eur_per_kwh),
                           "buy_order_id": buy_id, "sell_order_id": sell_id})
            resting.filled_wh += wh
            incoming.filled_wh += wh
            done = resting_id not in s.book
            self._fills[(market_id, resting_id)] = (
                resting.filled_wh, "filled" if done else "open")
            if done:
                del s.orders[resting_id]
        if trades:
            try:
                result = ledger.append_operator(trades)
            except Rejection as exc:
                raise RuntimeError(f"the ledger refused a trade of the order book: {exc}") \
                    from exc
            s.n_trades += len(trades)
            for k, x in enumerate(trades):
                self._trade_rows.append({**{c: x[c] for c in TRADE_FIELDS},
                                         "market_id": market_id, "seq": result.first_seq + k})
        if order_id in s.book:
            s.orders[order_id] = incoming
        row["filled_wh"] = incoming.filled_wh
        row["status"] = "open" if order_id in s.book else "filled"
        return {**answer, "status": row["status"], "filled_wh": incoming.filled_wh,
                "trades": [{c: x[c] for c in TRADE_FIELDS} for x in trades]}

    def expire(self, ledger: Any, session: Any, now_ms: int) -> None:
        """Orders of the session whose validity ended before ``now_ms`` leave its book: an
        ``order-expiry`` record each (their unfilled remainder) and their rows' status."""
        s = self._session(session.market_id, session.interval)
        gone = s.book.expire(now_ms / 1000)
        if not gone:
            return
        records = []
        for order_id, _ in gone:
            resting = s.orders.pop(str(order_id))
            records.append({"kind": "order-expiry", "market_id": session.market_id,
                            "interval": s.interval, "order_id": str(order_id),
                            "remaining_wh": resting.quantity_wh - resting.filled_wh})
            self._fills[(session.market_id, str(order_id))] = (resting.filled_wh, "expired")
        ledger.append_operator(records)

    def flush(self, conn: sa.engine.Connection) -> None:
        """Store the pending trade rows and fills (after the transaction's order rows)."""
        if self._trade_rows:
            conn.execute(t.trades.insert(), self._trade_rows)
        if self._fills:
            conn.execute(t.orders.update().where(
                (t.orders.c.market_id == sa.bindparam("m"))
                & (t.orders.c.order_id == sa.bindparam("o")))
                .values(filled_wh=sa.bindparam("f"), status=sa.bindparam("s")),
                [{"m": m, "o": o, "f": f, "s": st} for (m, o), (f, st) in self._fills.items()])
        self._trade_rows.clear()
        self._fills.clear()
        self._conn = None

    def cancel(self, market_id: str, order_id: str) -> None:
        """Take a cancelled order out of its session's book (if the book is in memory)."""
        s = self._sessions.get(market_id)
        if s is not None and order_id in s.book:
            s.book.cancel(order_id)
            s.orders.pop(order_id, None)

    def close(self, market_id: str) -> None:
        """Gate closure: the session's book is gone (its resting orders expire)."""
        self._sessions.pop(market_id, None)

    # -- after the commit ----------------------------------------------------------------------
    def publish(self, market_id: str, answer: Mapping) -> None:
        """Announce an order's trades on the live feed (after its transaction committed)."""
        for x in answer.get("trades", ()):
            self.market.publish({"event": "trade", "market_id": market_id,
                                 "trade_id": x["trade_id"], "quantity_wh": x["quantity_wh"],
                                 "price_meur_per_kwh": x["price_meur_per_kwh"],
                                 "buy_order_id": x["buy_order_id"],
                                 "sell_order_id": x["sell_order_id"]})


def _valid_until_s(valid_until_ms: int | None) -> float:
    """An order's validity in the book's seconds (none: until the gate)."""
    return math.inf if valid_until_ms is None else valid_until_ms / 1000


def session_trades(conn: sa.engine.Connection, market_id: str, interval: int) -> list[dict]:
    """The trades a continuous session made while open, as ledger ``trade`` payloads, in the
    order they were made."""
    return [{"kind": "trade", "market_id": market_id, "interval": interval,
             **{c: getattr(r, c) for c in TRADE_FIELDS}}
            for r in conn.execute(sa.select(t.trades).where(t.trades.c.market_id == market_id)
                                  .order_by(t.trades.c.seq))]


def cash_flows(trades: list[dict]) -> dict[str, float]:
    """Money each participant receives from its trades [EUR]: the seller the trade's value,
    the buyer minus it (the cash flows of the lab's :meth:`ClearingResult.from_trades`)."""
    cash: dict[str, float] = {}
    for x in trades:
        value_eur = x["quantity_wh"] / 1000 * x["price_meur_per_kwh"] / 1000
        cash[x["seller"]] = cash.get(x["seller"], 0.0) + value_eur
        cash[x["buyer"]] = cash.get(x["buyer"], 0.0) - value_eur
    return cash
