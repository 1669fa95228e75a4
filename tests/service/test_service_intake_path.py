"""The fast order path (``_OrderFastPath``) and the signature helper process
(:mod:`lemgrid.service.verifier`): the same answers and the same refusals as FastAPI's route."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st
from fastapi.testclient import TestClient

from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key, public_bytes, signing_message
from lemgrid.service import tables as t
from lemgrid.service.app import MAX_JSON_DEPTH, create_app, json_too_deep
from lemgrid.service.verifier import Verifier

from .conftest import World


@pytest.fixture
def helper_world(tmp_path):
    """A market whose signatures are checked by the helper process, as under `lemgrid serve`."""
    from .conftest import Clock

    clock, key = Clock(), generate_key()
    app = create_app(f"sqlite:///{tmp_path / 'market.db'}", key, clock_ms=clock,
                     verify_process=True)
    http = TestClient(app)
    operator = MarketClient("", key, transport=http, clock_ms=clock)
    operator.participant = "operator"
    w = World("", http, clock, operator)
    yield w
    http.close()
    app.state.verifier.close()
    app.state.market.close()


def _body(c, order_id, **kw):
    return c.order_body("s1", order_id=order_id, side="buy", quantity_wh=1000,
                        price_meur_per_kwh=250, interval=0, **kw)


def _rows(world, table):
    import sqlalchemy as sa

    m = world.http.app.state.market
    with m.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_fast_path_and_route_give_the_same_answers(helper_world, monkeypatch):
    """The same kinds of order, once as the benchmark client sends them (fast path) and once
    with a Content-Type the fast path leaves to FastAPI: same statuses and answers."""
    from lemgrid.service import app as app_module

    w = helper_world
    fast_answers: list[int] = []
    send_json = app_module._send_json

    async def counted(send, status, content):
        fast_answers.append(status)
        await send_json(send, status, content)

    monkeypatch.setattr(app_module, "_send_json", counted)
    alice = w.join("alice")
    w.session("s1")
    answers = {}
    for content_type, suffix in [("application/json", "fast"),
                                 ("application/json; charset=utf-8", "route")]:
        def send(body, idem, c=alice, content_type=content_type):
            data = json.dumps(body).encode()
            headers = {"content-type": content_type, "Idempotency-Key": idem,
                       **c.headers("POST", "/markets/s1/orders", data)}
            return w.http.post("/markets/s1/orders", content=data, headers=headers)

        good = _body(alice, f"o-{suffix}")
        first = send(good, f"k-{suffix}")
        again = send(good, f"k-{suffix}")  # an idempotent retry: the first answer
        other = send(_body(alice, f"o2-{suffix}"), f"k-{suffix}")  # same key, other body
        forged = _body(alice, f"o3-{suffix}")
        forged["payload"]["quantity_wh"] = 9_000  # the order's signature no longer verifies
        bad_sig = send(forged, f"k3-{suffix}")
        invalid = _body(alice, f"o4-{suffix}")
        invalid["payload"]["side"] = "hold"
        answers[suffix] = [(r.status_code, r.json()) for r in (first, again, other, bad_sig,
                                                                send(invalid, f"k4-{suffix}"))]
    fast, route = answers["fast"], answers["route"]
    assert fast_answers == [201, 201, 409, 403]  # the invalid body went to FastAPI
    assert [s for s, _ in fast] == [s for s, _ in route] == [201, 201, 409, 403, 422]
    assert fast[0][1]["status"] == route[0][1]["status"] == "open"
    assert fast[1][1] == fast[0][1] and route[1][1] == route[0][1]
    assert "bad-signature" in fast[3][1]["detail"] and "bad-signature" in route[3][1]["detail"]
    assert fast[4][1]["detail"][0]["loc"] == route[4][1]["detail"][0]["loc"] == [
        "body", "payload", "side"]
    assert _rows(w, t.orders) == 2  # o-fast and o-route, nothing else


def test_helper_refuses_forged_request_signatures_and_replays(helper_world):
    w = helper_world
    alice, bob = w.join("alice"), w.join("bob")
    w.session("s1")
    body = _body(alice, "o1")
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json",
               **alice.headers("POST", "/markets/s1/orders", data)}
    forged = {**headers, "X-Lemgrid-Signature": bob.headers("POST", "/markets/s1/orders",
                                                             data)["X-Lemgrid-Signature"]}
    r = w.http.post("/markets/s1/orders", content=data, headers=forged)
    assert r.status_code == 401 and "X-Lemgrid-Signature" in r.json()["detail"]
    upper = {**headers, "X-Lemgrid-Signature": headers["X-Lemgrid-Signature"].upper()}
    r = w.http.post("/markets/s1/orders", content=data, headers=upper)  # another spelling
    assert r.status_code == 401
    assert w.http.post("/markets/s1/orders", content=data, headers=headers).status_code == 201
    r = w.http.post("/markets/s1/orders", content=data, headers=headers)  # replayed request
    assert r.status_code == 401 and "already used" in r.json()["detail"]
    assert _rows(w, t.orders) == 1


def test_verifier_batches_and_falls_back_when_its_helper_dies():
    keys = [generate_key() for _ in range(3)]
    items = []
    for i, k in enumerate(keys):
        message = signing_message({"kind": "x", "n": i})
        items.append((public_bytes(k), k.sign(message).hex(), message))
    wrong = (items[0][0], items[1][1], items[0][2])  # another key's signature
    short = (items[0][0], items[0][1][:-2], items[0][2])
    upper = (items[0][0], items[0][1].upper(), items[0][2])
    verifier = Verifier(helper=True)
    try:
        async def run():
            together = await asyncio.gather(verifier.verify(items[:2]),
                                            verifier.verify([items[2], wrong, short, upper]))
            assert verifier.helper_pid is not None
            import os
            import signal

            os.kill(verifier.helper_pid, signal.SIGKILL)
            await asyncio.sleep(0.2)
            after = await verifier.verify([items[0], wrong])
            return together, after

        # On a thread of its own: the session's Playwright browser (tests/conftest.py) keeps
        # an event loop running on the main thread once a report test has used it.
        with ThreadPoolExecutor(1) as thread:
            together, after = thread.submit(asyncio.run, run()).result()
    finally:
        verifier.close()
    assert together == [[True, True], [True, False, False, False]]
    assert after == [True, False]
    assert verifier.helper_pid is None  # verified on the caller's thread since


def test_bodies_the_fast_path_cannot_read_are_answered_by_the_route(helper_world):
    """Not JSON at all, or empty: FastAPI's answer (a 4xx), never a server error."""
    w = helper_world
    alice = w.join("alice")
    w.session("s1")
    for data in [b"{not json", b""]:
        headers = {"content-type": "application/json",
                   **alice.headers("POST", "/markets/s1/orders", data)}
        r = w.http.post("/markets/s1/orders", content=data, headers=headers)
        assert 400 <= r.status_code < 500, (data[:10], r.status_code, r.text)
    assert _rows(w, t.orders) == 0


