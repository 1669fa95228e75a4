"""Activation signals to devices: a DSO activation as a signed ledger record, checked on the device.

The operator logs each activation as a ``flex-activation`` record addressed to a device (its
``device`` field), signed with the log key, and covers it with a signed checkpoint. It sends the
device the record's inclusion proof (:func:`activation_proof`). Before acting, the device
(:class:`DeviceGuard`, small enough for a gateway or a smart meter) checks, with nothing but the
operator's public key it was given and the log it belongs to:

1. the record is a ``flex-activation`` addressed to this device, in this log;
2. its signature verifies with the pinned operator key (so nobody else can order it about);
3. the inclusion proof leads from the record to a checkpoint signed by that key (so the
   operator cannot send a signal it does not publish: the activation is in the log everyone
   audits, and paid or penalised by it);
4. it has not acted on the activation before (replay): a recorded signal sent again, or the same
   activation proven against a later checkpoint, is refused.

A refused signal raises :class:`ActivationRefused` naming the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lemgrid.errors import InputError
from lemgrid.ledger.identity import PublicKey, key_id, signature_valid, signing_message
from lemgrid.ledger.proofs import check_proof
from lemgrid.ledger.store import Ledger


class ActivationRefused(InputError):
    """A device refused an activation signal; ``reason`` is one word, the message says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Activation:
    """An activation a device accepted."""

    activation_id: str
    interval: int | str
    direction: str
    power_w: int
    seq: int


def activation_proof(ledger_path: str | Path, activation_id: str) -> dict[str, Any]:
    """The inclusion proof of a logged ``flex-activation`` (to send to its device)."""
    with Ledger.open(ledger_path) as ledger:
        for entry in ledger.entries("flex-activation"):
            if entry["payload"]["activation_id"] == activation_id:
                return ledger.inclusion_proof(int(entry["seq"]))
    raise InputError(f"activation_id: no flex-activation {activation_id!r} in {ledger_path}")


@dataclass
class DeviceGuard:
    """The device side: accepts an activation only if it is genuine, published and new.

    Parameters
    ----------
    device : str
        This device's id, as the operator addresses it (``provider/asset``).
    log_id : str
        The log the device listens to (64 hex digits).
    log_key : PublicKey
        The operator's public key, pinned when the device was enrolled.
    """

    device: str
    log_id: str
    log_key: PublicKey
    acted_on: set[str] = field(default_factory=set)

    def accept(self, proof: Any) -> Activation:
        """Check an activation signal (an inclusion proof of its record) and remember it.

        Raises
        ------
        ActivationRefused
            With ``reason`` one of ``malformed``, ``not-an-activation``, ``other-device``,
            ``other-log``, ``bad-signature``, ``not-published``, ``replay``.
        """
        if type(proof) is not dict or type(proof.get("entry")) is not dict \
                or type(proof["entry"].get("payload")) is not dict:
            raise ActivationRefused("signal: not an inclusion proof of a ledger entry",
                                    "malformed")
        entry = proof["entry"]
        payload = entry["payload"]
        if payload.get("kind") != "flex-activation":
            raise ActivationRefused(f"signal: a {payload.get('kind')!r} record is no activation",
                                    "not-an-activation")
        if payload.get("device") != self.device:
            raise ActivationRefused(f"device: the activation is addressed to "
                                    f"{payload.get('device')!r}, not to {self.device!r}",
                                    "other-device")
        if proof.get("log_id") != self.log_id:
            raise ActivationRefused(f"log_id: the signal comes from log {proof.get('log_id')!r}, "
                                    f"not from {self.log_id}", "other-log")
        try:
            message = signing_message(payload, "signal.payload")
        except InputError as exc:
            raise ActivationRefused(str(exc), "malformed") from None
        if entry.get("signer") != key_id(self.log_key) or type(entry.get("sig")) is not str \
                or not signature_valid(self.log_key, entry["sig"], message):
            raise ActivationRefused("sig: the activation is not signed by the operator's key",
                                    "bad-signature")
        try:
            check = check_proof(proof, self.log_key)
        except InputError as exc:
            raise ActivationRefused(f"signal: {exc}", "malformed") from None
        if not check.ok or proof["checkpoint"]["payload"].get("log_id") != self.log_id:
            raise ActivationRefused(f"proof: {check.message}", "not-published")
        activation_id = payload["activation_id"]
        if activation_id in self.acted_on:
            raise ActivationRefused(f"activation_id: {activation_id!r} was already acted on",
                                    "replay")
        self.acted_on.add(activation_id)
        return Activation(activation_id, payload["interval"], payload["direction"],
                          int(payload["power_w"]), int(entry["seq"]))
