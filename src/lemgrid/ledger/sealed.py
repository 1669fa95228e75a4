"""Sealed bids by commit-reveal.

Before gate closure a participant publishes only a commitment

    commitment = SHA-256("lemgrid-commit/v1" 0x00 || JCS({"interval", "market_id", "order",
                                                          "participant", "salt"}))

with a fresh 256-bit salt, so the order stays hidden (hiding) and cannot be changed later (binding;
participant and interval are inside the hash, so a commitment cannot be replayed by someone else or
for another interval). After the operator's ``gate-closure`` record the participant reveals the
order and the salt. A reveal that matches none of its open commitments is rejected and the
rejection is recorded with the submitted reveal, so anyone can re-check it; at ``reveal-closure``
every commitment still open is rejected as unrevealed. Timing is by position in the log, not by
clock, so the verifier can check it.

References
----------
.. [1] M. Blum, "Coin flipping by telephone", 1981 (commitment schemes).
.. [2] H. S. Galal, A. M. Youssef, "Verifiable sealed-bid auction on the Ethereum blockchain",
   Financial Cryptography 2018 (commit-reveal auctions).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lemgrid.ledger.canonical import canonical_bytes
from lemgrid.ledger.identity import key_id, sign_payload
from lemgrid.ledger.journal import Journal, Rejection
from lemgrid.ledger.records import SignedRecord

_COMMIT_CONTEXT = b"lemgrid-commit/v1\x00"

OPEN, REVEALED, REJECTED = "open", "revealed", "rejected"


def commitment_digest(order: Mapping, salt_hex: str) -> str:
    """Commitment to an order: SHA-256 over the context string and the canonical JSON of
    ``{"interval", "market_id", "order", "participant", "salt"}``, as 64 hex digits.

    Parameters
    ----------
    order : dict
        The order payload (``kind == "order"``, integer units).
    salt_hex : str
        32 random bytes as 64 hex digits.
    """
    data = {"interval": order["interval"], "market_id": order["market_id"], "order": dict(order),
            "participant": order["participant"], "salt": salt_hex}
    return hashlib.sha256(_COMMIT_CONTEXT + canonical_bytes(data, "commitment")).hexdigest()


def seal(order: Mapping, key: Ed25519PrivateKey, nonce: str,
         salt_hex: str | None = None) -> tuple[SignedRecord, str]:
    """Make a signed ``commit`` record for an order; returns it and the salt to keep secret.

    Parameters
    ----------
    order : dict
        The order payload to commit to.
    key : Ed25519PrivateKey
        The participant's key.
    nonce : str
        Unique nonce of the commit record (replay protection).
    salt_hex : str, optional
        64 hex digits; a fresh random salt by default.
    """
    salt_hex = salt_hex or secrets.token_hex(32)
    payload = {"kind": "commit", "log_id": order["log_id"], "market_id": order["market_id"],
               "interval": order["interval"], "participant": order["participant"],
               "commitment": commitment_digest(order, salt_hex), "nonce": nonce}
    return SignedRecord(payload, key_id(key), sign_payload(key, payload)), salt_hex


def reveal(order: Mapping, salt_hex: str, key: Ed25519PrivateKey, nonce: str) -> SignedRecord:
    """Make a signed ``reveal`` record opening a commitment."""
    payload = {"kind": "reveal", "log_id": order["log_id"], "market_id": order["market_id"],
               "interval": order["interval"], "participant": order["participant"],
               "salt": salt_hex, "order": dict(order), "nonce": nonce}
    return SignedRecord(payload, key_id(key), sign_payload(key, payload))


class SealedBook:
    """Commitments per market interval and the phase of each interval."""

    def __init__(self, journal: Journal) -> None:
        self._j = journal
        # (market, interval) -> commitment -> [participant, state]
        self.commits: dict[tuple, dict[str, list]] = {}
        self.gate_closed: set[tuple] = set()
        self.reveal_closed: set[tuple] = set()

    def _phase_reveal(self, key: tuple) -> None:
        if key not in self.gate_closed:
            raise Rejection(f"market {key[0]!r} interval {key[1]!r}: gate is not closed yet, "
                            "nothing can be revealed", "too-early")
        if key in self.reveal_closed:
            raise Rejection(f"market {key[0]!r} interval {key[1]!r}: reveals are closed",
                            "too-late")

    def check_open_for_orders(self, market: str, interval: Any) -> None:
        """Plain (unsealed) orders and commitments are accepted only before gate closure."""
        if (market, interval) in self.gate_closed:
            raise Rejection(f"market {market!r} interval {interval!r}: gate is closed",
                            "too-late")

    def commit(self, p: Mapping) -> None:
        """Apply a ``commit`` record."""
        key = (p["market_id"], p["interval"])
        self.check_open_for_orders(*key)
        book = self.commits.get(key)
        if book is None:
            book = {}
            self._j.put(self.commits, key, book)
        if p["commitment"] in book:
            raise Rejection("commitment already recorded", "duplicate")
        self._j.put(book, p["commitment"], [p["participant"], OPEN])

    def close_gate(self, p: Mapping) -> None:
        """Apply a ``gate-closure`` record."""
        key = (p["market_id"], p["interval"])
        if key in self.gate_closed:
            raise Rejection(f"market {key[0]!r} interval {key[1]!r}: gate already closed",
                            "duplicate")
        self._j.add(self.gate_closed, key)

    def matching_commit(self, p: Mapping) -> str | None:
        """The open commitment of the reveal's participant that the reveal opens, if any."""
        key = (p["market_id"], p["interval"])
        digest = commitment_digest(p["order"], p["salt"])
        entry = self.commits.get(key, {}).get(digest)
        if entry is None or entry[0] != p["participant"] or entry[1] != OPEN:
            return None
        return digest

    def open_commit(self, p: Mapping) -> None:
        """Apply a ``reveal`` record; a mismatch is a soft rejection (recorded, not fatal).

        Outside the reveal phase (before gate closure, after reveal closure) a reveal is refused
        outright, whatever it holds: only a reveal made in time is recorded as a rejection.
        """
        self._phase_reveal((p["market_id"], p["interval"]))
        order = p["order"]
        for name in ("log_id", "market_id", "interval", "participant"):
            if order[name] != p[name]:
                raise Rejection(f"revealed order's {name} {order[name]!r} differs from the "
                                f"reveal's {p[name]!r}", "reveal-mismatch", soft=True)
        digest = self.matching_commit(p)
        if digest is None:
            raise Rejection("reveal matches no open commitment of this participant",
                            "reveal-mismatch", soft=True)
        self._set_state(p, digest, REVEALED)

    def _set_state(self, p: Mapping, digest: str, state: str) -> None:
        entry = self.commits[(p["market_id"], p["interval"])][digest]
        self._j.put(self.commits[(p["market_id"], p["interval"])], digest, [entry[0], state])

    def reject_unrevealed(self, p: Mapping) -> None:
        """Apply a ``rejection`` with reason ``unrevealed``."""
        key = (p["market_id"], p["interval"])
        self._phase_reveal(key)
        entry = self.commits.get(key, {}).get(p.get("commitment", ""))
        if entry is None or entry[0] != p["participant"] or entry[1] != OPEN:
            raise Rejection("unrevealed-rejection names no open commitment of this participant",
                            "bad-rejection")
        self._set_state(p, p["commitment"], REJECTED)

    def open_commitments(self, market: str, interval: Any) -> list[tuple[str, str]]:
        """(commitment, participant) of the commitments not yet revealed or rejected."""
        return [(digest, entry[0]) for digest, entry in self.commits.get((market, interval),
                                                                         {}).items()
                if entry[1] == OPEN]

    def close_reveals(self, p: Mapping) -> None:
        """Apply a ``reveal-closure`` record: every commitment must be resolved by now."""
        key = (p["market_id"], p["interval"])
        self._phase_reveal(key)
        still_open = self.open_commitments(*key)
        if still_open:
            raise Rejection(f"{len(still_open)} commitments are neither revealed nor rejected",
                            "unresolved")
        self._j.add(self.reveal_closed, key)
