"""Continuous intraday trading in the server: each order of a ``continuous`` session is matched on
arrival by the lab's order book, its trades stored and in the ledger with it, announced on the
feed, and the same as the lab's continuous clearing of the same arrivals (SQLite and PostgreSQL).

The reference is :func:`lemgrid.market.continuous.clear_continuous_double_auction` run on an
:class:`~lemgrid.market.OrderBatch` of the orders accepted so far, in the lab's units: after
every arrival, the server's trades (buy and sell order, Wh, m€/kWh, in the order of the fills)
must be the lab's trades of that prefix.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lemgrid.ledger.identity import generate_key
from lemgrid.ledger.records import SignedRecord
from lemgrid.ledger.verify import verify_ledger
from lemgrid.market import OrderBatch
from lemgrid.market.continuous import clear_continuous_double_auction
from lemgrid.service import tables as t
from lemgrid.service.app import create_app
from lemgrid.service.operator import Market

from .conftest import Clock, World

PEOPLE = ("alice", "bob", "carol", "dave", "erin")


def _random_orders(seed: int, n: int) -> list[dict]:
    """Orders around a common price, so that many cross and many rest (partial fills too)."""
    rng = np.random.default_rng(seed)
    return [{"order_id": f"o{i}", "who": PEOPLE[int(rng.integers(len(PEOPLE)))],
             "side": "buy" if rng.random() < 0.5 else "sell",
             "quantity_wh": int(rng.integers(1, 40)) * 100,
             "price_meur_per_kwh": int(rng.integers(180, 260))} for i in range(n)]


def _lab_trades(orders: list[dict]) -> list[tuple]:
    """The lab's continuous clearing of the orders in this arrival order, in ledger units."""
    if not orders:
        return []
    batch = OrderBatch.from_arrays(
        order_id=np.array([o["order_id"] for o in orders], dtype=object),
        participant=np.array([o["who"] for o in orders], dtype=object),
        side=np.array([o["side"] for o in orders], dtype=object),
        quantity_kwh=np.array([o["quantity_wh"] / 1000 for o in orders]),
        price_eur_per_kwh=np.array([o["price_meur_per_kwh"] / 1000 for o in orders]),
        timestamp_s=np.arange(len(orders), dtype=float))
    result = clear_continuous_double_auction(batch)
    return [(orders[int(b)]["order_id"], orders[int(s)]["order_id"], round(float(q) * 1000),
             round(float(p) * 1000)) for b, s, q, p in zip(
                 result.trade_buy, result.trade_sell, result.trade_quantity_kwh,
                 result.trade_price_eur_per_kwh)]


def _server_trades(world: World, market_id: str) -> list[tuple]:
    return [(x["buy_order_id"], x["sell_order_id"], x["quantity_wh"], x["price_meur_per_kwh"])
            for x in world.operator.get(f"/markets/{market_id}/trades").json()]


def _post(world: World, o: dict, market_id: str = "c1"):
    return world.clients[o["who"]].submit_order(
        market_id, order_id=o["order_id"], side=o["side"], quantity_wh=o["quantity_wh"],
        price_meur_per_kwh=o["price_meur_per_kwh"], interval=0)


def _continuous_world(world: World) -> None:
    for who in PEOPLE:
        world.join(who, sellable_wh=10**6)
    world.session("c1", mechanism="continuous")


