"""Order intake of the market server on loopback: 1,000 participants send signed orders.

Starts ``lemgrid serve`` (SQLite file; then a throwaway PostgreSQL cluster if PostgreSQL is
installed), registers and approves N_PARTICIPANTS identities, then sends N_ORDERS signed orders
from CONCURRENCY client threads (each participant in turn), bounded by MAX_SECONDS. Reports
accepted orders/s and p50/p99 latency per database, and counts the orders the server holds
afterwards (every 201 must be there: nothing lost).

Usage: python benchmarks/service.py [N_ORDERS] [N_PARTICIPANTS]
Goal (2 cores, SQLite): >= 2,000 orders/s and p99 <= 50 ms. Last line: one JSON object.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key, write_private_key

GOAL_ORDERS_PER_S, GOAL_P99_MS = 2_000, 50.0
CONCURRENCY = 16
MAX_SECONDS = 60.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(db_url: str, key_path: Path) -> tuple[subprocess.Popen, str]:
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "lemgrid.cli", "serve", "--db", db_url,
                             "--port", str(port), "--operator-key", str(key_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("lemgrid serve did not start")


def run(db_url: str, tmp: Path, n_orders: int, n_participants: int) -> dict:
    key = generate_key()
    key_path = tmp / f"operator-{abs(hash(db_url))}.key"
    write_private_key(key, key_path)
    proc, url = _serve(db_url, key_path)
    try:
        limits = httpx.Limits(max_connections=CONCURRENCY * 2)
        shared = httpx.Client(base_url=url, timeout=30, limits=limits)
        operator = MarketClient(url, key, transport=shared)
        clients = [MarketClient(url, generate_key(), transport=shared)
                   for _ in range(n_participants)]

        def join(i: int) -> None:
            c = clients[i]
            assert c.register(f"p{i}", f"m{i}").status_code == 201
            assert operator.request("POST", f"/identities/p{i}/approve").status_code == 200

        t = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(join, range(n_participants)))
        setup_s = time.perf_counter() - t
        assert operator.request("POST", "/sessions", {
            "market_id": "bench", "interval": 0, "gate_ms": 2**61}).status_code == 201
        # Orders signed before the clock starts: the benchmark measures the server.
        bodies = [(clients[i % n_participants], clients[i % n_participants].order_body(
            "bench", order_id=f"o{i}", side="buy", quantity_wh=100 + i % 900,
            price_meur_per_kwh=250, interval=0)) for i in range(n_orders)]
        latencies_ms = np.full(n_orders, np.nan)
        accepted: list[str] = []
        lock = threading.Lock()
        deadline = time.perf_counter() + MAX_SECONDS

        def send(i: int) -> None:
            if time.perf_counter() > deadline:
                return
            c, body = bodies[i]
            start = time.perf_counter()
            r = c.request("POST", "/markets/bench/orders", body,
                          idempotency_key=body["payload"]["order_id"])
            latencies_ms[i] = (time.perf_counter() - start) * 1000
            if r.status_code == 201:
                with lock:
                    accepted.append(body["payload"]["order_id"])

        t = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(send, range(n_orders)))
        elapsed_s = time.perf_counter() - t
        stored = sum(1 for oid in accepted
                     if operator.get(f"/markets/bench/orders/{oid}").status_code == 200)
        done = latencies_ms[~np.isnan(latencies_ms)]
        return {"db": db_url.split(":")[0], "participants": n_participants,
                "orders_sent": int(done.size), "orders_accepted": len(accepted),
                "orders_stored": stored, "nothing_lost": stored == len(accepted),
                "orders_per_s": len(accepted) / elapsed_s,
                "p50_ms": float(np.percentile(done, 50)), "p99_ms": float(np.percentile(done, 99)),
                "setup_s": setup_s}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    n_orders = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    n_participants = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(f"sqlite:///{Path(tmp) / 'bench.db'}", Path(tmp), n_orders,
                           n_participants))
        from lemgrid.service.pgtest import fresh_database, pg_bin, postgres_server

        if pg_bin() is not None:
            with postgres_server() as server:
                results.append(run(fresh_database(server, "bench"), Path(tmp), n_orders,
                                   n_participants))
    for r in results:
        print(f"{r['db']}: {r['orders_per_s']:,.0f} accepted orders/s, p50 {r['p50_ms']:.1f} ms, "
              f"p99 {r['p99_ms']:.1f} ms; {r['orders_stored']}/{r['orders_accepted']} stored")
    sqlite = results[0]
    met = (sqlite["orders_per_s"] >= GOAL_ORDERS_PER_S and sqlite["p99_ms"] <= GOAL_P99_MS
           and all(r["nothing_lost"] for r in results))
    print(json.dumps({"goal": {"orders_per_s": GOAL_ORDERS_PER_S, "p99_ms": GOAL_P99_MS},
                      "measured": {r["db"]: {k: round(v, 2) if isinstance(v, float) else v
                                             for k, v in r.items()} for r in results},
                      "peer": "postgresql" if len(results) > 1 else None, "met": met,
                      "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
