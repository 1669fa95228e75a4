"""The authorisation matrix: every endpoint x role allowed or refused, and forged signatures,
replayed nonces, stale timestamps, another participant's meter or order, and orders after gate
closure all refused with nothing stored."""

from __future__ import annotations

import json

import pytest

ROLES = ("operator", "participant", "aggregator", "dso", "tso")


@pytest.fixture
def market(world):
    alice, bob = world.join("alice"), world.join("bob")
    world.clients["aggregator"] = world.join("agg", role="aggregator", members=["alice"])
    world.join("dso", role="dso", meter="grid")
    world.join("tso", role="tso", meter="transmission")
    world.clients["operator"] = world.operator
    world.session("s1")
    assert alice.submit_order("s1", order_id="a1", side="buy", quantity_wh=1000,
                              price_meur_per_kwh=300, interval=0).status_code == 201
    assert bob.submit_order("s1", order_id="b1", side="sell", quantity_wh=1000,
                            price_meur_per_kwh=100, interval=0).status_code == 201
    return world


def _stored(world) -> tuple:
    """Everything that counts as stored: ledger size and the rows of the server's tables."""
    m = world.http.app.state.market
    import sqlalchemy as sa

    from lemgrid.service import grid
    from lemgrid.service import tables as t
    with m.engine.connect() as conn:
        rows = tuple(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                     for table in (t.orders, t.sessions, t.capabilities, t.trades,
                                   t.statements, t.idempotency, *t.DELIVERY_TABLES,
                                   *t.SEALED_TABLES, *t.COMMUNITY_TABLES, grid.lights,
                                   grid.offers, grid.activations, grid.days,
                                   grid.tso_requests, grid.reservations))
    return m.ledger.size, rows


#: endpoint -> roles allowed. {who} is the role's own participant name.
MATRIX = {
    ("POST", "/sessions"): {"operator"},
    ("POST", "/capabilities"): {"operator", "dso"},
    ("POST", "/markets/s1/orders"): {"participant", "aggregator"},
    ("GET", "/markets/s1/orders/a1"): {"operator", "aggregator", "participant"},
    ("POST", "/markets/s1/cancel"): {"participant", "aggregator"},
    ("POST", "/admin/tick"): {"operator"},
    ("GET", "/markets/s1/trades"): set(ROLES),
    ("GET", "/markets/s1/statements/alice"): {"operator", "aggregator", "participant"},
    ("GET", "/markets/s1/budget"): {"operator", "dso", "tso"},
    ("GET", "/ledger/checkpoints"): set(ROLES),
    ("GET", "/identities/me"): set(ROLES),
    ("GET", "/sessions/s1"): set(ROLES),
    ("POST", "/identities/nobody/approve"): {"operator"},
    ("POST", "/markets/s1/metering"): {"operator"},
    ("POST", "/markets/s1/readings"): {"participant"},
    ("GET", "/markets/s1/delivery-statements/alice"): {"operator", "aggregator", "participant"},
    ("GET", "/markets/s1/delivery-budget"): {"operator", "dso", "tso"},
    ("POST", "/sessions/sealed"): {"operator"},
    ("POST", "/markets/s1/commits"): {"participant"},
    ("POST", "/markets/s1/reveals"): {"participant"},
    # The DSO's grid endpoints (404 here: this market's scenario has no DSO; the grid's own
    # market is in test_service_grid.py).
    ("GET", "/grid/lights"): {"operator", "dso", "tso"},
    ("GET", "/grid/requests"): set(ROLES),
    ("POST", "/grid/offers"): {"participant", "aggregator"},
    ("GET", "/grid/offers"): {"operator", "dso", "participant", "aggregator"},
    ("GET", "/grid/activations"): {"operator", "dso", "participant", "aggregator"},
    ("GET", "/grid/reservations"): {"operator", "dso", "participant", "aggregator"},
    ("POST", "/grid/days/0/clear"): {"operator", "dso"},
    ("POST", "/grid/days/0/delivery"): {"operator", "dso"},
    ("POST", "/grid/tso-requests"): {"tso"},
    ("GET", "/grid/tso-requests"): {"operator", "dso", "tso"},
    # Community sessions (lemgrid.service.community; their own tests in
    # test_service_community.py).
    ("POST", "/community/sessions"): {"operator"},
    ("POST", "/markets/s1/community-bids"): {"participant"},
    ("GET", "/markets/s1/community/alice"): {"operator", "aggregator", "participant"},
}


