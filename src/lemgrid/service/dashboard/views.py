"""What the dashboard shows, read from the market's tables: a public view that names nobody,
a participant's own view, the operator's and the DSO's view, and the feeder's power flow.

The public view is what anyone watching the market may see (it is served without a signature):
session states, the open book's depth by price level, trades with their quantity and price but
without buyer, seller or order ids, the traffic light and flexibility without providers. Anything
that names a participant needs a signed request (:func:`participant_view`, :func:`operator_view`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from lemgrid.service import tables as t
from lemgrid.service.dashboard.layout import branch_buses, feeder_layout

if TYPE_CHECKING:
    from lemgrid.service.operator import Market

#: Trades listed in the public view (the latest ones).
RECENT_TRADES = 50

#: Fields of feed events the public feed passes on, per event (no participant, order or offer
#: ids: those may carry names).
PUBLIC_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "order": ("market_id", "side", "quantity_wh", "price_meur_per_kwh"),
    "cancel": ("market_id",),
    "gate-closure": ("market_id",),
    "trade": ("market_id", "trade_id", "quantity_wh", "price_meur_per_kwh"),
    "checkpoint": ("seq", "tree_size", "root_hash"),
    "traffic-light": ("market_id", "interval", "state", "reason", "stage"),
    "flex-request": ("interval", "service", "reason"),
    "flex-offer": ("interval", "direction"),
    "flex-activation": ("interval", "direction", "power_w", "price_meur_per_kwh", "buyer"),
    "flex-reservation": ("interval", "window_stop"),
}


def public_event(event: dict) -> dict | None:
    """An event of the market's feed reduced to its public fields (None: not public)."""
    fields = PUBLIC_EVENT_FIELDS.get(event.get("event", ""))
    if fields is None:
        return None
    return {"event": event["event"], **{k: event[k] for k in fields if k in event}}


def depth(rows: list[dict]) -> dict[str, list[dict]]:
    """Open orders summed by price level: bids from the highest price, asks from the lowest.

    Parameters
    ----------
    rows : list of dict
        ``side`` ('buy'/'sell'), ``quantity_wh`` [Wh], ``filled_wh`` [Wh],
        ``price_meur_per_kwh`` [m€/kWh].

    Returns
    -------
    dict
        ``bids`` and ``asks``: ``price_meur_per_kwh``, ``quantity_wh``, ``cumulative_wh`` and
        ``n_orders`` per level.
    """
    levels: dict[str, dict[int, list[int]]] = {"buy": defaultdict(lambda: [0, 0]),
                                               "sell": defaultdict(lambda: [0, 0])}
    for r in rows:
        level = levels[r["side"]][int(r["price_meur_per_kwh"])]
        level[0] += int(r["quantity_wh"]) - int(r.get("filled_wh") or 0)
        level[1] += 1
    out: dict[str, list[dict]] = {}
    for side, name, descending in (("buy", "bids", True), ("sell", "asks", False)):
        cumulative = 0
        out[name] = []
        for price in sorted(levels[side], reverse=descending):
            q, n = levels[side][price]
            cumulative += q
            out[name].append({"price_meur_per_kwh": price, "quantity_wh": q,
                              "cumulative_wh": cumulative, "n_orders": n})
    return out


def _grid_rows(market: Market, table_name: str) -> list[dict]:
    if market.grid is None:
        return []
    from lemgrid.service import grid as g

    table = {"lights": g.lights, "offers": g.offers, "activations": g.activations}[table_name]
    with market.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            sa.select(table).order_by(table.c.interval))]


