"""Proofs checked without the database, and the ``lemgrid ledger`` commands end to end."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from lemgrid.cli import app
from lemgrid.errors import InputError
from lemgrid.ledger.identity import generate_key, public_bytes, public_key_from_hex
from lemgrid.ledger.proofs import check_proof
from lemgrid.ledger.store import default_witness_path

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["ledger", *map(str, args)])


@pytest.fixture
def checkpointed(world):
    world.ledger.append([world.order(p, f"o-{p}") for p in world.keys])
    world.ledger.checkpoint(timestamp_ms=1)
    world.ledger.append([world.order("alice", "o2", side="buy")])
    world.ledger.checkpoint(timestamp_ms=2)
    return world


def test_inclusion_proofs_of_every_entry_verify_and_tampered_ones_do_not(checkpointed):
    ledger = checkpointed.ledger
    key = public_key_from_hex(ledger.operator_public_key_hex)
    for seq in range(ledger.size - 1):
        proof = ledger.inclusion_proof(seq)
        assert check_proof(proof, key).ok, seq
    proof = ledger.inclusion_proof(10)
    assert proof["tree_size"] == 15  # the latest checkpoint covering entry 10
    tampered = copy.deepcopy(proof)
    tampered["entry"]["payload"]["quantity_wh"] += 1
    assert not check_proof(tampered, key).ok
    tampered = copy.deepcopy(proof)
    tampered["audit_path"][0] = "00" * 32
    assert not check_proof(tampered, key).ok
    tampered = copy.deepcopy(proof)
    tampered["checkpoint"]["payload"]["root_hash"] = "11" * 32
    assert "signature does not verify" in check_proof(tampered, key).message
    other = public_key_from_hex(public_bytes(generate_key()).hex())
    assert not check_proof(proof, other).ok
    assert check_proof(proof).ok and "pin it" in check_proof(proof).message
    earlier = ledger.entry(ledger.state.checkpoints[0].seq)
    assert "differs from the checkpoint given" in check_proof(proof, key, earlier).message
    with pytest.raises(InputError, match="not a lemgrid proof"):
        check_proof({"format": "x"})
    with pytest.raises(InputError, match="entry index must be in"):
        ledger.inclusion_proof(99)
    with pytest.raises(InputError, match="not covered by a checkpoint yet"):
        ledger.append([checkpointed.order("bob", "o3", side="buy")])
        ledger.inclusion_proof(ledger.size - 1)


def test_consistency_proofs(checkpointed):
    ledger = checkpointed.ledger
    first, second = (c.seq for c in ledger.state.checkpoints)
    doc = ledger.consistency_proof(first, second)
    assert check_proof(doc).ok
    bad = copy.deepcopy(doc)
    bad["consistency_path"][-1] = "22" * 32
    assert not check_proof(bad).ok
    with pytest.raises(InputError, match="is not a checkpoint"):
        ledger.consistency_proof(first, 3)


def test_cli_proof_and_check_proof(checkpointed, tmp_path):
    path = checkpointed.path
    checkpointed.ledger.close()
    out = tmp_path / "proof.json"
    assert _run("proof", path, 10, "--out", out).exit_code == 0
    key = json.loads(out.read_text())["log_key"]
    ok = _run("check-proof", out, "--log-key", key)
    assert ok.exit_code == 0 and "VALID: entry 10 (order) is included" in ok.output
    witness_line = default_witness_path(path).read_text().splitlines()[0]
    cp = tmp_path / "cp.json"
    cp.write_text(witness_line)
    assert _run("check-proof", out, "--checkpoint", cp).exit_code == 1  # a later checkpoint
    assert _run("proof", path, 10, "--checkpoint", 13, "--out", out).exit_code == 0
    assert _run("check-proof", out, "--checkpoint", cp).exit_code == 0
    assert "not a checkpoint covering" in _run("proof", path, 10, "--checkpoint", 12).output
    doc = json.loads(out.read_text())
    doc["audit_path"].reverse()
    out.write_text(json.dumps(doc))
    bad = _run("check-proof", out, "--log-key", key)
    assert bad.exit_code == 1 and "INVALID" in bad.output
    printed = _run("consistency", path, 13, 15)
    assert printed.exit_code == 0
    (tmp_path / "c.json").write_text(printed.stdout)
    assert _run("check-proof", tmp_path / "c.json").exit_code == 0
    for args, message in ((("proof", path, 77), "entry index must be in 0..15"),
                          (("proof", tmp_path / "none.db", 1), "does not exist"),
                          (("check-proof", tmp_path / "none.json"), "does not exist"),
                          (("check-proof", cp, "--log-key", "beef"), "neither 64 hex digits")):
        result = _run(*args)
        assert result.exit_code == 2 and message in result.output, result.output


def test_cli_keygen_init_sign_append_and_rejections(tmp_path):
    path, alice_pem = tmp_path / "l.db", tmp_path / "alice.pem"
    assert _run("init", path).exit_code == 0
    assert _run("keygen", alice_pem).exit_code == 0
    registered = _run("register", path, "alice", "--meter", "bus-3", "--key", alice_pem)
    assert registered.exit_code == 0 and "as entry 1" in registered.output, registered.output
    again = _run("register", path, "alice", "--meter", "bus-3", "--key", alice_pem)
    assert again.exit_code == 2 and "already registered" in again.output
    from lemgrid.ledger.identity import Keystore
    from lemgrid.ledger.integration import default_keystore_path
    operator = Keystore.load(default_keystore_path(path)).operator
    payload = {"kind": "order", "market_id": "m", "interval": 4, "order_id": "a1",
               "participant": "alice", "meter": "bus-3", "side": "buy", "quantity_wh": 1500,
               "price_meur_per_kwh": 210, "nonce": "n1"}
    (tmp_path / "order.json").write_text(json.dumps(payload))
    unbound = _run("sign", tmp_path / "order.json", "--key", alice_pem)
    assert unbound.exit_code == 2 and "log_id: missing; pass --log" in unbound.output
    signed = _run("sign", tmp_path / "order.json", "--key", alice_pem, "--log", path)
    assert signed.exit_code == 0, signed.output
    records = tmp_path / "records.jsonl"
    records.write_text(signed.stdout)
    appended = _run("append", path, records)
    assert appended.exit_code == 0 and "appended 1 entries" in appended.output

    replay = _run("append", path, records)
    assert replay.exit_code == 2 and "replayed nonce 'n1'" in replay.output
    forged = json.loads(signed.stdout)
    forged["payload"]["quantity_wh"] = 15000
    records.write_text(json.dumps(forged) + "\n")
    wrong = _run("append", path, records)
    assert wrong.exit_code == 2 and "does not verify" in wrong.output
    (tmp_path / "float.json").write_text(json.dumps({**payload, "quantity_wh": 1.5}))
    assert "quantity_wh: invalid" in _run("sign", tmp_path / "float.json", "--key",
                                          alice_pem, "--log", path).output
    (tmp_path / "bad.pem").write_text("garbage")
    bad_key = _run("sign", tmp_path / "order.json", "--key", tmp_path / "bad.pem", "--log", path)
    assert bad_key.exit_code == 2 and "not a PEM private key" in bad_key.output
    records.write_text("{not json\n")
    assert "line 1: not valid JSON" in _run("append", path, records).output

    assert _run("checkpoint", path, "--label", "gate 4").exit_code == 0
    shown = _run("show", path)
    assert shown.exit_code == 0 and "order: 1" in shown.output
    verified = _run("verify", path, "--log-key", public_bytes(operator).hex())
    assert verified.exit_code == 0, verified.output
    # nothing was half-written by the refused appends
    assert "4 entries" in verified.output


def test_integers_beyond_2_53_in_a_witness_or_a_proof_are_named_errors(checkpointed, tmp_path):
    path = checkpointed.path
    checkpointed.ledger.close()
    huge = 2**53 + 1
    witness = tmp_path / "witness.jsonl"
    line = json.loads(default_witness_path(path).read_text().splitlines()[0])
    line["payload"]["tree_size"] = huge
    witness.write_text(json.dumps(line) + "\n")
    result = _run("verify", path, "--witness", witness)
    assert result.exit_code == 2, result.output
    assert "line 1: payload.tree_size: integer 9007199254740993 is outside" in result.output
    out = tmp_path / "proof.json"
    assert _run("proof", path, 3, "--out", out).exit_code == 0
    for field in ("checkpoint", "entry"):
        doc = json.loads(out.read_text())
        doc[field]["payload"]["tree_size" if field == "checkpoint" else "quantity_wh"] = huge
        bad = tmp_path / f"bad-{field}.json"
        bad.write_text(json.dumps(doc))
        result = _run("check-proof", bad)
        assert result.exit_code == 2, result.output
        assert f"error: proof.{field}.payload." in result.output
        assert "is outside the safe range" in result.output


def test_a_payload_kind_that_is_not_text_is_a_named_error(checkpointed, tmp_path):
    path = checkpointed.path
    checkpointed.ledger.close()
    key = tmp_path / "k.pem"
    assert _run("keygen", key).exit_code == 0
    for kind in ([], {}, ["order"]):
        payload = tmp_path / "p.json"
        payload.write_text(json.dumps({"kind": kind}))
        result = _run("sign", payload, "--key", key)
        assert result.exit_code == 2 and "kind: unknown record kind" in result.output, \
            result.output
        records = tmp_path / "r.jsonl"
        records.write_text(json.dumps({"payload": {"kind": kind}, "signer": "0" * 32,
                                       "sig": "0" * 128}) + "\n")
        result = _run("append", path, records)
        assert result.exit_code == 2 and "kind: unknown record kind" in result.output, \
            result.output
