"""Aggregators act for their members (registered with them and approved by the operator, or the
scenario's) and for nobody else, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key
from lemgrid.ledger.verify import verify_ledger
from lemgrid.service.app import create_app
from lemgrid.service.engine import MarketSpec
from tests.service.conftest import Clock, World


def _stored(world) -> tuple:
    from lemgrid.service import tables as t

    return world.stored(t.orders, t.meter_readings, t.idempotency)


def _order_for(agg, member, meter, order_id, side="buy", wh=1000, price=300):
    body = agg.order_body("s1", order_id=order_id, side=side, quantity_wh=wh,
                          price_meur_per_kwh=price, interval=0)
    return agg.signed_record({**body["payload"], "participant": member, "meter": meter})


def _cancel_for(agg, member, order_id):
    return agg.signed_record({"kind": "cancel", "log_id": agg.log_id, "market_id": "s1",
                              "order_id": order_id, "participant": member,
                              "nonce": f"c-{order_id}"})


def test_an_aggregator_submits_cancels_and_reads_for_its_members_only(world):
    alice, bob = world.join("alice"), world.join("bob")
    agg = world.join("agg", role="aggregator", members=["alice"])
    world.session("s1")
    path = "/markets/s1/orders"
    r = agg.request("POST", path, _order_for(agg, "alice", "meter-alice", "a1"))
    assert r.status_code == 201, r.text
    r = agg.request("POST", path, _order_for(agg, "alice", "meter-alice", "a2"))
    assert r.status_code == 201, r.text
    m = world.http.app.state.market
    mandates = [e["payload"] for e in m.ledger.entries("mandate")]
    assert mandates == [{"kind": "mandate", "aggregator": "agg", "participant": "alice"}]
    assert agg.get("/markets/s1/orders/a1").json()["participant"] == "alice"
    assert alice.get("/markets/s1/orders/a1").status_code == 200  # the member sees it too
    assert agg.request("POST", "/markets/s1/cancel", _cancel_for(agg, "alice", "a2")
                       ).status_code == 200
    assert alice.get("/markets/s1/orders/a2").json()["status"] == "cancelled"
    # nobody else: not a non-member, not itself, not a member with another meter
    for member, meter in (("bob", "meter-bob"), ("agg", "meter-agg"),
                          ("alice", "meter-bob")):
        r = agg.request("POST", path, _order_for(agg, member, meter, f"x-{member}-{meter}"))
        assert r.status_code == 403 and "payload." in r.json()["detail"], r.text
    assert agg.get("/markets/s1/orders/x-bob-meter-bob").status_code == 404
    assert bob.submit_order("s1", order_id="b1", side="sell", quantity_wh=1000,
                            price_meur_per_kwh=100, interval=0).status_code == 201
    before = _stored(world)
    assert agg.request("POST", "/markets/s1/cancel", _cancel_for(agg, "bob", "b1")
                       ).status_code == 403
    assert agg.get("/markets/s1/orders/b1").status_code == 404
    # an aggregator reads but does not post its members' meter readings
    reading = agg.reading_body("s1", interval=0, import_wh=1, export_wh=0)
    reading = agg.signed_record({**reading["payload"], "participant": "alice",
                                 "meter": "meter-alice"})
    assert agg.request("POST", "/markets/s1/readings", reading).status_code == 403
    assert _stored(world) == before
    world.close("s1")
    assert agg.get("/markets/s1/statements/alice").status_code == 200
    assert agg.get("/markets/s1/statements/bob").status_code == 403
    assert [(x["buyer"], x["seller"]) for x in agg.get("/markets/s1/trades").json()] == [
        ("alice", "bob")]
    report = verify_ledger(world.url)
    assert report.ok, report.problem


def test_the_ledger_refuses_an_aggregator_order_without_a_mandate(world):
    """The log itself, not only the server, decides who may sign for whom."""
    from lemgrid.ledger.journal import Rejection
    from lemgrid.ledger.records import SignedRecord

    world.join("alice")
    agg = world.join("agg", role="aggregator", members=["alice"])
    world.session("s1")
    body = _order_for(agg, "alice", "meter-alice", "a1")
    m = world.http.app.state.market
    with pytest.raises(Rejection) as exc:
        m.ledger.append([SignedRecord(body["payload"], body["signer"], body["sig"])])
    assert exc.value.code == "not-owner"


def test_a_scenario_aggregator_acts_for_the_participants_it_represents(db_url):
    clock = Clock()
    operator_key = generate_key()
    spec = MarketSpec(frozenset({"meter-alice", "meter-bob"}), "uniform",
                      aggregators={"agg-ev": frozenset({"bob"})})
    http = TestClient(create_app(db_url, operator_key, clock_ms=clock, spec=spec))
    operator = MarketClient("", operator_key, transport=http, clock_ms=clock)
    w = World(db_url, http, clock, operator)
    try:
        w.join("alice"), w.join("bob")
        agg = w.join("agg-ev", role="aggregator", meter="agg")
        w.session("s1")
        path = "/markets/s1/orders"
        assert agg.request("POST", path, _order_for(agg, "bob", "meter-bob", "b1")
                           ).status_code == 201
        assert agg.request("POST", path, _order_for(agg, "alice", "meter-alice", "a1")
                           ).status_code == 403
    finally:
        http.close()
        http.app.state.market.engine.dispose()
