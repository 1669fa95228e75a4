"""Order intake: idempotency, validation naming the field, cancel, status, a session's life on a
simulated clock, proofs and `lemgrid ledger verify` on the server's database."""

from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner

from lemgrid.cli import app as cli
from lemgrid.ledger.proofs import check_proof
from lemgrid.ledger.verify import verify_ledger
from lemgrid.market import OrderBatch, clear


def _order(c, market, order_id, side, wh, price, **kw):
    return c.submit_order(market, order_id=order_id, side=side, quantity_wh=wh,
                          price_meur_per_kwh=price, interval=0, **kw)


def test_same_idempotency_key_same_body_gives_the_first_answer_other_body_409(world):
    alice = world.join("alice")
    world.session("s1")
    body = alice.order_body("s1", order_id="o1", side="buy", quantity_wh=1000,
                            price_meur_per_kwh=250, interval=0)
    first = alice.request("POST", "/markets/s1/orders", body, idempotency_key="k1")
    assert first.status_code == 201, first.text
    again = alice.request("POST", "/markets/s1/orders", body, idempotency_key="k1")
    assert (again.status_code, again.json()) == (201, first.json())
    other = alice.order_body("s1", order_id="o2", side="buy", quantity_wh=1000,
                             price_meur_per_kwh=250, interval=0)
    conflict = alice.request("POST", "/markets/s1/orders", other, idempotency_key="k1")
    assert conflict.status_code == 409 and "Idempotency-Key" in conflict.json()["detail"]
    assert alice.get("/markets/s1/orders/o2").status_code == 404  # nothing stored
    assert world.http.app.state.market.ledger.state.spending.orders.keys() == {("s1", "o1")}


def test_invalid_bodies_are_422_naming_the_field(world):
    alice = world.join("alice")
    world.session("s1")
    good = alice.order_body("s1", order_id="o1", side="buy", quantity_wh=1000,
                            price_meur_per_kwh=250, interval=0)
    for field, value in [("quantity_wh", -5), ("quantity_wh", 1.5), ("side", "hold"),
                         ("interval", "soon"), ("price_meur_per_kwh", "cheap")]:
        bad = json.loads(json.dumps(good))
        bad["payload"][field] = value
        r = alice.request("POST", "/markets/s1/orders", bad)
        assert r.status_code == 422, (field, r.text)
        assert any(field in e["loc"] for e in r.json()["detail"]), r.json()
    missing = json.loads(json.dumps(good))
    del missing["payload"]["nonce"]
    r = alice.request("POST", "/markets/s1/orders", missing)
    assert r.status_code == 422 and ["body", "payload", "nonce"] == r.json()["detail"][0]["loc"]
    r = alice.request("POST", "/markets/s2/orders", good)  # path market differs from payload
    assert r.status_code == 422 and "market_id" in r.json()["detail"]


def test_session_life_clears_with_the_lab_code_and_settles_balanced(world):
    names = ["alice", "bob", "carol", "dave"]
    clients = {n: world.join(n) for n in names}
    world.session("s1", mechanism="uniform")
    book = [("alice", "a1", "buy", 3000, 300), ("bob", "b1", "buy", 2000, 220),
            ("carol", "c1", "sell", 2500, 150), ("dave", "d1", "sell", 4000, 210),
            ("alice", "a2", "buy", 1000, 100)]
    for who, oid, side, wh, price in book:
        assert _order(clients[who], "s1", oid, side, wh, price).status_code == 201
    assert clients["alice"].cancel("s1", "a2").status_code == 200
    assert clients["alice"].get("/markets/s1/orders/a2").json()["status"] == "cancelled"
    world.close("s1")
    # the lab's uniform auction on the same (uncancelled) orders, in kWh and EUR
    kept = book[:4]
    lab = clear(OrderBatch.from_arrays(
        order_id=[o[1] for o in kept], participant=[o[0] for o in kept],
        side=[o[2] for o in kept], quantity_kwh=[o[3] / 1000 for o in kept],
        price_eur_per_kwh=[o[4] / 1000 for o in kept]), "uniform")
    trades = world.operator.get("/markets/s1/trades").json()
    assert len(trades) == len(lab.trade_quantity_kwh) > 0
    for tr, q, p in zip(trades, lab.trade_quantity_kwh, lab.trade_price_eur_per_kwh):
        assert tr["quantity_wh"] == round(q * 1000) and abs(tr["price_meur_per_kwh"] - p * 1000) <= 0.5
    for i, (who, *_rest) in enumerate(kept):
        st = clients[who].get(f"/markets/s1/statements/{who}").json()
        assert abs(st["amount_ueur"] / 1e6 - lab.cash_flow_eur[i]) < 0.005  # to the cent
    assert world.operator.get("/markets/s1/budget").json() == {
        "market_id": "s1", "sum_amount_ueur": 0, "balanced": True}
    # after gate closure: refused, nothing stored
    r = _order(clients["bob"], "s1", "late", "buy", 1000, 300)
    assert r.status_code == 409 and "gate" in r.json()["detail"]
    assert clients["bob"].get("/markets/s1/orders/late").status_code == 404