def public_view(market: Market) -> dict:
    """The market as anyone may see it (see the module's docstring)."""
    with market.engine.connect() as conn:
        sessions = [dict(r._mapping) for r in conn.execute(
            sa.select(t.sessions).order_by(t.sessions.c.interval, t.sessions.c.gate_ms))]
        open_ids = [s["market_id"] for s in sessions if s["state"] == "open"]
        book = defaultdict(list)
        if open_ids:
            for r in conn.execute(sa.select(t.orders).where(
                    t.orders.c.market_id.in_(open_ids) & (t.orders.c.status == "open"))):
                book[r.market_id].append(dict(r._mapping))
        trades = [dict(r._mapping) for r in conn.execute(
            sa.select(t.trades.c.market_id, t.trades.c.trade_id, t.trades.c.quantity_wh,
                      t.trades.c.price_meur_per_kwh, t.sessions.c.interval)
            .join(t.sessions, t.sessions.c.market_id == t.trades.c.market_id))]
    trades.sort(key=lambda x: (x["interval"], x["market_id"], x["trade_id"]))
    price: dict[int, float] = {}  # volume-weighted local price per interval [m€/kWh]
    volume: dict[int, int] = defaultdict(int)
    value: dict[int, int] = defaultdict(int)
    for x in trades:
        volume[x["interval"]] += x["quantity_wh"]
        value[x["interval"]] += x["quantity_wh"] * x["price_meur_per_kwh"]
    for interval, wh in volume.items():
        if wh:
            price[interval] = value[interval] / wh
    mechanism = market.spec.mechanism if market.spec else "uniform"
    return {
        "clock_ms": market.clock_ms(),
        "log_id": market.log_id,
        "mechanism": mechanism,
        # the server clears order-based designs with one price per trade: no DLMPs
        "dlmp": None,
        "sessions": [{k: s[k] for k in ("market_id", "interval", "mechanism", "gate_ms",
                                        "state")} for s in sessions],
        "depth": {m: depth(rows) for m, rows in book.items()},
        "open_orders": {m: len(rows) for m, rows in book.items()},
        "trades": trades[-RECENT_TRADES:],
        "n_trades": len(trades),
        "local_price": [{"interval": i, "price_meur_per_kwh": price[i],
                         "volume_wh": volume[i]} for i in sorted(price)],
        "has_grid": market.grid is not None,
        "lights": [{k: x[k] for k in ("interval", "state", "reason", "service", "stage")}
                   for x in _grid_rows(market, "lights")],
        "requests": market.grid.requests() if market.grid is not None else [],
        "offers": [{k: x[k] for k in ("interval", "direction", "power_w", "price_meur_per_kwh")}
                   for x in _grid_rows(market, "offers")],
        "activations": [{k: x[k] for k in ("interval", "direction", "power_w",
                                           "price_meur_per_kwh", "buyer", "service",
                                           "delivered")}
                        for x in _grid_rows(market, "activations")],
        "checkpoints": [{"seq": c.seq, "tree_size": c.tree_size}
                        for c in market.ledger.state.checkpoints][-20:],
    }


def participant_view(market: Market, identity: dict) -> dict:
    """What a participant (or an aggregator, for its members) may see of its own: orders with
    their ledger positions (the receipts), trades, the schedule they make, statements, flexibility
    offers and activations."""
    mine = sorted(market.members_of(identity))
    with market.engine.connect() as conn:
        orders = [dict(r._mapping) for r in conn.execute(
            sa.select(t.orders, t.sessions.c.interval)
            .join(t.sessions, t.sessions.c.market_id == t.orders.c.market_id)
            .where(t.orders.c.participant.in_(mine)).order_by(t.orders.c.arrival))]
        trades = [dict(r._mapping) for r in conn.execute(
            sa.select(t.trades, t.sessions.c.interval)
            .join(t.sessions, t.sessions.c.market_id == t.trades.c.market_id)
            .where(t.trades.c.buyer.in_(mine) | t.trades.c.seller.in_(mine))
            .order_by(t.sessions.c.interval, t.trades.c.trade_id))]
        statements = [dict(r._mapping) for r in conn.execute(
            sa.select(t.statements, t.sessions.c.interval)
            .join(t.sessions, t.sessions.c.market_id == t.statements.c.market_id)
            .where(t.statements.c.participant.in_(mine))
            .order_by(t.sessions.c.interval, t.statements.c.participant))]
    schedule: dict[tuple[str, int], dict] = {}
    for x in trades:
        for who, sign in ((x["buyer"], 1), (x["seller"], -1)):
            if who in mine:
                row = schedule.setdefault((who, x["interval"]), {
                    "participant": who, "interval": x["interval"], "bought_wh": 0,
                    "sold_wh": 0, "net_import_wh": 0})
                row["bought_wh" if sign > 0 else "sold_wh"] += x["quantity_wh"]
                row["net_import_wh"] += sign * x["quantity_wh"]
    grid = market.grid
    return {
        "participant": identity["participant"], "role": identity["role"], "members": mine,
        "orders": [{**o, "seq": o.pop("arrival")} for o in orders],
        "trades": trades,
        "schedule": sorted(schedule.values(), key=lambda r: (r["interval"], r["participant"])),
        "statements": statements,
        "total_ueur": sum(s["amount_ueur"] for s in statements),
        "offers": grid.offers(identity) if grid is not None else [],
        "activations": grid.activations(identity) if grid is not None else [],
    }


