"""Sealed bids: commit before gate closure, reveal after; bad reveals rejected and recorded."""

from __future__ import annotations

import hashlib

import pytest
import rfc8785

from lemgrid.errors import InputError
from lemgrid.ledger.identity import sign_record
from lemgrid.ledger.sealed import commitment_digest, reveal, seal
from lemgrid.ledger.verify import verify_ledger

GATE = {"kind": "gate-closure", "market_id": "m", "interval": 1}


def test_commitment_is_sha256_of_the_documented_jcs_object():
    order = {"kind": "order", "market_id": "m", "interval": 1, "participant": "alice"}
    salt = "ab" * 32
    expected = hashlib.sha256(b"lemgrid-commit/v1\x00" + rfc8785.dumps(
        {"interval": 1, "market_id": "m", "order": order, "participant": "alice",
         "salt": salt})).hexdigest()
    assert commitment_digest(order, salt) == expected
    assert commitment_digest(order, "cd" * 32) != expected  # the salt hides equal orders


def test_full_commit_reveal_round(world):
    orders = {p: world.order(p, f"{p}-1", side="sell" if p in ("alice", "bob") else "buy",
                             quantity_wh=900).payload for p in world.keys}
    sealed = {p: seal(o, world.keys[p], nonce=f"c-{p}") for p, o in orders.items()}
    world.ledger.append([commit for commit, _ in sealed.values()])
    assert not world.ledger.state.spending.orders  # nothing is visible yet
    world.ledger.append_operator([GATE])

    good = [reveal(orders[p], sealed[p][1], world.keys[p], f"r-{p}") for p in ("alice", "bob")]
    wrong_salt = reveal(orders["carol"], "00" * 32, world.keys["carol"], "r-carol")
    changed = reveal({**orders["dave"], "quantity_wh": 901}, sealed["dave"][1], world.keys["dave"],
                     "r-dave")
    result = world.ledger.append([*good, wrong_salt, changed])
    assert len(result.rejected) == 2 and "matches no open commitment" in result.rejected[0]
    kinds = [e["payload"]["kind"] for e in world.ledger.entries()][-4:]
    assert kinds == ["reveal", "reveal", "rejection", "rejection"]
    assert set(world.ledger.state.spending.orders) == {("m", "alice-1"), ("m", "bob-1")}

    # Carol and Dave never reveal correctly: closing reveals rejects their commitments too.
    closed = world.ledger.close_reveals("m", 1)
    assert closed.size - closed.first_seq == 3  # two "unrevealed" rejections + the closure
    rejections = list(world.ledger.entries("rejection"))
    assert [r["payload"]["reason"] for r in rejections] == ["reveal-mismatch"] * 2 + \
        ["unrevealed"] * 2
    late = reveal(orders["carol"], sealed["carol"][1], world.keys["carol"], "r2-carol")
    with pytest.raises(InputError, match="reveals are closed"):
        world.ledger.append([late])
    world.ledger.checkpoint()
    assert verify_ledger(world.path).ok


def test_phase_rules(world):
    order = world.order("alice", "a1").payload
    commit, salt = seal(order, world.keys["alice"], nonce="c1")
    early = reveal(order, salt, world.keys["alice"], "r1")
    world.ledger.append([commit])
    with pytest.raises(InputError, match="gate is not closed yet"):
        world.ledger.append([early])
    world.ledger.append_operator([GATE])
    late_commit, _ = seal(world.order("bob", "b1").payload, world.keys["bob"], nonce="c2")
    with pytest.raises(InputError, match="gate is closed"):
        world.ledger.append([late_commit])
    with pytest.raises(InputError, match="gate is closed"):
        world.ledger.append([world.order("bob", "plain")])
    with pytest.raises(InputError, match="1 commitments are neither revealed nor rejected"):
        world.ledger.append_operator([{"kind": "reveal-closure", "market_id": "m", "interval": 1}])
    # someone else cannot open alice's commitment, even with her salt
    stolen = reveal({**order, "participant": "bob", "meter": "meter-bob"}, salt,
                    world.keys["bob"], "r-bob")
    assert world.ledger.append([stolen]).rejected
    world.ledger.append([early])
    with pytest.raises(InputError, match="replayed nonce"):
        world.ledger.append([early])