def _body(world, role, method, path):
    c = world.clients["alice" if role == "participant" else role]
    if path == "/sessions":
        return {"market_id": f"new-{role}", "interval": 0, "gate_ms": world.clock.now_ms + 1}
    if path == "/sessions/sealed":
        return {"market_id": f"sealed-{role}", "interval": 0, "gate_ms": world.clock.now_ms + 1,
                "reveal_ms": world.clock.now_ms + 2}
    if path.endswith(("/commits", "/reveals")):
        c.participant, c.meter = (c.participant or role), (c.meter or "x")
        commit, opening = c.sealed_bodies("s1", order_id=f"sealed-{role}", side="buy",
                                          quantity_wh=10, price_meur_per_kwh=1, interval=0)
        return commit if path.endswith("/commits") else opening
    if path == "/capabilities":
        return {"participant": "alice", "interval": 5, "sellable_wh": 10}
    if path.endswith("/orders"):
        c.participant, c.meter = (c.participant or role), (c.meter or "x")
        body = c.order_body("s1", order_id=f"new-{role}", side="buy", quantity_wh=10,
                            price_meur_per_kwh=1, interval=0)
        if role == "aggregator":  # it acts for its member alice
            body = c.signed_record({**body["payload"], "participant": "alice",
                                    "meter": "meter-alice"})
        return body
    if path == "/community/sessions":
        return {"market_id": f"community-{role}", "interval": 0, "n_intervals": 1,
                "dt_h": "0.25", "gate_ms": world.clock.now_ms + 1, "members": ["alice"],
                "bus": [0], "prices": dict.fromkeys((
                    "import_eur_per_kwh", "network_eur_per_kwh", "export_eur_per_kwh",
                    "local_network_eur_per_kwh", "levies_eur_per_kwh", "fixed_eur_per_day",
                    "imbalance_short_eur_per_kwh", "imbalance_long_eur_per_kwh"), "0.1"),
                "curtailment_eur_per_kwh": "0.05", "battery_wear_eur_per_kwh": "0.001"}
    if path.endswith("/community-bids"):
        c.participant, c.meter = (c.participant or role), (c.meter or "x")
        return c.community_bid_body("s1", interval=0, bid={
            "load_kw": ["1.0"], "pv_kw": ["0.0"], "assets": {}})
    if path.endswith("/metering"):
        return {"readings_deadline_ms": world.clock.now_ms + 10**7}
    if path.endswith("/readings"):
        c.participant, c.meter = (c.participant or role), (c.meter or "x")
        return c.reading_body("s1", interval=0, import_wh=10, export_wh=0)
    if path == "/grid/offers":
        return c.flex_offer_body(offer_id=f"f-{role}", interval=0, resource="battery", asset=0,
                                 direction="up", power_w=1000, price_meur_per_kwh=50,
                                 meter=c.meter or "x")
    if path == "/grid/tso-requests" and method == "POST":
        return {"request_id": f"r-{role}", "interval": 0, "direction": "up", "power_w": 1000,
                "max_price_meur_per_kwh": 100}
    if path.endswith("/cancel"):
        owner = "alice" if role == "aggregator" else c.participant or role
        return c.signed_record({"kind": "cancel", "log_id": c.log_id, "market_id": "s1",
                                "order_id": "a1", "participant": owner,
                                "nonce": f"c-{role}"})
    return None


@pytest.mark.parametrize("endpoint", sorted(MATRIX), ids=lambda e: f"{e[0]} {e[1]}")
def test_every_endpoint_by_every_role(market, endpoint):
    method, path = endpoint
    for role in ROLES:
        client = market.clients["alice" if role == "participant" else role]
        body = _body(market, role, method, path)
        before = _stored(market)
        r = client.request(method, path, body)
        if role in MATRIX[endpoint]:
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)
            assert _stored(market) == before, role
    anonymous = market.operator.request(method, path, _body(market, "operator", method, path),
                                        signed=False)
    assert anonymous.status_code == 401


