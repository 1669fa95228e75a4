"""Bearer tokens for UMEI clients, issued on a challenge signed by a registered key.

1. ``POST /umei/auth/challenge`` with the key id: a fresh 32-byte challenge, valid 5 minutes.
2. The client signs :func:`token_message` (the challenge and the market's log id) with its
   Ed25519 key and posts it to ``POST /umei/auth/token``: an opaque bearer token valid one hour.
   The ``umei-token`` ledger record holds the challenge, the signature and the token's SHA-256,
   so anyone holding the log can check that the key's owner asked for that token.
3. Every UMEI request then carries ``Authorization: Bearer <token>``; every accepted write lands
   in the ledger as a ``umei-request`` record naming the token (``docs/umei.md``).
"""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa

from lemgrid.ledger.canonical import canonical_bytes
from lemgrid.ledger.identity import public_key_from_hex, signature_valid
from lemgrid.service.umei import tables as u
from lemgrid.service.umei.problems import Problem

CONTEXT = b"lemgrid-umei-token/1\n"
CHALLENGE_TTL_MS = 300_000
TOKEN_TTL_MS = 3_600_000


def token_message(challenge: str, log_id: str) -> bytes:
    """The bytes a key signs to get a token.

    Parameters
    ----------
    challenge : str
        64 hex digits from ``POST /umei/auth/challenge``.
    log_id : str
        The market's log id (``GET /health``), so a signature cannot serve another market.
    """
    return CONTEXT + canonical_bytes({"challenge": challenge, "log_id": log_id})


def token_id(token: str) -> str:
    """What the server and the ledger keep of a token: its SHA-256 (hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def challenge(market, key_id: str) -> dict:
    """A fresh challenge for an approved key."""
    who = market.identity_by_key(key_id)
    if who is None or not who["approved"]:
        raise Problem("Unauthenticated", f"keyId: {key_id} is not the key of an approved "
                      "identity", "keyId", key_id)
    value = secrets.token_hex(32)
    expires_ms = market.clock_ms() + CHALLENGE_TTL_MS
    with market.engine.begin() as conn:
        conn.execute(u.challenges.delete().where(u.challenges.c.expires_ms < market.clock_ms()))
        conn.execute(u.challenges.insert().values(challenge=value, key_id=key_id,
                                                  expires_ms=expires_ms, used=False))
    return {"challenge": value, "expires_ms": expires_ms,
            "sign": token_message(value, market.log_id).hex(), "log_id": market.log_id}


def issue(market, key_id: str, value: str, signature: str) -> dict:
    """A bearer token for a signed, unused, unexpired challenge; its ``umei-token`` record and
    row are written in one transaction."""
    who = market.identity_by_key(key_id)
    if who is None or not who["approved"]:
        raise Problem("Unauthenticated", f"keyId: {key_id} is not the key of an approved "
                      "identity", "keyId", key_id)
    if not signature_valid(public_key_from_hex(who["public_key"]), signature,
                           token_message(value, market.log_id)):
        raise Problem("Unauthenticated", "signature: does not verify for this challenge and "
                      "key", "signature")
    token = secrets.token_urlsafe(32)
    tid = token_id(token)
    now = market.clock_ms()
    with market.write() as (conn, tx):
        row = conn.execute(sa.select(u.challenges).where(
            u.challenges.c.challenge == value)).first()
        if row is None or row.key_id != key_id or row.used or row.expires_ms < now:
            raise Problem("Unauthenticated", "challenge: unknown, used, expired or issued to "
                          "another key", "challenge", value)
        conn.execute(u.challenges.update().where(u.challenges.c.challenge == value)
                     .values(used=True))
        result = tx.append_operator([{
            "kind": "umei-token", "participant": who["participant"], "key_id": key_id,
            "challenge": value, "challenge_sig": signature, "token_id": tid,
            "expires_ms": now + TOKEN_TTL_MS}])
        conn.execute(u.tokens.insert().values(token_id=tid, key_id=key_id,
                                              expires_ms=now + TOKEN_TTL_MS,
                                              seq=result.first_seq))
    return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL_MS // 1000,
            "ledger_seq": result.first_seq}


def bearer(market, authorization: str | None) -> tuple[dict, str]:
    """The approved identity and token id of an ``Authorization: Bearer`` header (401
    ``Unauthenticated`` otherwise)."""
    if not authorization:
        raise Problem("Unauthenticated", "Authorization: a bearer token is required (POST "
                      "/umei/auth/challenge, then /umei/auth/token)", "Authorization")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem("Unauthenticated", "Authorization: must be 'Bearer <token>'",
                      "Authorization")
    tid = token_id(token.strip())
    with market.engine.connect() as conn:
        row = conn.execute(sa.select(u.tokens).where(u.tokens.c.token_id == tid)).first()
    if row is None:
        raise Problem("Unauthenticated", "Authorization: unknown bearer token",
                      "Authorization")
    if row.expires_ms <= market.clock_ms():
        raise Problem("Unauthenticated", "Authorization: the bearer token has expired; get a "
                      "new one", "Authorization")
    who = market.identity_by_key(row.key_id)
    if who is None or not who["approved"]:
        raise Problem("Unauthenticated", "Authorization: the token's key is no longer "
                      "approved", "Authorization")
    return who, tid