def test_orders_arriving_one_by_one_trade_as_the_labs_continuous_clearing(world):
    _continuous_world(world)
    market = world.http.app.state.market
    feed: list[dict] = []  # what GET /feed streams
    market.subscribers.append(feed.append)
    orders = _random_orders(seed=7, n=60)
    answered: list[tuple] = []
    for k, o in enumerate(orders):
        r = _post(world, o)
        assert r.status_code == 201, r.text
        answer = r.json()
        answered += [(x["buy_order_id"], x["sell_order_id"], x["quantity_wh"],
                      x["price_meur_per_kwh"]) for x in answer["trades"]]
        lab = _lab_trades(orders[:k + 1])
        # Before the gate: the trades so far are the lab's trades of the orders so far.
        assert _server_trades(world, "c1") == lab == answered, k
        assert [(e["buy_order_id"], e["sell_order_id"], e["quantity_wh"],
                 e["price_meur_per_kwh"]) for e in feed if e["event"] == "trade"] == lab
        filled = sum(x[2] for x in answered if o["order_id"] in x[:2])
        assert answer["filled_wh"] == filled
        assert answer["status"] == ("filled" if filled == o["quantity_wh"] else "open")
    lab = _lab_trades(orders)
    from collections import Counter

    fills_per_order = Counter(i for x in lab for i in x[:2])
    assert len(lab) > 20 and max(fills_per_order.values()) > 2  # orders filled in parts
    # In the ledger, each trade right after the order that made it, all before the gate.
    entries = [e["payload"] for e in market.ledger.entries()]
    kinds = [p["kind"] for p in entries]
    for p_i, p in enumerate(entries):
        if p["kind"] == "trade":
            before = [q for q in entries[:p_i] if q["kind"] == "order"]
            assert before[-1]["order_id"] in (p["buy_order_id"], p["sell_order_id"])
    assert "gate-closure" not in kinds
    # The order status rows follow the book.
    buyer = world.clients[orders[0]["who"]]
    status = buyer.get(f"/markets/c1/orders/{orders[0]['order_id']}").json()
    assert status["filled_wh"] == sum(x[2] for x in lab if orders[0]["order_id"] in x[:2])
    n_trades_before = len(lab)
    world.close("c1")
    assert len(_server_trades(world, "c1")) == n_trades_before  # none made at the gate
    assert [p["kind"] for p in (e["payload"] for e in market.ledger.entries())
            ].count("trade") == n_trades_before
    # Settlement: the trades' cash flows, exactly (Wh x m€/kWh = µ€), balanced.
    cash: dict[str, int] = {}
    by_id = {o["order_id"]: o["who"] for o in orders}
    for b, s, q, p in lab:
        cash[by_id[s]] = cash.get(by_id[s], 0) + q * p
        cash[by_id[b]] = cash.get(by_id[b], 0) - q * p
    for who in PEOPLE:
        got = world.operator.get(f"/markets/c1/statements/{who}").json()["amount_ueur"]
        assert got == cash.get(who, 0), who
    assert world.operator.get("/markets/c1/budget").json()["balanced"]
    with market.engine.connect() as conn:
        states = dict(conn.execute(sa.select(t.orders.c.status, sa.func.count())
                                   .group_by(t.orders.c.status)).all())
    assert set(states) <= {"filled", "cleared"} and states["cleared"] > 0  # rests expired
    report = verify_ledger(world.url)
    assert report.ok, report.problem


def test_a_cancelled_order_leaves_the_book_and_a_partly_filled_one_stays(world):
    _continuous_world(world)
    sell = {"order_id": "s1", "who": "alice", "side": "sell", "quantity_wh": 1000,
            "price_meur_per_kwh": 200}
    assert _post(world, sell).status_code == 201
    assert world.clients["alice"].cancel("c1", "s1").status_code == 200
    buy = {"order_id": "b1", "who": "bob", "side": "buy", "quantity_wh": 500,
           "price_meur_per_kwh": 300}
    r = _post(world, buy)
    assert r.status_code == 201 and r.json()["trades"] == [], r.text  # nothing to hit
    r = _post(world, {**sell, "order_id": "s2", "quantity_wh": 2000, "price_meur_per_kwh": 250})
    assert r.status_code == 201 and r.json()["filled_wh"] == 500
    assert r.json()["trades"][0]["price_meur_per_kwh"] == 300  # the resting order's price
    # The ledger refuses to cancel a partly filled order; it keeps resting.
    r = world.clients["alice"].cancel("c1", "s2")
    assert r.status_code == 409 and "filled" in r.json()["detail"], r.text
    r = _post(world, {**buy, "order_id": "b2", "quantity_wh": 1500})
    assert r.json()["status"] == "filled" and r.json()["trades"][0]["sell_order_id"] == "s2"
    assert world.clients["alice"].get("/markets/c1/orders/s2").json()["status"] == "filled"


