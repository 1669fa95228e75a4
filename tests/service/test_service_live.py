"""Against a real `lemgrid serve` process on loopback: the SSE feed, and crash safety under
kill -9 during intake and during clearing and settlement."""

from __future__ import annotations

import json
import os
import random
import threading
import time

import httpx
import pytest

from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key, write_private_key
from lemgrid.ledger.verify import verify_ledger

from ._live import LiveServer


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _setup(url: str, key, names) -> dict[str, MarketClient]:
    operator = MarketClient(url, key)
    clients = {}
    for name in names:
        c = MarketClient(url, generate_key())
        assert c.register(name, f"meter-{name}").status_code == 201
        assert operator.request("POST", f"/identities/{name}/approve").status_code == 200
        assert operator.request("POST", "/capabilities", {
            "participant": name, "interval": 0, "sellable_wh": 10**9}).status_code == 201
        clients[name] = c
    clients["operator"] = operator
    return clients


@pytest.fixture
def server(db_url, tmp_path):
    key_path = tmp_path / "operator.key"
    key = generate_key()
    write_private_key(key, key_path)
    live = LiveServer(db_url, key_path).start()
    yield live, key
    live.stop()


def test_sse_feed_streams_orders_gate_closure_trades_and_checkpoint(server):
    live, key = server
    clients = _setup(live.url, key, ["alice", "bob"])
    op = clients["operator"]
    assert op.request("POST", "/sessions", {"market_id": "s1", "interval": 0,
                                            "gate_ms": _now_ms() + 4000}).status_code == 201
    path = "/feed?max_events=5"
    events: list[dict] = []

    def listen() -> None:
        with httpx.stream("GET", live.url + path, headers=op.headers("GET", path, b""),
                          timeout=30) as r:
            assert r.status_code == 200
            connected.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))

    # The orders go in once the feed answered (the server subscribes it before answering; a
    # busy machine may take a while to connect), well before the gate closes.
    connected = threading.Event()
    listener = threading.Thread(target=listen)
    listener.start()
    assert connected.wait(10), "the feed did not answer"
    for who, side, price in (("alice", "buy", 300), ("bob", "sell", 100)):
        assert clients[who].submit_order("s1", order_id=f"{who}-1", side=side,
                                         quantity_wh=1000, price_meur_per_kwh=price,
                                         interval=0).status_code == 201
    listener.join(30)
    assert [e["event"] for e in events] == ["order", "order", "gate-closure", "trade",
                                            "checkpoint"]
    assert events[3]["quantity_wh"] == 1000


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_kill_9_during_intake_and_clearing_loses_nothing_and_duplicates_nothing(db_url,
                                                                                tmp_path):
    rng = random.Random(12)
    key_path = tmp_path / "operator.key"
    key = generate_key()
    write_private_key(key, key_path)
    live = LiveServer(db_url, key_path).start()
    clients = _setup(live.url, key, ["alice", "bob", "carol"])
    accepted: dict[str, tuple[str, dict, dict]] = {}  # order id -> (who, body, answer)
    sent: dict[str, tuple[str, dict]] = {}
    n_sessions = 0
    trials = int(os.environ.get("LEMGRID_CRASH_TRIALS", "20"))
    try:
        for trial in range(trials):
            market_id = f"s{trial}"
            gate_ms = _now_ms() + rng.randint(150, 700)  # clearing falls inside the trial
            # Every other session continuous: matched on arrival, inside the intake's commits.
            r = clients["operator"].request("POST", "/sessions", {
                "market_id": market_id, "interval": 0, "gate_ms": gate_ms,
                "mechanism": "continuous" if trial % 2 else "uniform"})
            assert r.status_code == 201
            n_sessions += 1
            stop = threading.Event()

            def intake(who: str) -> None:
                c, i = clients[who], 0
                while not stop.is_set():
                    oid = f"{market_id}-{who}-{i}"
                    body = c.order_body(market_id, order_id=oid, side="buy" if who == "alice"
                                        else "sell", quantity_wh=100 + i,
                                        price_meur_per_kwh=200 if who == "alice" else 150,
                                        interval=0)
                    sent[oid] = (who, body)
                    try:
                        r = c.request("POST", f"/markets/{market_id}/orders", body,
                                      idempotency_key=oid)
                    except httpx.HTTPError:
                        return
                    if r.status_code == 201:
                        accepted[oid] = (who, body, r.json())
                    i += 1

            threads = [threading.Thread(target=intake, args=(w,)) for w in ("alice", "bob",
                                                                            "carol")]
            for th in threads:
                th.start()
            time.sleep(rng.uniform(0.05, 1.0))
            live.kill()
            stop.set()
            for th in threads:
                th.join()
            live.start()
        time.sleep(0.3)  # the scheduler clears sessions whose gate passed while down
        op = clients["operator"]
        for oid, (who, body, answer) in accepted.items():
            mid = body["payload"]["market_id"]
            assert op.get(f"/markets/{mid}/orders/{oid}").status_code == 200, oid
            retry = clients[who].request("POST", f"/markets/{mid}/orders", body,
                                         idempotency_key=oid)
            assert (retry.status_code, retry.json()) == (201, answer), oid
        trades = [t for s in range(n_sessions) for t in op.get(f"/markets/s{s}/trades").json()]
        ids = [(t["market_id"], t["trade_id"]) for t in trades]
        assert len(ids) == len(set(ids))
        for s in range(n_sessions):
            assert op.get(f"/sessions/s{s}").json()["state"] == "settled", \
                live.log_path.read_text()[-3000:]
            assert op.get(f"/markets/s{s}/budget").json()["balanced"]
        assert len(op.get("/ledger/checkpoints").json()) == n_sessions
        assert len(accepted) > 0 and len(trades) > 0
    finally:
        live.stop()
    report = verify_ledger(db_url)
    assert report.ok, report.problem
    _continuous_sessions_trade_as_the_lab(db_url, [f"s{s}" for s in range(1, n_sessions, 2)])


