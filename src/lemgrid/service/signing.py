"""What a request signature covers, shared by the server and :mod:`lemgrid.client`.

A request is signed over the canonical JSON of its method, path (with query), the SHA-256 of its
body, a timestamp and a nonce, so that a signature cannot be moved to another request, replayed
(the server keeps every nonce of the acceptance window) or kept for later (stale timestamps are
refused).
"""

from __future__ import annotations

import hashlib

from lemgrid.ledger.canonical import canonical_bytes

CONTEXT = b"lemgrid-request/1\n"

#: Headers carrying the signature.
KEY_HEADER, TIME_HEADER, NONCE_HEADER, SIG_HEADER = (
    "X-Lemgrid-Key", "X-Lemgrid-Timestamp", "X-Lemgrid-Nonce", "X-Lemgrid-Signature")
IDEMPOTENCY_HEADER = "Idempotency-Key"

#: A request whose timestamp is further than this from the server's clock is refused [ms].
MAX_SKEW_MS = 60_000


def request_message(method: str, path: str, body: bytes, timestamp_ms: int, nonce: str) -> bytes:
    """The bytes an Ed25519 request signature covers.

    Parameters
    ----------
    method : str
        HTTP method (upper-cased here).
    path : str
        Path with query string, as sent (``/markets/m1/orders``).
    body : bytes
        Raw request body (empty for GET).
    timestamp_ms : int
        Client time [ms since the Unix epoch].
    nonce : str
        Unique per key within :data:`MAX_SKEW_MS`.
    """
    return CONTEXT + canonical_bytes({"method": method.upper(), "path": path,
                                      "body_sha256": hashlib.sha256(body).hexdigest(),
                                      "timestamp_ms": timestamp_ms, "nonce": nonce})