def test_a_revealed_sell_order_is_still_bounded_by_capability(world):
    order = world.order("alice", "big", quantity_wh=5001).payload
    commit, salt = seal(order, world.keys["alice"], nonce="c1")
    world.ledger.append([commit])
    world.ledger.append_operator([GATE])
    with pytest.raises(InputError, match="double spend"):
        world.ledger.append([reveal(order, salt, world.keys["alice"], "r1")])


def test_the_verifier_catches_an_unjustified_rejection(world):
    order = world.order("alice", "a1").payload
    commit, salt = seal(order, world.keys["alice"], nonce="c1")
    honest = reveal(order, salt, world.keys["alice"], "r1")
    world.ledger.append([commit])
    world.ledger.append_operator([GATE])
    # A dishonest operator rejects a valid reveal: the ledger's own rules refuse that entry ...
    false_rejection = {"kind": "rejection", "reason": "reveal-mismatch", "market_id": "m",
                       "interval": 1, "participant": "alice", "submission": honest.to_json()}
    with pytest.raises(InputError, match="the rejection is unjustified"):
        world.ledger.append([sign_record(world.operator, false_rejection)])
    # ... and an "unrevealed" rejection must name an open commitment.
    with pytest.raises(InputError, match="names no open commitment"):
        world.ledger.append_operator([{"kind": "rejection", "reason": "unrevealed",
                                       "market_id": "m", "interval": 1, "participant": "bob",
                                       "commitment": commit.payload["commitment"]}])


def _sealed_round(world):
    order = world.order("alice", "a1").payload
    commit, salt = seal(order, world.keys["alice"], nonce="c1")
    world.ledger.append([commit])
    world.ledger.append_operator([GATE])
    return order, salt


def test_a_soft_rejected_reveal_cannot_be_replayed(world):
    """The rejection entry spends the reveal's nonce: sending the same reveal again is a replay,
    refused whole, not one more rejection entry."""
    order, salt = _sealed_round(world)
    wrong = reveal(order, "00" * 32, world.keys["alice"], "r1")
    assert world.ledger.append([wrong]).rejected
    size = world.ledger.size
    for _ in range(3):
        with pytest.raises(InputError, match="replayed nonce 'r1'"):
            world.ledger.append([wrong])
    with pytest.raises(InputError, match=r"record 1 \(reveal\): replayed nonce 'r2'"):
        world.ledger.append([reveal(order, "11" * 32, world.keys["alice"], "r2")] * 2)
    assert world.ledger.size == size
    # the right reveal, with a fresh nonce, still opens the commitment
    world.ledger.append([reveal(order, salt, world.keys["alice"], "r3")])
    assert ("m", "a1") in world.ledger.state.spending.orders
    assert verify_ledger(world.path).ok


def test_a_mismatching_reveal_outside_the_reveal_phase_is_refused_not_recorded(world):
    order = world.order("alice", "a1").payload
    commit, salt = seal(order, world.keys["alice"], nonce="c1")
    world.ledger.append([commit])
    # the revealed order names another interval than the reveal: a mismatch, but too early
    early = reveal({**order, "interval": 2}, salt, world.keys["alice"], "r0")
    early = sign_record(world.keys["alice"], {**early.payload, "interval": 1})
    with pytest.raises(InputError, match="gate is not closed yet"):
        world.ledger.append([early])
    world.ledger.append_operator([GATE])
    world.ledger.close_reveals("m", 1)
    size = world.ledger.size
    for late in (reveal(order, "00" * 32, world.keys["alice"], "r1"),
                 sign_record(world.keys["alice"], {**early.payload, "nonce": "r2"})):
        with pytest.raises(InputError, match="reveals are closed"):
            world.ledger.append([late])
    assert world.ledger.size == size
    assert verify_ledger(world.path).ok