def test_a_failed_transaction_leaves_no_trade_in_the_book_and_a_restart_rebuilds_it(
        db_url, monkeypatch):
    """An order whose transaction fails leaves nothing: no row, no entry, no trade, and the
    book in memory forgets what it matched; a server restarted on the same database rebuilds
    the book from the stored orders and goes on as the lab would."""
    from lemgrid.client import MarketClient

    clock, key = Clock(), generate_key()

    def server() -> World:
        http = TestClient(create_app(db_url, key, clock_ms=clock))
        operator = MarketClient("", key, transport=http, clock_ms=clock)
        operator.participant = "operator"
        return World(db_url, http, clock, operator)

    world = server()
    _continuous_world(world)
    orders = _random_orders(seed=11, n=40)
    # The order whose transaction fails: the first (after a few) that trades on arrival.
    bad = next(o["order_id"] for k, o in enumerate(orders) if k > 3
               and len(_lab_trades(orders[:k + 1])) > len(_lab_trades(orders[:k])))
    market = world.http.app.state.market
    flush = market.intraday.flush

    def failing_flush(conn):  # the database fails in the transaction of the bad order
        if any(bad in (r["buy_order_id"], r["sell_order_id"])
               for r in market.intraday._trade_rows):
            raise sa.exc.OperationalError("INSERT INTO trades", {}, Exception("disk I/O error"))
        return flush(conn)

    monkeypatch.setattr(market.intraday, "flush", failing_flush)
    accepted = []
    for o in orders[:20]:
        if o["order_id"] == bad:
            with pytest.raises(sa.exc.OperationalError):
                _post(world, o)
            continue
        r = _post(world, o)
        assert r.status_code == 201, (o, r.text)
        accepted.append(o)
        assert _server_trades(world, "c1") == _lab_trades(accepted)
    assert world.operator.get(f"/markets/c1/orders/{bad}").status_code == 404
    assert not any(e["payload"].get("order_id") == bad for e in market.ledger.entries())
    # Restart: a new app on the same database; the books come back from the stored orders.
    clients = world.clients
    world.http.close()
    market.close()
    world = server()
    for c in clients.values():
        c.http = world.http
    world.clients = clients
    for o in orders[20:]:
        assert _post(world, o).status_code == 201
        accepted.append(o)
    assert _server_trades(world, "c1") == _lab_trades(accepted)
    world.close("c1")
    assert world.operator.get("/markets/c1/budget").json()["balanced"]
    report = verify_ledger(world.url)
    assert report.ok, report.problem
    world.http.close()
    world.http.app.state.market.close()


def test_the_market_starts_no_writer_thread_and_commits_orders_in_the_callers_thread(tmp_path):
    """One order writer: the app's (``commit_orders`` in groups); the market itself starts no
    thread, and :meth:`Market.submit_order` commits in the calling thread."""
    before = set(threading.enumerate())
    market = Market(f"sqlite:///{tmp_path / 'm.db'}", generate_key(), Clock())
    assert set(threading.enumerate()) == before
    world_key = generate_key()
    from lemgrid.client import MarketClient

    c = MarketClient("", world_key, transport=None, clock_ms=Clock())
    c.participant, c.meter, c._log_id = "alice", "meter-alice", market.log_id
    from lemgrid.ledger.identity import registration_payload

    reg = registration_payload(world_key, "alice", "meter-alice", market.log_id)
    market.register("alice", "participant", "meter-alice", reg["public_key"], reg["pop_sig"], [])
    market.approve("alice")
    market.create_session("s1", 0, Clock()() + 900_000, "uniform")
    body = c.order_body("s1", order_id="a1", side="buy", quantity_wh=1000,
                        price_meur_per_kwh=250, interval=0)
    status, answer = market.submit_order(market.identity_by_key(c.key_id), "s1",
                                         SignedRecord(body["payload"], body["signer"],
                                                      body["sig"]), None, "sha")
    assert status == 201 and answer["status"] == "open"
    assert market.order(market.identity_by_key(c.key_id), "s1", "a1")["quantity_wh"] == 1000
    assert set(threading.enumerate()) == before
    market.close()


