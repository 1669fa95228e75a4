"""Order intake of the market server on loopback: 1,000 participants send signed orders.

Starts ``lemgrid serve`` (SQLite file; then a throwaway PostgreSQL cluster if PostgreSQL is
installed), registers and approves N_PARTICIPANTS identities, then sends N_ORDERS signed orders
(each participant in turn) over CONNECTIONS keep-alive connections, bounded by MAX_SECONDS.
The requests (order signature, request signature, idempotency key) are made before the clock
starts and sent by a small asyncio HTTP/1.1 client on uvloop (raw bytes on keep-alive sockets,
one request in flight per connection, as a load generator would), so that the client, on the
same 2 cores, costs the server little. The server's CPU (with its signature helper process)
and the client's are measured per accepted order, and so is the CPU of the server's event loop
thread alone: one such thread serves at most 1,000 / that many orders per second however many
cores there are. Reports accepted orders/s and p50/p99 latency per database, and counts
the orders the server holds afterwards (every 201 must be there: nothing lost).

Usage: python benchmarks/service.py [N_ORDERS] [N_PARTICIPANTS] [sqlite]  (sqlite: skip
PostgreSQL)
Goal (2 cores, SQLite): >= 2,000 orders/s and p99 <= 50 ms. Last line: one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key, write_private_key
from lemgrid.ledger.sqldb import make_engine

GOAL_ORDERS_PER_S, GOAL_P99_MS = 2_000, 50.0
CONCURRENCY = 16  # client threads during the set-up
CONNECTIONS = 48  # keep-alive connections sending orders
MAX_SECONDS = 40.0  # well inside the 60 s a request signature is accepted for


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


def _cpu_s(pid: int) -> float:
    """CPU time used so far by a process and its running children (the server's signature
    helper) [s] (user + system, from /proc)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _thread_cpu_s(pid: int) -> float:
    """CPU time used so far by a process's main thread (the server's event loop) [s]."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    except OSError:
        return []


def _order_request(c: MarketClient, host: str, i: int) -> bytes:
    """The bytes of one signed order request (as ``MarketClient.request`` would send it)."""
    body = c.order_body("bench", order_id=f"o{i}", side="buy", quantity_wh=100 + i % 900,
                        price_meur_per_kwh=250, interval=0)
    path = "/markets/bench/orders"
    data = json.dumps(body).encode()
    headers = {"Host": host, "Content-Type": "application/json",
               "Content-Length": str(len(data)), "Idempotency-Key": f"o{i}",
               **c.headers("POST", path, data)}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + data


async def _send_all(host: str, requests: list[bytes]) -> tuple[np.ndarray, list[int]]:
    """Send the requests over CONNECTIONS keep-alive connections, one in flight on each;
    returns the latencies [ms] (NaN: not sent before MAX_SECONDS) and HTTP statuses."""
    latencies_ms = np.full(len(requests), np.nan)
    statuses = [0] * len(requests)
    next_i = iter(range(len(requests)))
    deadline = time.perf_counter() + MAX_SECONDS
    address, port = host.split(":")

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(address, int(port))
        try:
            for i in next_i:
                if time.perf_counter() > deadline:
                    return
                start = time.perf_counter()
                writer.write(requests[i])
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next(int(line.split(":", 1)[1]) for line in lines
                              if line.lower().startswith("content-length:"))
                await reader.readexactly(length)
                latencies_ms[i] = (time.perf_counter() - start) * 1000
                statuses[i] = int(lines[0].split(" ", 2)[1])
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return latencies_ms, statuses


def _run(coroutine: Any) -> Any:
    """Run on uvloop (a dependency of the service extra): the client's own CPU per request is
    about half of asyncio's default loop's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover  (Windows)
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


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
        # Requests made before the clock starts: the benchmark measures the server.
        host = url.removeprefix("http://")
        requests = [_order_request(clients[i % n_participants], host, i)
                    for i in range(n_orders)]
        t, cpu_s, client_s = time.perf_counter(), _cpu_s(proc.pid), time.process_time()
        loop_s = _thread_cpu_s(proc.pid)
        latencies_ms, statuses = _run(_send_all(host, requests))
        elapsed_s = time.perf_counter() - t
        server_cpu_s = _cpu_s(proc.pid) - cpu_s
        loop_cpu_s = _thread_cpu_s(proc.pid) - loop_s
        client_cpu_s = time.process_time() - client_s
        accepted = [f"o{i}" for i, s in enumerate(statuses) if s == 201]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    # Counted in the database once the server is gone: every 201 must be there, with its
    # ledger entry.
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = {r[0] for r in conn.execute(sa.text(
            "SELECT order_id FROM orders WHERE market_id = 'bench'"))}
        ledger_orders = conn.execute(sa.text(
            "SELECT COUNT(*) FROM ledger_entries WHERE kind = 'order'")).scalar()
    engine.dispose()
    stored = len(rows & set(accepted))
    done = latencies_ms[~np.isnan(latencies_ms)]
    return {"db": db_url.split(":")[0], "participants": n_participants,
            "connections": CONNECTIONS, "orders_sent": int(done.size),
            "orders_accepted": len(accepted), "orders_stored": stored,
            "ledger_order_entries": int(ledger_orders),
            "nothing_lost": stored == len(accepted) == ledger_orders,
            "orders_per_s": len(accepted) / elapsed_s,
            "p50_ms": float(np.percentile(done, 50)), "p99_ms": float(np.percentile(done, 99)),
            "server_cpu_ms_per_order": server_cpu_s * 1000 / max(1, len(accepted)),
            "server_loop_cpu_ms_per_order": loop_cpu_s * 1000 / max(1, len(accepted)),
            "client_cpu_ms_per_order": client_cpu_s * 1000 / max(1, len(accepted)),
            "setup_s": setup_s}


def main() -> None:
    n_orders = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    n_participants = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(f"sqlite:///{Path(tmp) / 'bench.db'}", Path(tmp), n_orders,
                           n_participants))
        from lemgrid.service.pgtest import fresh_database, pg_bin, postgres_server

        if pg_bin() is not None and "sqlite" not in sys.argv[3:]:
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