def test_checkpoints_proofs_and_ledger_verify_on_the_server_database(world):
    alice, bob = world.join("alice"), world.join("bob")
    world.session("s1")
    world.session("s2", gate_in_ms=1_800_000)
    assert _order(alice, "s1", "a1", "buy", 1000, 300).status_code == 201
    assert _order(bob, "s1", "b1", "sell", 1000, 100).status_code == 201
    world.close("s1")
    assert _order(alice, "s2", "a2", "buy", 1000, 300).status_code == 201
    world.close("s2")
    cps = alice.get("/ledger/checkpoints").json()
    assert len(cps) == 2 and all(c["payload"]["label"].startswith("session ") for c in cps)
    proof = alice.get("/ledger/inclusion/5").json()
    assert check_proof(proof).ok and proof["leaf_index"] == 5
    consistency = alice.get(f"/ledger/consistency?first={cps[0]['seq']}&second={cps[1]['seq']}")
    assert consistency.status_code == 200 and check_proof(consistency.json()).ok
    report = verify_ledger(world.url)
    assert report.ok and report.checkpoints == 2, report.problem
    result = CliRunner().invoke(cli, ["ledger", "verify", world.url])
    assert result.exit_code == 0, result.output


def test_one_group_commit_answers_each_order_on_its_own(world):
    """Orders committed in one transaction: a refused one is answered with its error, the others
    are kept; a retry in the same group gets the first answer, another body 409."""
    from lemgrid.ledger.records import SignedRecord
    from lemgrid.service.operator import Refused

    alice, bob = world.join("alice"), world.join("bob")
    world.session("s1")
    market = world.http.app.state.market

    def item(c, order_id, idem, nonce):
        body = c.order_body("s1", order_id=order_id, side="buy", quantity_wh=1000,
                            price_meur_per_kwh=250, interval=0, nonce=nonce)
        return market.check_order(market.identity_by_key(c.key_id), "s1",
                                  SignedRecord(body["payload"], body["signer"], body["sig"]),
                                  idem, order_id + nonce)

    group = [item(alice, "a1", "k1", "n1"), item(alice, "a2", "k2", "n1"),  # replayed nonce
             item(bob, "b1", "k1", "n1"), item(alice, "a1", "k1", "n1"),  # a retry
             item(alice, "a3", "k1", "n3")]  # the key again, another body
    market.commit_orders(group)
    assert group[0].answer.result()[0] == 201
    with pytest.raises(Refused) as replay:
        group[1].answer.result()
    assert replay.value.status == 409 and "replay" in replay.value.detail
    assert group[2].answer.result()[0] == 201  # another key's k1
    assert group[3].answer.result() == group[0].answer.result()
    with pytest.raises(Refused, match="Idempotency-Key"):
        group[4].answer.result()
    assert {k[1] for k in market.ledger.state.spending.orders} == {"a1", "b1"}
    assert world.operator.get("/markets/s1/orders/a2").status_code == 404
    assert world.operator.get("/markets/s1/orders/b1").status_code == 200