def test_another_participants_order_and_statement_are_unreachable(market):
    bob = market.clients["bob"]
    assert bob.get("/markets/s1/orders/a1").status_code == 404
    assert market.clients["aggregator"].get("/markets/s1/orders/b1").status_code == 404  # not a member
    market.close("s1")
    assert bob.get("/markets/s1/statements/alice").status_code == 403
    assert market.clients["aggregator"].get("/markets/s1/statements/bob").status_code == 403
    assert market.clients["aggregator"].get("/markets/s1/statements/alice").status_code == 200
    mine = bob.get("/markets/s1/trades").json()
    assert mine and all("bob" in (t["buyer"], t["seller"]) for t in mine)
    before = _stored(market)
    assert bob.cancel("s1", "a1").status_code in (403, 404, 409)
    assert _stored(market) == before


def _order_request(c, order_id="x1", **over):
    body = c.order_body("s1", order_id=order_id, side="buy", quantity_wh=500,
                        price_meur_per_kwh=250, interval=0)
    body["payload"].update(over)
    return body


def test_forged_replayed_stale_and_foreign_meter_requests_are_refused_nothing_stored(market):
    alice, bob = market.clients["alice"], market.clients["bob"]
    path = "/markets/s1/orders"
    before = _stored(market)
    body = _order_request(alice)
    data = json.dumps(body).encode()
    # forged request signature (bob's key claims alice's key id)
    headers = bob.headers("POST", path, data)
    headers["X-Lemgrid-Key"] = alice.key_id
    r = market.http.post(path, content=data, headers={**headers,
                                                      "content-type": "application/json"})
    assert r.status_code == 401 and "Signature" in r.json()["detail"]
    # a signature over another body
    headers = alice.headers("POST", path, data)
    other = json.dumps(_order_request(alice, "x2")).encode()
    r = market.http.post(path, content=other, headers={**headers,
                                                       "content-type": "application/json"})
    assert r.status_code == 401
    # stale and future timestamps
    for skew in (-120_000, 120_000):
        r = alice.request("POST", path, body, timestamp_ms=market.clock.now_ms + skew)
        assert r.status_code == 401 and "Timestamp" in r.json()["detail"]
    # an order signature that does not verify (body altered after signing)
    forged = _order_request(alice, "x3")
    forged["payload"]["quantity_wh"] = 9_000
    r = alice.request("POST", path, forged)
    assert r.status_code == 403 and "signature" in r.json()["detail"]
    # another participant's meter, another participant's name
    for field, value in (("meter", "meter-bob"), ("participant", "bob")):
        r = alice.request("POST", path, _order_request(alice, f"x-{field}", **{field: value}))
        assert r.status_code == 403 and field in r.json()["detail"], r.text
    assert _stored(market) == before
    # replayed request (same headers, same body): the first is accepted, the copy refused
    headers = {**alice.headers("POST", path, data), "content-type": "application/json"}
    assert market.http.post(path, content=data, headers=headers).status_code == 201
    after_first = _stored(market)
    r = market.http.post(path, content=data, headers=headers)
    assert r.status_code == 401 and "Nonce" in r.json()["detail"]
    # replayed order nonce under a fresh request signature
    again = alice.order_body("s1", order_id="x9", side="buy", quantity_wh=500,
                             price_meur_per_kwh=250, interval=0, nonce=body["payload"]["nonce"])
    r = alice.request("POST", path, again)
    assert r.status_code == 409 and "replay" in r.json()["detail"]
    assert _stored(market) == after_first


def test_orders_after_gate_closure_are_refused_nothing_stored(market):
    market.clock.now_ms = market.operator.get("/sessions/s1").json()["gate_ms"]
    before = _stored(market)
    r = market.clients["alice"].request("POST", "/markets/s1/orders",
                                        _order_request(market.clients["alice"], "late"))
    assert r.status_code == 409 and "gate" in r.json()["detail"]
    assert _stored(market) == before
    market.close("s1")
    r = market.clients["alice"].request("POST", "/markets/s1/orders",
                                        _order_request(market.clients["alice"], "later"))
    assert r.status_code == 409