@pytest.fixture
def high_recursion_limit():
    """As in a process that imported py-evm, which raises the recursion limit to 100,000."""
    import sys

    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    yield
    sys.setrecursionlimit(before)


@pytest.mark.parametrize("path", ["/markets/s1/orders", "/markets/s1/cancel", "/register"])
def test_deeply_nested_bodies_are_refused_before_any_parser_reads_them(helper_world, path,
                                                                         high_recursion_limit):
    """A parser would overflow the C stack (the server would die): the depth is refused
    first, naming the body."""
    w = helper_world
    alice = w.join("alice")
    w.session("s1")
    for data in [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1"
                 + b"}" * (MAX_JSON_DEPTH + 1)]:
        headers = {"content-type": "application/json", **alice.headers("POST", path, data)}
        r = w.http.post(path, content=data, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body"]
        assert str(MAX_JSON_DEPTH) in r.json()["detail"][0]["msg"]
    assert _rows(w, t.orders) == 0


def test_deeply_nested_umei_bodies_are_problem_details(helper_world, high_recursion_limit):
    data = b"[" * 100_000 + b"]" * 100_000
    r = helper_world.http.post("/umei/Orders", content=data,
                               headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("/ValidationError")
    assert problem["validation-errors"][0]["property"] == "body"


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text("[]{}\\\"ab", max_size=6),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text("[]{}\\\"ab", max_size=4), inner, max_size=3),
    max_leaves=60)


@given(_json_values)
def test_json_depth_is_the_parsed_values_depth(value):
    """Against the depth of what ``json.loads`` reads (brackets in keys and strings, escaped
    quotes included)."""
    raw = json.dumps(value, ensure_ascii=False).encode()
    assert json_too_deep(raw) == (_depth(json.loads(raw)) > MAX_JSON_DEPTH)
    deeper = b"[" * MAX_JSON_DEPTH + raw + b"]" * MAX_JSON_DEPTH
    assert json_too_deep(deeper) == (_depth(value) > 0)
