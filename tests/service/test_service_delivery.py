"""Signed meter readings, imbalance and statements of delivered sessions, settled by the lab's
settlement code, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lemgrid.ledger.verify import verify_ledger
from lemgrid.service.engine import default_prices
from lemgrid.settlement.bills import Positions, settle

DT_H = 0.25


def _stored(world) -> tuple:
    from lemgrid.service import tables as t

    return world.stored(t.meter_readings, t.delivery_statements, t.deliveries)


@pytest.fixture
def cleared(world):
    """alice buys 2 kWh from bob at the uniform price; carol only meters."""
    alice, bob, carol = world.join("alice"), world.join("bob"), world.join("carol")
    world.session("s1")
    assert alice.submit_order("s1", order_id="a1", side="buy", quantity_wh=2000,
                              price_meur_per_kwh=200, interval=0).status_code == 201
    assert bob.submit_order("s1", order_id="b1", side="sell", quantity_wh=2000,
                            price_meur_per_kwh=100, interval=0).status_code == 201
    world.close("s1")
    r = world.operator.request("POST", "/markets/s1/metering",
                               {"readings_deadline_ms": world.clock.now_ms + 3_600_000})
    assert r.status_code == 201, r.text
    return world


def test_statements_are_the_lab_settlement_of_trades_and_readings_and_balance(cleared):
    w = cleared
    # bob sold 2 kWh but exported only 1.5 (short 0.5); alice bought 2 and imported 2.5;
    # carol exported 0.8 without trading (all retail).
    readings = {"alice": (2500, 0), "bob": (0, 1500), "carol": (0, 800)}
    for name, (imp, exp) in readings.items():
        r = w.clients[name].submit_reading("s1", interval=0, import_wh=imp, export_wh=exp)
        assert r.status_code == 201, r.text
    w.clock.now_ms += 3_600_000
    assert "s1" in w.operator.request("POST", "/admin/tick").json()["settled"]
    trades = w.operator.get("/markets/s1/trades").json()
    assert [(x["buyer"], x["seller"], x["quantity_wh"]) for x in trades] == [("alice", "bob", 2000)]
    price = trades[0]["price_meur_per_kwh"] / 1000
    # the lab's settlement, computed here from the outside figures
    names = ["alice", "bob", "carol"]
    bought = np.array([[2.0, 0, 0]])
    sold = np.array([[0, 2.0, 0]])
    paid = np.array([[2.0 * price, -2.0 * price, 0]])
    z = np.zeros((1, 3))
    bill = settle(Positions((sold - bought) / DT_H, bought, sold, bought, sold, paid, z, z,
                            np.full(1, np.nan)),
                  np.array([[-2.5, 1.5, 0.8]]) / DT_H, default_prices(), DT_H)
    prices = default_prices()
    for i, name in enumerate(names):
        st = w.clients[name].get(f"/markets/s1/delivery-statements/{name}").json()
        assert st["participant"] == name
        assert st["imbalance_ueur"] == round(bill.imbalance_eur[0, i] * 1e6)
        assert st["network_ueur"] == round(bill.network_eur[0, i] * 1e6)
        assert abs(st["total_ueur"] / 1e6 - bill.cost_eur[0, i]) < 0.005  # to the cent
    bob = w.clients["bob"].get("/markets/s1/delivery-statements/bob").json()
    assert (bob["sold_wh"], bob["imbalance_short_wh"]) == (2000, 500)
    # hand-computed: bob's 0.5 kWh short at the short price (import + network by default)
    assert bob["imbalance_ueur"] == round(0.5 * prices.imbalance_short_eur_per_kwh * 1e6)
    alice = w.clients["alice"].get("/markets/s1/delivery-statements/alice").json()
    assert (alice["bought_wh"], alice["imbalance_short_wh"], alice["imbalance_long_wh"]) == (
        2000, 0, 0)
    # alice: 2 kWh at the local network charge, 0.5 kWh retail import with the network charge
    assert alice["network_ueur"] == round((2 * prices.local_network_eur_per_kwh
                                           + 0.5 * prices.network_eur_per_kwh) * 1e6)
    carol = w.clients["carol"].get("/markets/s1/delivery-statements/carol").json()
    assert carol["retail_energy_ueur"] == round(-0.8 * prices.export_eur_per_kwh * 1e6)
    budget = w.operator.get("/markets/s1/delivery-budget").json()
    assert budget["balanced"] and budget["budget_gap_ueur"] == 0
    # the ledger: readings, a balanced delivery-settlement, statements, a checkpoint; verifies
    m = w.http.app.state.market
    kinds = [e["payload"]["kind"] for e in m.ledger.entries()]
    assert kinds.count("meter-reading") == 3 and kinds.count("statement") == 3
    settlement = next(m.ledger.entries("delivery-settlement"))["payload"]
    assert sum(p["amount_ueur"] for p in settlement["postings"]) == 0
    report = verify_ledger(w.url)
    assert report.ok, report.problem
    # settled once: a second tick settles nothing, a late reading is refused
    assert w.operator.request("POST", "/admin/tick").json()["settled"] == []


def test_bad_readings_are_refused_nothing_stored(cleared):
    w = cleared
    alice, bob = w.clients["alice"], w.clients["bob"]
    before = _stored(w)
    path = "/markets/s1/readings"
    for field, value in (("import_wh", -1), ("export_wh", 1.5), ("import_wh", "NaN")):
        body = alice.reading_body("s1", interval=0, import_wh=1, export_wh=0)
        body["payload"][field] = value
        r = alice.request("POST", path, body)
        assert r.status_code == 422 and any(field in e["loc"] for e in r.json()["detail"]), r.text
    # a NaN in the raw JSON
    body = alice.reading_body("s1", interval=0, import_wh=1, export_wh=0)
    raw = json.dumps(body).replace('"import_wh": 1', '"import_wh": NaN').encode()
    headers = {**alice.headers("POST", path, raw), "content-type": "application/json"}
    assert w.http.post(path, content=raw, headers=headers).status_code == 422
    # another meter, another participant
    for field, value in (("meter", "meter-bob"), ("participant", "bob")):
        body = alice.reading_body("s1", interval=0, import_wh=1, export_wh=0)
        body["payload"][field] = value
        body = alice.signed_record(body["payload"])
        r = alice.request("POST", path, body)
        assert r.status_code == 403 and field in r.json()["detail"], r.text
    # wrong interval
    r = alice.submit_reading("s1", interval=3, import_wh=1, export_wh=0)
    assert r.status_code == 422 and "interval" in r.json()["detail"]
    assert _stored(w) == before
    # a duplicate (another nonce, same meter and session)
    assert alice.submit_reading("s1", interval=0, import_wh=1, export_wh=0).status_code == 201
    after_first = _stored(w)
    r = alice.submit_reading("s1", interval=0, import_wh=9, export_wh=0)
    assert r.status_code == 409 and "meter" in r.json()["detail"]
    assert _stored(w) == after_first
    # after the deadline
    w.clock.now_ms += 3_600_000
    r = bob.submit_reading("s1", interval=0, import_wh=0, export_wh=2000)
    assert r.status_code == 409 and "deadline" in r.json()["detail"]
    assert _stored(w) == after_first


def test_readings_before_clearing_are_refused(world):
    alice = world.join("alice")
    world.session("s1")
    r = alice.submit_reading("s1", interval=0, import_wh=1, export_wh=0)
    assert r.status_code == 409 and "metering" in r.json()["detail"]
    r = world.operator.request("POST", "/markets/s1/metering",
                               {"readings_deadline_ms": world.clock.now_ms - 1})
    assert r.status_code == 422 and "readings_deadline_ms" in r.json()["detail"]


def test_delivery_statements_only_for_their_owner_aggregator_and_operator(cleared):
    w = cleared
    agg = w.join("agg", role="aggregator", members=["alice"])
    dso = w.join("dso", role="dso", meter="grid")
    w.clock.now_ms += 3_600_000
    w.operator.request("POST", "/admin/tick")
    path = "/markets/s1/delivery-statements/alice"
    assert w.clients["alice"].get(path).status_code == 200
    assert agg.get(path).status_code == 200
    assert w.operator.get(path).status_code == 200
    assert w.clients["bob"].get(path).status_code == 403
    assert agg.get("/markets/s1/delivery-statements/bob").status_code == 403
    assert dso.get(path).status_code == 403
    assert dso.get("/markets/s1/delivery-budget").status_code == 200
    assert w.clients["bob"].get("/markets/s1/delivery-budget").status_code == 403


def test_ledger_metering_rules(tmp_path):
    """The ledger itself refuses a second reading of a meter, a reading of another meter, a
    reading after the delivery-settlement, an unbalanced or repeated delivery-settlement, and a
    statement before its delivery-settlement or twice (so `lemgrid ledger verify` would too)."""
    from lemgrid.ledger.identity import generate_key, key_id, registration_payload, sign_payload
    from lemgrid.ledger.journal import Rejection
    from lemgrid.ledger.records import SignedRecord
    from lemgrid.ledger.sqldb import make_engine
    from lemgrid.ledger.store import Ledger

    ledger = Ledger.create_sql(make_engine(f"sqlite:///{tmp_path / 'l.db'}"), generate_key())
    key = generate_key()
    ledger.append_operator([registration_payload(key, "alice", "m-a", ledger.log_id)])

    def reading(meter="m-a", nonce="n1"):
        p = {"kind": "meter-reading", "log_id": ledger.log_id, "market_id": "s1", "interval": 0,
             "participant": "alice", "meter": meter, "import_wh": 5, "export_wh": 0,
             "nonce": nonce}
        return SignedRecord(p, key_id(key), sign_payload(key, p))

    def refused(code, append, *args):
        size = ledger.size
        with pytest.raises(Rejection) as exc:
            append(*args)
        assert exc.value.code == code and ledger.size == size

    statement = {"kind": "statement", "market_id": "s1", "interval": 0, "participant": "alice",
                 **{k: 0 for k in ("bought_wh", "sold_wh", "metered_import_wh",
                                   "metered_export_wh", "imbalance_short_wh",
                                   "imbalance_long_wh", "market_ueur", "surplus_share_ueur",
                                   "retail_energy_ueur", "network_ueur", "imbalance_ueur",
                                   "levies_ueur", "fixed_ueur", "total_ueur")}}
    settlement = {"kind": "delivery-settlement", "market_id": "s1", "interval": 0,
                  "postings": [{"account": "alice", "amount_ueur": -10},
                               {"account": "operator:retailer", "amount_ueur": 10}]}
    refused("wrong-meter", ledger.append, [reading(meter="m-b")])
    ledger.append([reading()])
    refused("duplicate", ledger.append, [reading(nonce="n2")])
    refused("too-early", ledger.append_operator, [statement])
    refused("unbalanced", ledger.append_operator, [{**settlement, "postings": [
        {"account": "alice", "amount_ueur": -10}]}])
    ledger.append_operator([settlement, statement])
    refused("duplicate", ledger.append_operator, [settlement])
    refused("duplicate", ledger.append_operator, [statement])
    other = {"kind": "meter-reading", "log_id": ledger.log_id, "market_id": "s1",
             "interval": 0, "participant": "alice", "meter": "m-a", "import_wh": 1,
             "export_wh": 0, "nonce": "n3"}
    refused("too-late", ledger.append, [SignedRecord(other, key_id(key), sign_payload(key, other))])
