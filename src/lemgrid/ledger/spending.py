"""No double spending: sellable-energy registry, order fills, single settlement, double entry.

The rules, checked on every record the ledger accepts and again by the verifier:

* A participant sells at most its registered capability in an interval: a ``capability`` record
  (metered or forecast sellable energy, Wh, one per participant and interval) bounds the sum of
  its trades as seller in that interval across all markets. Sell orders are bounded too: within
  one market and interval, the open sell quantity plus what was already sold in other markets
  stays within the capability.
* No order is filled beyond its quantity; no trade id or order id is used twice in a market; a
  market interval accepts no order or trade after its ``clearing`` record, and that record must
  state exactly the number and volume of the trades recorded for it.
* A cancelled order (``cancel`` record, signed by the order's participant before its market
  interval is cleared) is never filled; its sell quantity no longer counts as offered.
* A trade is settled at most once; a settlement's postings (µ€) sum to zero (double entry).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from lemgrid.ledger.journal import Journal, Rejection
from lemgrid.ledger.units import trade_value_ueur


class OrderInfo(NamedTuple):
    """What the rules need to know about an accepted order."""

    participant: str
    side: str
    interval: Any
    quantity_wh: int


class SpendingBook:
    """Energy and money bookkeeping behind the no-double-spending rules.

    Parameters
    ----------
    journal : Journal
        Receives every state change so that a failed batch can be rolled back.
    """

    def __init__(self, journal: Journal) -> None:
        self._j = journal
        self.capability: dict[tuple, int] = {}       # (participant, interval) -> Wh
        self.sold: dict[tuple, int] = {}             # (participant, interval) -> Wh, all markets
        self.sold_in_market: dict[tuple, int] = {}   # (participant, market, interval) -> Wh
        self.offered: dict[tuple, int] = {}          # (participant, market, interval) -> Wh
        self.orders: dict[tuple, OrderInfo] = {}     # (market, order_id)
        self.filled: dict[tuple, int] = {}           # (market, order_id) -> Wh
        self.trades: dict[tuple, dict] = {}          # (market, trade_id) -> trade payload
        self.interval_trades: dict[tuple, tuple[int, int]] = {}  # (market, interval) -> (n, Wh)
        self.cleared: set[tuple] = set()             # (market, interval)
        self.settled: dict[tuple, str] = {}          # (market, trade_id) -> settlement id
        self.settlements: set[str] = set()
        self.cancelled: set[tuple] = set()           # (market, order_id)
        self.expired: set[tuple] = set()             # (market, order_id)

    # -- capability -------------------------------------------------------------------------
    def register_capability(self, p: Mapping) -> None:
        """Apply a ``capability`` record."""
        key = (p["participant"], p["interval"])
        if key in self.capability:
            raise Rejection(f"capability of {key[0]!r} in interval {key[1]!r} is already "
                            "registered", "duplicate")
        self._j.put(self.capability, key, p["sellable_wh"])

    def _remaining_wh(self, participant: str, interval: Any, market: str | None) -> int:
        cap = self.capability.get((participant, interval))
        if cap is None:
            raise Rejection(f"participant {participant!r} has no sellable energy registered for "
                            f"interval {interval!r}", "no-capability")
        sold = self.sold.get((participant, interval), 0)
        if market is not None:
            sold -= self.sold_in_market.get((participant, market, interval), 0)
        return cap - sold

    # -- orders -----------------------------------------------------------------------------
    def add_order(self, p: Mapping) -> None:
        """Apply an accepted order (plain or revealed)."""
        market, interval, participant = p["market_id"], p["interval"], p["participant"]
        key = (market, p["order_id"])
        if key in self.orders:
            raise Rejection(f"order id {p['order_id']!r} already used in market {market!r}",
                            "duplicate")
        if (market, interval) in self.cleared:
            raise Rejection(f"market {market!r} interval {interval!r} is already cleared",
                            "closed")
        quantity = p["quantity_wh"]
        if p["side"] == "sell":
            offer_key = (participant, market, interval)
            offered = self.offered.get(offer_key, 0) + quantity
            remaining = self._remaining_wh(participant, interval, market)
            if offered > remaining:
                raise Rejection(f"double spend: {participant!r} offers {offered} Wh in market "
                                f"{market!r} interval {interval!r} but only {remaining} Wh of its "
                                "sellable energy is left", "double-spend")
            self._j.put(self.offered, offer_key, offered)
        self._j.put(self.orders, key, OrderInfo(participant, p["side"], interval, quantity))

    def cancel(self, p: Mapping) -> None:
        """Apply a ``cancel`` record: the order is withdrawn before clearing."""
        key = (p["market_id"], p["order_id"])
        info = self.orders.get(key)
        if info is None:
            raise Rejection(f"order {p['order_id']!r} does not exist in market "
                            f"{p['market_id']!r}", "unknown-order")
        if info.participant != p["participant"]:
            raise Rejection(f"order {p['order_id']!r} belongs to {info.participant!r}",
                            "not-owner")
        if key in self.cancelled:
            raise Rejection(f"order {p['order_id']!r} is already cancelled", "duplicate")
        if key in self.expired:
            raise Rejection(f"order {p['order_id']!r} has expired", "closed")
        if (p["market_id"], info.interval) in self.cleared:
            raise Rejection(f"market {p['market_id']!r} interval {info.interval!r} is already "
                            "cleared", "closed")
        if self.filled.get(key, 0):
            raise Rejection(f"order {p['order_id']!r} is already (partly) filled", "filled")
        if info.side == "sell":
            offer_key = (info.participant, p["market_id"], info.interval)
            self._j.put(self.offered, offer_key, self.offered[offer_key] - info.quantity_wh)
        self._j.add(self.cancelled, key)

    def expire(self, p: Mapping) -> None:
        """Apply an ``order-expiry`` record: a resting order's unfilled remainder leaves the
        book (a sell order's remainder is no longer offered)."""
        key = (p["market_id"], p["order_id"])
        info = self.orders.get(key)
        if info is None:
            raise Rejection(f"order {p['order_id']!r} does not exist in market "
                            f"{p['market_id']!r}", "unknown-order")
        if key in self.cancelled or key in self.expired:
            raise Rejection(f"order {p['order_id']!r} is no longer in the book", "duplicate")
        if (p["market_id"], info.interval) in self.cleared:
            raise Rejection(f"market {p['market_id']!r} interval {info.interval!r} is already "
                            "cleared", "closed")
        remaining = info.quantity_wh - self.filled.get(key, 0)
        if p["remaining_wh"] != remaining:
            raise Rejection(f"order-expiry of {p['order_id']!r} states {p['remaining_wh']} Wh "
                            f"unfilled but the ledger holds {remaining} Wh", "order-mismatch")
        if info.side == "sell":
            offer_key = (info.participant, p["market_id"], info.interval)
            self._j.put(self.offered, offer_key, self.offered[offer_key] - remaining)
        self._j.add(self.expired, key)

    # -- trades -----------------------------------------------------------------------------
    def _fill(self, market: str, order_id: str, side: str, participant: str, interval: Any,
              quantity: int) -> None:
        info = self.orders.get((market, order_id))
        if info is None:
            raise Rejection(f"{side} order {order_id!r} does not exist in market {market!r}",
                            "unknown-order")
        if info.side != side or info.participant != participant or info.interval != interval:
            raise Rejection(f"order {order_id!r} is a {info.side} order of {info.participant!r} "
                            f"for interval {info.interval!r}, not a {side} order of "
                            f"{participant!r} for interval {interval!r}", "order-mismatch")
        if (market, order_id) in self.cancelled:
            raise Rejection(f"{side} order {order_id!r} is cancelled", "cancelled")
        if (market, order_id) in self.expired:
            raise Rejection(f"{side} order {order_id!r} has expired", "cancelled")
        filled = self.filled.get((market, order_id), 0) + quantity
        if filled > info.quantity_wh:
            raise Rejection(f"order {order_id!r} would be filled {filled} Wh, more than its "
                            f"{info.quantity_wh} Wh", "over-fill")
        self._j.put(self.filled, (market, order_id), filled)

    def add_trade(self, p: Mapping) -> None:
        """Apply a ``trade`` record."""
        market, interval = p["market_id"], p["interval"]
        seller, buyer, quantity = p["seller"], p["buyer"], p["quantity_wh"]
        key = (market, p["trade_id"])
        if key in self.trades:
            raise Rejection(f"trade id {p['trade_id']!r} already recorded in market {market!r}",
                            "duplicate")
        if (market, interval) in self.cleared:
            raise Rejection(f"market {market!r} interval {interval!r} is already cleared",
                            "closed")
        remaining = self._remaining_wh(seller, interval, None)
        if quantity > remaining:
            raise Rejection(f"double spend: trade {p['trade_id']!r} sells {quantity} Wh of "
                            f"{seller!r} in interval {interval!r} but only {remaining} Wh of its "
                            "sellable energy is left", "double-spend")
        if "sell_order_id" in p:
            self._fill(market, p["sell_order_id"], "sell", seller, interval, quantity)
        if "buy_order_id" in p:
            self._fill(market, p["buy_order_id"], "buy", buyer, interval, quantity)
        self._j.inc(self.sold, (seller, interval), quantity)
        self._j.inc(self.sold_in_market, (seller, market, interval), quantity)
        n, volume = self.interval_trades.get((market, interval), (0, 0))
        self._j.put(self.interval_trades, (market, interval), (n + 1, volume + quantity))
        self._j.put(self.trades, key, dict(p))

    def close_clearing(self, p: Mapping) -> None:
        """Apply a ``clearing`` record: the trades of a market interval are complete."""
        key = (p["market_id"], p["interval"])
        if key in self.cleared:
            raise Rejection(f"market {key[0]!r} interval {key[1]!r} is already cleared",
                            "duplicate")
        n, volume = self.interval_trades.get(key, (0, 0))
        if (p["n_trades"], p["volume_wh"]) != (n, volume):
            raise Rejection(f"clearing of market {key[0]!r} interval {key[1]!r} states "
                            f"{p['n_trades']} trades / {p['volume_wh']} Wh but the ledger holds "
                            f"{n} trades / {volume} Wh", "clearing-mismatch")
        self._j.add(self.cleared, key)

    # -- settlement -------------------------------------------------------------------------
    def settle(self, p: Mapping) -> None:
        """Apply a ``settlement`` record."""
        if p["settlement_id"] in self.settlements:
            raise Rejection(f"settlement id {p['settlement_id']!r} already used", "duplicate")
        market = p["market_id"]
        if len(set(p["trade_ids"])) != len(p["trade_ids"]):
            raise Rejection("settlement lists a trade twice", "double-settlement")
        for trade_id in p["trade_ids"]:
            key = (market, trade_id)
            if key not in self.trades:
                raise Rejection(f"trade {trade_id!r} does not exist in market {market!r}",
                                "unknown-trade")
            if key in self.settled:
                raise Rejection(f"trade {trade_id!r} of market {market!r} is already settled by "
                                f"{self.settled[key]!r}", "double-settlement")
        check_balanced(p["postings"], f"settlement {p['settlement_id']!r}")
        for trade_id in p["trade_ids"]:
            self._j.put(self.settled, (market, trade_id), p["settlement_id"])
        self._j.add(self.settlements, p["settlement_id"])


def check_balanced(postings: Iterable[Mapping], what: str) -> None:
    """Refuse postings whose amounts do not sum to zero (double entry).

    Raises
    ------
    Rejection
        Code ``unbalanced``, naming ``what`` and the residual [µ€].
    """
    balance = sum(posting["amount_ueur"] for posting in postings)
    if balance != 0:
        raise Rejection(f"{what} does not balance: postings sum to {balance} µ€, double entry "
                        "requires 0", "unbalanced")


def settlement_postings(trades: Iterable[Mapping]) -> list[dict]:
    """Balanced postings for trades: each buyer pays, each seller receives the trade value.

    Parameters
    ----------
    trades : iterable of trade payloads
        With ``buyer``, ``seller``, ``quantity_wh`` [Wh] and ``price_meur_per_kwh`` [m€/kWh].

    Returns
    -------
    list of dict
        ``{"account": ..., "amount_ueur": ...}`` per account [µ€], sorted by account; amounts sum
        to zero exactly.
    """
    net: dict[str, int] = {}
    for t in trades:
        value = trade_value_ueur(t["quantity_wh"], t["price_meur_per_kwh"])
        net[t["buyer"]] = net.get(t["buyer"], 0) - value
        net[t["seller"]] = net.get(t["seller"], 0) + value
    return [{"account": account, "amount_ueur": amount} for account, amount in sorted(net.items())]
