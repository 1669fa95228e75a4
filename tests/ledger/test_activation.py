"""Activation signals: a device acts only on a genuine, published activation addressed to it,
once."""

from __future__ import annotations

import copy

import pytest

from lemgrid.errors import InputError
from lemgrid.ledger.activation import ActivationRefused, DeviceGuard, activation_proof
from lemgrid.ledger.identity import generate_key, public_bytes, sign_record
from lemgrid.ledger.identity import PublicKey
from lemgrid.ledger.store import Ledger

from .conftest import make_world

DEVICE = "alice/battery-0"


def _activation(activation_id: str, device: str = DEVICE, power_w: int = 3000) -> dict:
    return {"kind": "flex-activation", "activation_id": activation_id, "offer_id": "o1",
            "provider": "alice", "interval": 1, "direction": "down", "power_w": power_w,
            "price_meur_per_kwh": 120, "buyer": "DSO", "utilisation_ueur": 90_000,
            "device": device}


@pytest.fixture
def signals(tmp_path):
    w = make_world(tmp_path)
    w.ledger.append_operator([_activation("a1"), _activation("a2", device="bob/ev-0")])
    w.ledger.checkpoint(label="activations", timestamp_ms=1_000)
    w.ledger.append_operator([_activation("a3")])  # logged but not yet checkpointed
    log_id, key = w.ledger.log_id, PublicKey(public_bytes(w.operator))
    w.ledger.close()
    guard = DeviceGuard(DEVICE, log_id, key)
    return w, guard


def test_a_genuine_signal_is_accepted_once(signals):
    w, guard = signals
    proof = activation_proof(w.path, "a1")
    accepted = guard.accept(proof)
    assert (accepted.activation_id, accepted.direction, accepted.power_w) == ("a1", "down", 3000)
    with pytest.raises(ActivationRefused, match="already acted on") as exc:
        guard.accept(proof)
    assert exc.value.reason == "replay"
    # The same activation proven against a later checkpoint is still a replay.
    with Ledger.open(w.path, w.operator) as ledger:
        ledger.checkpoint(timestamp_ms=2_000)
    later = activation_proof(w.path, "a1")
    assert later["checkpoint"] != proof["checkpoint"]
    with pytest.raises(ActivationRefused) as exc:
        guard.accept(later)
    assert exc.value.reason == "replay"


def test_signals_not_for_this_device_or_log_are_refused(signals):
    w, guard = signals
    with pytest.raises(ActivationRefused) as exc:
        guard.accept(activation_proof(w.path, "a2"))
    assert exc.value.reason == "other-device"
    other = DeviceGuard(DEVICE, "ab" * 32, guard.log_key)
    with pytest.raises(ActivationRefused) as exc:
        other.accept(activation_proof(w.path, "a1"))
    assert exc.value.reason == "other-log"
    with Ledger.open(w.path) as ledger:
        order = ledger.inclusion_proof(2)  # a key registration, no activation
    with pytest.raises(ActivationRefused) as exc:
        guard.accept(order)
    assert exc.value.reason == "not-an-activation"
    with pytest.raises(ActivationRefused) as exc:
        guard.accept({"entry": "x"})
    assert exc.value.reason == "malformed"


def test_a_changed_signal_fails_the_signature(signals):
    w, guard = signals
    proof = activation_proof(w.path, "a1")
    forged = copy.deepcopy(proof)
    forged["entry"]["payload"]["power_w"] = 9000
    with pytest.raises(ActivationRefused) as exc:
        guard.accept(forged)
    assert exc.value.reason == "bad-signature"
    assert "a1" not in guard.acted_on  # nothing remembered from a refused signal
    assert guard.accept(proof).power_w == 3000


def test_a_signal_signed_by_another_key_is_refused(signals):
    w, guard = signals
    proof = activation_proof(w.path, "a1")
    intruder = generate_key()
    signed = sign_record(intruder, proof["entry"]["payload"])
    proof["entry"]["signer"], proof["entry"]["sig"] = signed.signer, signed.sig
    with pytest.raises(ActivationRefused) as exc:
        guard.accept(proof)
    assert exc.value.reason == "bad-signature"


def test_an_unpublished_or_wrongly_proven_signal_is_refused(signals):
    w, guard = signals
    # a3 is signed and logged, but no checkpoint covers it yet: no proof can be had.
    with pytest.raises(InputError, match="not covered by a checkpoint"):
        activation_proof(w.path, "a3")
    # A signed activation with a proof that does not lead to the signed root.
    proof = activation_proof(w.path, "a1")
    proof["audit_path"][0] = "00" * 32
    with pytest.raises(ActivationRefused) as exc:
        guard.accept(proof)
    assert exc.value.reason == "not-published"
    # A proof whose checkpoint is signed by another key than the pinned one.
    proof = activation_proof(w.path, "a1")
    proof["checkpoint"]["sig"] = "00" * 64
    with pytest.raises(ActivationRefused) as exc:
        guard.accept(proof)
    assert exc.value.reason == "not-published"
    with pytest.raises(InputError, match="no flex-activation"):
        activation_proof(w.path, "zz")