def operator_view(market: Market, identity: dict) -> dict:
    """The operator's or the DSO's view: every identity, each session's budget balance, every
    offer and activation with its provider, the traffic light with its reasons."""
    with market.engine.connect() as conn:
        identities = [{k: r._mapping[k] for k in ("participant", "role", "meter", "approved")}
                      for r in conn.execute(sa.select(t.identities)
                                            .order_by(t.identities.c.participant))]
        budgets = {r.market_id: int(r.total) for r in conn.execute(
            sa.select(t.statements.c.market_id,
                      sa.func.sum(t.statements.c.amount_ueur).label("total"))
            .group_by(t.statements.c.market_id))}
        sessions = [dict(r._mapping) for r in conn.execute(
            sa.select(t.sessions).order_by(t.sessions.c.interval))]
    grid = market.grid
    return {
        "role": identity["role"],
        "identities": identities,
        "sessions": [{**s, "sum_amount_ueur": budgets.get(s["market_id"], 0)} for s in sessions],
        "lights": grid.lights() if grid is not None else [],
        "offers": grid.offers(identity) if grid is not None else [],
        "activations": grid.activations(identity) if grid is not None else [],
        "ledger_size": market.ledger.size,
    }


def grid_view(market: Market) -> dict:
    """The feeder and its AC power flow over the DSO's day: bus coordinates, branches, and per
    interval every bus's voltage [p.u.] and every branch's loading [%].

    The power flow is the DSO's forecast check of the owners' schedules (what the traffic light
    is computed from, :func:`lemgrid.service.engine.traffic_light`).
    """
    from lemgrid.service.operator import Refused

    if market.grid is None:
        raise Refused(404, "scenario: this market has no DSO (no dso block in its scenario), "
                           "so no grid to draw")
    day = market.grid.day(0)
    flow = day_flow(day)
    network = day.scenario.network
    net = _pandapower_net(str(day.scenario.config.grid))
    xy, source = feeder_layout(network, net)
    f, to = branch_buses(network)
    dso = day.operator()

    def clean(a: np.ndarray, digits: int) -> list:
        return [[None if not np.isfinite(v) else round(float(v), digits) for v in row]
                for row in np.asarray(a)]

    return {
        "source": source,
        "grid": str(day.scenario.config.grid),
        "buses": [{"name": str(n), "x": float(x), "y": float(y), "vn_kv": float(kv)}
                  for n, (x, y), kv in zip(network.bus_names, xy, network.bus_vn_kv,
                                           strict=True)],
        "slack_bus": int(network.slack_bus),
        "branches": [{"name": str(n), "kind": str(k), "from": int(a), "to": int(b)}
                     for n, k, a, b in zip(network.branch_names, network.branch_kind, f, to,
                                           strict=True)],
        "intervals": list(range(day.start, day.stop)),
        "times": [str(x) for x in day.scenario.time_index[day.start:day.stop]],
        "vm_pu": clean(flow.vm_pu, 4),
        "loading_percent": clean(flow.loading_percent, 1),
        "limits": {"vm_min_pu": dso.limits.vm_min_pu, "vm_max_pu": dso.limits.vm_max_pu,
                   "max_loading_percent": dso.limits.max_loading_percent},
    }


def day_flow(day: Any) -> Any:
    """AC power flow of a DSO day's schedules on the profiles its traffic light uses."""
    dso = day.operator()
    parts = day.scenario.participants
    if dso.config.flexibility.lead_time == "intraday":
        load, pv = parts.load_p_kw[day.start:day.stop], parts.pv_p_kw[day.start:day.stop]
    else:
        load, pv = day.session.load_kw, day.session.pv_kw
    _, flow = dso._flow(day.session, day.plan, load, pv)
    return flow


def _pandapower_net(spec: str) -> Any:
    """The pandapower net of a grid spec, for its geodata; None if it cannot be loaded."""
    from lemgrid.grid.sources import load_pandapower_net

    try:
        return load_pandapower_net(spec)
    except Exception:  # noqa: BLE001  (no geodata: the layout is computed instead)
        return None