def _continuous_sessions_trade_as_the_lab(db_url: str, market_ids: list[str]) -> None:
    """After the kills, each continuous session's stored trades are the lab's continuous
    clearing of its stored orders in arrival order: no trade of a rolled-back order, none lost,
    none made twice, whatever the book in memory held when the server died."""
    import numpy as np
    import sqlalchemy as sa

    from lemgrid.market import OrderBatch
    from lemgrid.market.continuous import clear_continuous_double_auction
    from lemgrid.service import tables as t

    engine = sa.create_engine(db_url)
    n_trades = 0
    with engine.connect() as conn:
        for market_id in market_ids:
            orders = conn.execute(sa.select(t.orders).where(t.orders.c.market_id == market_id)
                                  .order_by(t.orders.c.arrival)).all()
            stored = [(r.buy_order_id, r.sell_order_id, r.quantity_wh, r.price_meur_per_kwh)
                      for r in conn.execute(sa.select(t.trades).where(
                          t.trades.c.market_id == market_id).order_by(t.trades.c.seq))]
            if not orders:
                assert stored == []
                continue
            result = clear_continuous_double_auction(OrderBatch.from_arrays(
                order_id=np.array([o.order_id for o in orders], dtype=object),
                participant=np.array([o.participant for o in orders], dtype=object),
                side=np.array([o.side for o in orders], dtype=object),
                quantity_kwh=np.array([o.quantity_wh / 1000 for o in orders]),
                price_eur_per_kwh=np.array([o.price_meur_per_kwh / 1000 for o in orders]),
                timestamp_s=np.arange(len(orders), dtype=float)))
            lab = [(orders[int(b)].order_id, orders[int(s)].order_id, round(float(q) * 1000),
                    round(float(p) * 1000)) for b, s, q, p in zip(
                        result.trade_buy, result.trade_sell, result.trade_quantity_kwh,
                        result.trade_price_eur_per_kwh)]
            assert stored == lab, market_id
            n_trades += len(stored)
    engine.dispose()
    assert n_trades > 0
