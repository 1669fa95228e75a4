"""Appending signed records: rejections are clear and leave nothing half-written."""

from __future__ import annotations

import sqlite3

import pytest

from lemgrid.errors import InputError
from lemgrid.ledger.identity import generate_key, registration_payload, sign_record
from lemgrid.ledger.journal import Rejection
from lemgrid.ledger.records import RecordError, SignedRecord
from lemgrid.ledger.store import Ledger
from lemgrid.ledger.verify import verify_ledger


def _snapshot(world):
    tables = ("entries", "nonces", "orders", "trades", "settled_trades")
    return (world.ledger.size, world.ledger.root(), tuple(world.rows(t) for t in tables),
            len(world.ledger.state.nonces), len(world.ledger.state.spending.orders))


def _rejected(world, records, match):
    """The batch is refused with ``match`` and nothing changes, in memory or on disk."""
    before = _snapshot(world)
    with pytest.raises(InputError, match=match):
        world.ledger.append(records)
    assert _snapshot(world) == before


def test_accepts_signed_orders_and_reopens_to_the_same_state(world):
    result = world.ledger.append([world.order("alice", "o1"), world.order("bob", "o2", "buy")])
    assert (result.first_seq, result.size) == (9, 11)
    world.ledger.close()
    with Ledger.open(world.path) as reopened:
        assert reopened.size == 11 and reopened.root().hex() == result.root_hex
        assert reopened.entry(9)["payload"]["order_id"] == "o1"
        assert ("m", "o2") in reopened.state.spending.orders
    assert verify_ledger(world.path).ok


def test_bad_signature_is_rejected_and_the_whole_batch_with_it(world):
    good = world.order("alice", "o1")
    forged = world.order("bob", "o2")
    forged = SignedRecord({**forged.payload, "quantity_wh": 9}, forged.signer, forged.sig)
    _rejected(world, [good, forged], r"record 1 \(order\): signature of key .* does not verify")
    mallory = generate_key()  # signs as bob with another key
    _rejected(world, [sign_record(mallory, world.order("bob", "o3").payload)],
              "is not registered")
    _rejected(world, [world.order("bob", "o4", key=world.keys["alice"])],
              "belongs to 'alice', not to 'bob'")


def test_replayed_nonce_and_reused_order_id_are_rejected(world):
    first = world.order("alice", "o1", nonce="n-1")
    world.ledger.append([first])
    _rejected(world, [first], "replayed nonce 'n-1'")
    _rejected(world, [world.order("alice", "o2", nonce="n-1")], "replayed nonce 'n-1'")
    _rejected(world, [world.order("alice", "o1")], "order id 'o1' already used")
    # the same nonce twice inside one batch
    _rejected(world, [world.order("bob", "b1", nonce="x"), world.order("bob", "b2", nonce="x")],
              r"record 1 \(order\): replayed nonce")


def test_revoked_key_can_no_longer_sign(world):
    alice = world.keys["alice"]
    world.ledger.append([world.order("alice", "o1")])
    revocation = sign_record(alice, {"kind": "key-revocation", "log_id": world.ledger.log_id,
                                     "key_id": world.order("alice", "x").signer,
                                     "reason": "lost laptop", "nonce": "r1"})
    world.ledger.append([revocation])
    _rejected(world, [world.order("alice", "o2")], "was revoked at entry 10")
    # a new key for the same participant and meter works
    new_key = generate_key()
    world.ledger.append_operator([registration_payload(new_key, "alice", "meter-alice",
                                                       world.ledger.log_id)])
    world.ledger.append([world.order("alice", "o3", key=new_key)])
    assert verify_ledger(world.path).ok


def test_registration_rules(world):
    other = generate_key()
    log = world.ledger.log_id
    moved = registration_payload(other, "alice", "elsewhere", log)
    _rejected(world, [sign_record(world.operator, moved)], "bound to meter 'meter-alice'")
    forged_pop = registration_payload(other, "erin", "m-e", log)
    forged_pop["pop_sig"] = registration_payload(generate_key(), "erin", "m-e", log)["pop_sig"]
    _rejected(world, [sign_record(world.operator, forged_pop)], "proof of possession")
    _rejected(world, [sign_record(world.keys["alice"], registration_payload(other, "erin", "m-e",
                                                                            log))],
              "must be signed by the log operator")
    _rejected(world, [sign_record(world.operator, registration_payload(world.keys["bob"], "erin",
                                                                       "m-e", log))],
              "already registered")


def test_orders_must_name_the_signers_meter_and_follow_the_schema(world):
    rec = world.order("alice", "o1")
    bad_meter = {**rec.payload, "meter": "meter-bob"}
    _rejected(world, [sign_record(world.keys["alice"], bad_meter)], "bound to meter")
    for change, match in ((("quantity_wh", 0), "quantity_wh: invalid"),
                          (("side", "hold"), "side: invalid"),
                          (("price_meur_per_kwh", 0.2), "price_meur_per_kwh: invalid"),
                          (("extra", 1), "extra: unknown field")):
        payload = {**rec.payload, change[0]: change[1]}
        _rejected(world, [SignedRecord(payload, rec.signer, rec.sig)], match)
    with pytest.raises(RecordError, match="signer: must be a key id"):
        SignedRecord.from_json({"payload": {}, "signer": "nope", "sig": "00" * 64})