def test_an_order_past_its_validity_leaves_the_book_and_frees_the_sellers_energy(world):
    """Alice may sell 1000 Wh; her sell order is valid for a minute. Bob takes 400 Wh of it;
    after the minute carol's bid finds nothing (an ``order-expiry`` of the 600 Wh left comes
    first in the ledger), and alice may offer those 600 Wh again. An order expires at the
    scheduler's tick too; a validity in the past or in an auction is refused."""
    for who, wh in (("alice", 1000), ("bob", 0), ("carol", 0)):
        world.join(who, sellable_wh=wh)
    world.session("c1", mechanism="continuous")
    world.session("a1", mechanism="uniform")
    alice, now = world.clients["alice"], world.clock.now_ms
    market = world.http.app.state.market

    def sell(order_id, wh, valid_for_ms=None, market_id="c1"):
        return alice.submit_order(market_id, order_id=order_id, side="sell", quantity_wh=wh,
                                  price_meur_per_kwh=200, interval=0,
                                  valid_until_ms=None if valid_for_ms is None
                                  else world.clock.now_ms + valid_for_ms)

    before = market.ledger.size
    for r, field in ((sell("x", 100, valid_for_ms=0), "valid_until_ms"),
                     (sell("y", 100, valid_for_ms=60_000, market_id="a1"), "valid_until_ms")):
        assert r.status_code == 422 and field in r.json()["detail"], r.text
    assert market.ledger.size == before
    assert sell("s1", 1000, valid_for_ms=60_000).status_code == 201
    r = _post(world, {"order_id": "b1", "who": "bob", "side": "buy", "quantity_wh": 400,
                      "price_meur_per_kwh": 300})
    assert r.json()["filled_wh"] == 400
    world.clock.now_ms = now + 120_000  # past alice's validity, before the gate
    r = _post(world, {"order_id": "c1", "who": "carol", "side": "buy", "quantity_wh": 500,
                      "price_meur_per_kwh": 300})
    assert r.status_code == 201 and r.json()["trades"] == [], r.text
    s1 = alice.get("/markets/c1/orders/s1").json()
    assert s1["status"] == "expired" and s1["filled_wh"] == 400
    entries = [e["payload"] for e in market.ledger.entries()]
    expiry = next(i for i, p in enumerate(entries) if p["kind"] == "order-expiry")
    assert entries[expiry]["remaining_wh"] == 600 and entries[expiry + 1]["order_id"] == "c1"
    assert alice.cancel("c1", "s1").status_code == 409  # no longer in the book
    # the 600 Wh are alice's to offer again (the ledger released them); 700 would be too many
    assert sell("s2", 700).status_code == 409
    r = sell("s2", 600, valid_for_ms=1_000)
    assert r.status_code == 201 and r.json()["filled_wh"] == 500  # carol's resting bid
    world.clock.now_ms += 2_000
    assert world.operator.request("POST", "/admin/tick").status_code == 200
    assert alice.get("/markets/c1/orders/s2").json()["status"] == "expired"  # by the tick
    world.close("c1")
    report = verify_ledger(world.url)
    assert report.ok, report.problem
    assert [p["kind"] for p in (e["payload"] for e in market.ledger.entries())
            ].count("order-expiry") == 2
