"""Check inclusion and consistency proofs against signed checkpoints alone (no database).

An inclusion proof document (``lemgrid-inclusion-proof/1``) carries the entry, its audit path and
the signed checkpoint it leads to; a consistency proof document (``lemgrid-consistency-proof/1``)
carries two signed checkpoints and the path between them. Checking one needs nothing else, but it
is only as good as the trust in the checkpoint: pin the operator key (``log_key``) and, better,
compare the checkpoint with one obtained independently (a witness, the chain anchor) by passing it
as ``checkpoint``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lemgrid.errors import InputError
from lemgrid.ledger.canonical import CanonicalError, canonical_bytes
from lemgrid.ledger.identity import (
    PublicKey,
    key_id,
    public_bytes,
    public_key_from_hex,
    signature_valid,
    signing_message,
)
from lemgrid.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from lemgrid.ledger.records import SignedRecord, validate_payload
from lemgrid.ledger.store import CONSISTENCY_FORMAT, INCLUSION_FORMAT


@dataclass(frozen=True)
class ProofCheck:
    """Outcome of :func:`check_proof`: ``ok`` and a one-line explanation."""

    ok: bool
    message: str


def _hashes(values: Any, field: str) -> list[bytes]:
    if type(values) is not list:
        raise InputError(f"proof.{field}: must be a list of 64-hex-digit hashes")
    try:
        hashes = [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(f"proof.{field}: must be a list of 64-hex-digit hashes") from None
    if any(len(h) != 32 for h in hashes):
        raise InputError(f"proof.{field}: every hash must be 32 bytes (64 hex digits)")
    return hashes


def _checkpoint(obj: Any, field: str, key: PublicKey) -> dict:
    """Validate a signed checkpoint entry; returns its payload (raises _Invalid if unsigned)."""
    record = SignedRecord.from_json(obj, f"proof.{field}")
    if validate_payload(record.payload, f"proof.{field}.payload") != "checkpoint":
        raise InputError(f"proof.{field}: not a checkpoint")
    message = signing_message(record.payload, f"proof.{field}.payload")
    if record.signer != key_id(key) or not signature_valid(key, record.sig, message):
        raise _Invalid(f"{field}: checkpoint signature does not verify with log key "
                       f"{public_bytes(key).hex()}")
    if obj.get("seq") != record.payload["tree_size"]:
        raise _Invalid(f"{field}: checkpoint is not the entry right after the tree it signs")
    return record.payload


class _Invalid(Exception):
    pass


def check_proof(doc: Any, log_key: PublicKey | None = None,
                checkpoint: dict | None = None) -> ProofCheck:
    """Verify a proof document produced by ``Ledger.inclusion_proof`` or ``consistency_proof``.

    Parameters
    ----------
    doc : dict
        The proof document (parsed JSON).
    log_key : PublicKey, optional
        The operator key to trust. Without it the key embedded in the proof is used, which only
        shows that the proof is internally consistent.
    checkpoint : dict, optional
        A checkpoint entry obtained independently; the proof's (second) checkpoint must equal it.

    Returns
    -------
    ProofCheck

    Raises
    ------
    InputError
        If the document is malformed (not a proof at all).
    """
    if type(doc) is not dict or doc.get("format") not in (INCLUSION_FORMAT, CONSISTENCY_FORMAT):
        raise InputError(f"not a lemgrid proof (format must be {INCLUSION_FORMAT!r} or "
                         f"{CONSISTENCY_FORMAT!r})")
    pinned = log_key is not None
    if log_key is None:
        if type(doc.get("log_key")) is not str:
            raise InputError("proof.log_key: missing")
        log_key = public_key_from_hex(doc["log_key"], "proof.log_key")
    trust = "" if pinned else " (against the key the proof carries; pin it with --log-key)"
    last = "checkpoint" if doc["format"] == INCLUSION_FORMAT else "second"
    if checkpoint is not None and doc.get(last) != checkpoint:
        return ProofCheck(False, "the proof's checkpoint differs from the checkpoint given")
    try:
        if doc["format"] == INCLUSION_FORMAT:
            return _check_inclusion(doc, log_key, trust)
        return _check_consistency(doc, log_key, trust)
    except _Invalid as exc:
        return ProofCheck(False, str(exc))
    except KeyError as exc:
        raise InputError(f"proof.{exc.args[0]}: missing") from None


def _check_inclusion(doc: dict, log_key: PublicKey, trust: str) -> ProofCheck:
    cp = _checkpoint(doc["checkpoint"], "checkpoint", log_key)
    index, size = doc["leaf_index"], doc["tree_size"]
    if type(index) is not int or type(size) is not int:
        raise InputError("proof.leaf_index and proof.tree_size must be integers")
    if size != cp["tree_size"]:
        return ProofCheck(False, f"proof is for a tree of {size} entries, the checkpoint signs "
                                 f"{cp['tree_size']}")
    entry = doc["entry"]
    if type(entry) is not dict or entry.get("seq") != index:
        return ProofCheck(False, f"entry does not carry position {index}")
    try:
        data = canonical_bytes(entry, "proof.entry")
    except CanonicalError as exc:
        raise InputError(str(exc)) from None
    path = _hashes(doc["audit_path"], "audit_path")
    if not verify_inclusion(leaf_hash(data), index, size, path, bytes.fromhex(cp["root_hash"])):
        return ProofCheck(False, f"entry {index} is NOT included in the checkpointed tree of "
                                 f"{size} entries (audit path does not lead to root "
                                 f"{cp['root_hash']})")
    return ProofCheck(True, f"entry {index} ({entry['payload'].get('kind')}) is included in the "
                            f"log {cp['log_id'][:16]}... of {size} entries, root "
                            f"{cp['root_hash']}{trust}")


def _check_consistency(doc: dict, log_key: PublicKey, trust: str) -> ProofCheck:
    first = _checkpoint(doc["first"], "first", log_key)
    second = _checkpoint(doc["second"], "second", log_key)
    if first["log_id"] != second["log_id"]:
        return ProofCheck(False, "the two checkpoints belong to different logs")
    path = _hashes(doc["consistency_path"], "consistency_path")
    if not verify_consistency(first["tree_size"], second["tree_size"],
                              bytes.fromhex(first["root_hash"]),
                              bytes.fromhex(second["root_hash"]), path):
        return ProofCheck(False, f"the tree of {second['tree_size']} entries does NOT extend "
                                 f"the tree of {first['tree_size']} entries")
    return ProofCheck(True, f"the log of {second['tree_size']} entries (root "
                            f"{second['root_hash']}) extends its first {first['tree_size']} "
                            f"entries (root {first['root_hash']}){trust}")
