"""Sealed-bid sessions over the API (commit window, reveal window, clearing on revealed orders
only), on the ledger's commit-reveal rules, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from lemgrid.ledger.verify import verify_ledger
from lemgrid.market import OrderBatch, clear

GATE_MS, REVEAL_MS = 900_000, 1_800_000


def _stored(world) -> tuple:
    from lemgrid.service import tables as t

    return world.stored(t.orders, t.commitments, t.trades)


def _tick(world, at_ms):
    world.clock.now_ms = at_ms
    r = world.operator.request("POST", "/admin/tick")
    assert r.status_code == 200, r.text
    return r.json()["settled"]


@pytest.fixture
def sealed(world):
    for name in ("alice", "bob", "carol"):
        world.join(name)
    t0 = world.clock.now_ms
    r = world.operator.request("POST", "/sessions/sealed", {
        "market_id": "s1", "interval": 0, "gate_ms": t0 + GATE_MS, "reveal_ms": t0 + REVEAL_MS,
        "mechanism": "uniform"})
    assert r.status_code == 201, r.text
    world.t0 = t0
    return world


BOOK = [("alice", "a1", "buy", 3000, 300), ("bob", "b1", "sell", 2000, 120),
        ("carol", "c1", "sell", 2000, 100)]


def _commit_all(w):
    reveals = {}
    for who, oid, side, wh, price in BOOK:
        commit, opening = w.clients[who].sealed_bodies(
            "s1", order_id=oid, side=side, quantity_wh=wh, price_meur_per_kwh=price, interval=0)
        r = w.clients[who].request("POST", "/markets/s1/commits", commit)
        assert r.status_code == 201, r.text
        reveals[who] = opening
    return reveals


def test_sealed_session_clears_the_revealed_orders_only_with_the_lab_code(sealed):
    w = sealed
    reveals = _commit_all(w)
    # the commitment hides the order: no order is stored or visible before the reveals
    assert w.clients["alice"].get("/markets/s1/orders/a1").status_code == 404
    assert _tick(w, w.t0 + GATE_MS) == []
    assert w.operator.get("/sessions/s1").json()["state"] == "reveal"
    for who in ("alice", "bob"):  # carol, the cheapest seller, never reveals
        r = w.clients[who].request("POST", "/markets/s1/reveals", reveals[who])
        assert r.status_code == 201, r.text
    assert _tick(w, w.t0 + REVEAL_MS) == ["s1"]
    kept = BOOK[:2]
    lab = clear(OrderBatch.from_arrays(
        order_id=[o[1] for o in kept], participant=[o[0] for o in kept],
        side=[o[2] for o in kept], quantity_kwh=[o[3] / 1000 for o in kept],
        price_eur_per_kwh=[o[4] / 1000 for o in kept]), "uniform")
    trades = w.operator.get("/markets/s1/trades").json()
    assert [(x["buyer"], x["seller"], x["quantity_wh"]) for x in trades] == [
        ("alice", "bob", round(lab.trade_quantity_kwh[0] * 1000))]
    assert abs(trades[0]["price_meur_per_kwh"] - lab.trade_price_eur_per_kwh[0] * 1000) <= 0.5
    m = w.http.app.state.market
    rejections = [e["payload"] for e in m.ledger.entries("rejection")]
    assert [(x["reason"], x["participant"]) for x in rejections] == [("unrevealed", "carol")]
    assert w.operator.get("/markets/s1/budget").json()["balanced"]
    report = verify_ledger(w.url)
    assert report.ok, report.problem


def test_commits_reveals_and_orders_outside_their_windows_are_refused_nothing_stored(sealed):
    w = sealed
    alice, bob = w.clients["alice"], w.clients["bob"]
    reveals = _commit_all(w)
    before = _stored(w)
    # a plain order in a sealed-bid session
    r = alice.submit_order("s1", order_id="plain", side="buy", quantity_wh=10,
                           price_meur_per_kwh=1, interval=0)
    assert r.status_code == 409 and "sealed-bid" in r.json()["detail"]
    # a reveal in the commit window
    r = alice.request("POST", "/markets/s1/reveals", reveals["alice"])
    assert r.status_code == 409 and "reveal window" in r.json()["detail"]
    assert _stored(w) == before
    # a commit after the commit window (before and after the scheduler's gate closure)
    late, _ = bob.sealed_bodies("s1", order_id="b2", side="sell", quantity_wh=10,
                                price_meur_per_kwh=1, interval=0)
    w.clock.now_ms = w.t0 + GATE_MS
    r = bob.request("POST", "/markets/s1/commits", late)
    assert r.status_code == 409 and "commit window" in r.json()["detail"]
    _tick(w, w.t0 + GATE_MS)
    after_gate = _stored(w)
    late, _ = bob.sealed_bodies("s1", order_id="b3", side="sell", quantity_wh=10,
                                price_meur_per_kwh=1, interval=0)
    assert bob.request("POST", "/markets/s1/commits", late).status_code == 409
    # a reveal after the reveal window, before the scheduler ran
    w.clock.now_ms = w.t0 + REVEAL_MS
    r = alice.request("POST", "/markets/s1/reveals", reveals["alice"])
    assert r.status_code == 409 and "reveal window" in r.json()["detail"]
    assert _stored(w) == after_gate


def test_mismatching_reveals_are_refused_nothing_stored(sealed):
    w = sealed
    alice, bob = w.clients["alice"], w.clients["bob"]
    reveals = _commit_all(w)
    _tick(w, w.t0 + GATE_MS)
    before = _stored(w)
    # alice reveals another price than she committed to (re-signed: a valid but false reveal)
    p = dict(reveals["alice"]["payload"], nonce="other")
    p["order"] = dict(p["order"], price_meur_per_kwh=999)
    r = alice.request("POST", "/markets/s1/reveals", alice.signed_record(p))
    assert r.status_code == 409 and "commitment" in r.json()["detail"], r.text
    # bob opens with alice's salt (his own order: matches no commitment of his)
    p = dict(reveals["bob"]["payload"], salt=reveals["alice"]["payload"]["salt"], nonce="x")
    r = bob.request("POST", "/markets/s1/reveals", bob.signed_record(p))
    assert r.status_code == 409
    # bob posts alice's reveal: not his record
    r = bob.request("POST", "/markets/s1/reveals", reveals["alice"])
    assert r.status_code == 403
    assert _stored(w) == before
    assert not list(w.http.app.state.market.ledger.entries("rejection"))
    # the true reveal is still accepted afterwards
    assert alice.request("POST", "/markets/s1/reveals", reveals["alice"]).status_code == 201


def test_bad_sealed_bodies_are_4xx_naming_the_field(sealed):
    w = sealed
    alice = w.clients["alice"]
    commit, _ = alice.sealed_bodies("s1", order_id="a9", side="buy", quantity_wh=10,
                                    price_meur_per_kwh=1, interval=0)
    commit["payload"]["commitment"] = "zz"
    r = alice.request("POST", "/markets/s1/commits", commit)
    assert r.status_code == 422 and any("commitment" in e["loc"] for e in r.json()["detail"])
    now = w.clock.now_ms
    for body, field in (({"reveal_ms": now + 1}, "reveal_ms"),
                        ({"mechanism": "continuous"}, "mechanism")):
        r = w.operator.request("POST", "/sessions/sealed", {
            "market_id": "s2", "interval": 0, "gate_ms": now + 10, "reveal_ms": now + 20, **body})
        assert r.status_code == 422 and field in str(r.json()["detail"]), r.text
    r = w.operator.request("POST", "/sessions/sealed", {
        "market_id": "s1", "interval": 0, "gate_ms": now + 10, "reveal_ms": now + 20})
    assert r.status_code == 409