def test_operator_records_need_the_operator_key(world):
    world.ledger.close()
    with Ledger.open(world.path) as ledger:
        with pytest.raises(InputError, match="needs the operator key"):
            ledger.checkpoint()
    with pytest.raises(InputError, match="operator key given is"):
        Ledger.open(world.path, generate_key())
    world.ledger = Ledger.open(world.path, world.operator)


def test_tables_are_append_only(world):
    world.ledger.append([world.order("alice", "o1")])  # so that every table has rows
    conn = sqlite3.connect(world.path)
    for sql in ("UPDATE entries SET kind = 'x' WHERE seq = 1", "DELETE FROM entries WHERE seq = 1",
                "DELETE FROM nonces", "UPDATE meta SET value = 'x'"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_open_refuses_missing_and_corrupt_files(tmp_path, world):
    with pytest.raises(InputError, match="does not exist"):
        Ledger.open(tmp_path / "none.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="not a lemgrid ledger"):
        Ledger.open(junk)
    with pytest.raises(InputError, match="already exists"):
        Ledger.create(world.path, world.operator)


def test_checkpoint_rules(world):
    cp = world.ledger.checkpoint(timestamp_ms=2_000)
    assert cp["payload"]["tree_size"] == cp["seq"] == 9
    root = world.ledger.root()
    _rejected(world, [sign_record(world.operator, {**cp["payload"], "tree_size": 5})],
              "must cover the 10 entries")
    stale = {**cp["payload"], "tree_size": 10, "timestamp_ms": 3_000}
    _rejected(world, [sign_record(world.operator, stale)], "is not the root")
    back = {**cp["payload"], "tree_size": 10, "root_hash": root.hex(), "timestamp_ms": 1_000}
    _rejected(world, [sign_record(world.operator, back)], "back in time")


def test_rejection_carries_the_batch_position(world):
    bad = world.order("bob", "b")
    bad = SignedRecord({**bad.payload, "price_meur_per_kwh": 1.5}, bad.signer, bad.sig)
    with pytest.raises(Rejection) as info:
        world.ledger.append([world.order("alice", "a"), bad])
    assert info.value.index == 1 and info.value.code == "bad-record"


def test_entries_of_a_second_writer_are_replayed_before_appending(world):
    """Two Ledger objects (as two processes) append in turn: each first replays what the other
    wrote, inside its write transaction, so the rules see the whole log."""
    other = Ledger.open(world.path, world.operator)
    other.append([world.order("alice", "o1", nonce="shared")])
    other.close()
    with pytest.raises(InputError, match="replayed nonce 'shared'"):
        world.ledger.append([world.order("alice", "o2", nonce="shared")])
    result = world.ledger.append([world.order("bob", "o2")])
    assert (result.first_seq, result.size) == (10, 11)
    assert ("m", "o1") in world.ledger.state.spending.orders
    assert verify_ledger(world.path).ok


@pytest.mark.parametrize("spelling", [str.upper, lambda sig: sig[:64] + " " + sig[64:],
                                      lambda sig: " ".join(sig[i:i + 2] for i in range(0, 128, 2))])
def test_a_signature_in_another_spelling_is_refused_at_append(world, spelling):
    """Uppercase or spaced hex decodes to the same valid signature, but the stored entry would be
    refused by verify for ever after: append accepts only the canonical lowercase form."""
    good = world.order("alice", "o1")
    odd = SignedRecord(good.payload, good.signer, spelling(good.sig))
    _rejected(world, [odd], r"record 0: record\.sig: must be an Ed25519 signature \(128 lowercase")
    odd_signer = SignedRecord(good.payload, good.signer.upper(), good.sig)
    _rejected(world, [odd_signer], r"record\.signer: must be a key id")
    world.ledger.append([good])
    assert verify_ledger(world.path).ok


def test_an_order_signed_for_one_log_is_refused_by_another(world, tmp_path):
    """The same participant key registered in two logs: an order signed for the first cannot be
    replayed into the second, nor can the first log's proof of possession register the key in
    the second without its holder."""
    alice = world.keys["alice"]
    other = Ledger.create(tmp_path / "other.db", world.operator)
    try:
        copied = next(e for e in world.ledger.entries("key-registration")
                      if e["payload"]["participant"] == "alice")["payload"]
        with pytest.raises(InputError, match="proof of possession does not verify"):
            other.append_operator([copied])
        other.append_operator([registration_payload(alice, "alice", "meter-alice",
                                                    other.log_id)])
        order = world.order("alice", "o1", side="buy")
        world.ledger.append([order])
        with pytest.raises(InputError, match=r"record 0 \(order\): log_id: the record was signed "
                                             f"for log {world.ledger.log_id}, not for this log"):
            other.append([order])
        assert other.size == 2
    finally:
        other.close()
    assert verify_ledger(world.path).ok and verify_ledger(tmp_path / "other.db").ok
