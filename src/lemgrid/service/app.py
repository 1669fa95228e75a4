"""The FastAPI application of the market operator (``create_app``).

Every request except ``/register`` and ``/health`` carries an Ed25519 signature by a registered,
approved key (:mod:`lemgrid.service.signing`); roles decide what it may do (``docs/service.md``).
Bodies are validated by pydantic: a bad body is a 422 whose ``detail`` names the field.
"""


import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.datastructures import URL, Headers

from lemgrid.errors import InputError
from lemgrid.ledger.identity import signing_message
from lemgrid.ledger.records import SignedRecord
from lemgrid.service import delivery, sealed
from lemgrid.service import engine as lab
from lemgrid.service import signing
from lemgrid.service.feed import sse_response
from lemgrid.service.operator import MAX_GROUP, ROLES, Market, Refused
from lemgrid.service.verifier import Verifier

Text = Annotated[str, Field(min_length=1, max_length=200)]
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Hex128 = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]
Interval = Annotated[StrictInt, Field(ge=0, le=10**9)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterBody(Strict):
    """A new identity: its key and a proof of possession (see ``registration_payload``)."""

    participant: Text
    role: Literal["participant", "aggregator", "dso", "tso"]
    meter: Text
    public_key: Hex64
    pop_sig: Hex128
    members: list[Text] = Field(default_factory=list, max_length=1000)

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "participant": "alice", "role": "participant", "meter": "bus-7",
        "public_key": "ab" * 32, "pop_sig": "cd" * 64, "members": []}]})


class SessionBody(Strict):
    market_id: Text
    interval: Interval
    gate_ms: Annotated[StrictInt, Field(ge=0, le=2**62)]
    mechanism: Literal["uniform", "pay-as-bid", "continuous", "none"] | None = None


class CapabilityBody(Strict):
    participant: Text
    interval: Interval
    sellable_wh: Annotated[StrictInt, Field(ge=0, le=10**12)]
    source: Literal["metered", "forecast", "declared"] = "declared"


class OrderPayload(Strict):
    kind: Literal["order"]
    log_id: Hex64
    market_id: Text
    interval: Interval
    order_id: Text
    participant: Text
    meter: Text
    side: Literal["buy", "sell"]
    quantity_wh: Annotated[StrictInt, Field(gt=0, le=10**12)]
    price_meur_per_kwh: Annotated[StrictInt, Field(ge=-10**7, le=10**7)]
    nonce: Text
    #: Continuous sessions: the order leaves the book at the first event after this time [ms].
    valid_until_ms: Annotated[StrictInt, Field(ge=0, le=2**62)] | None = None


class SignedOrder(Strict):
    """An order in the ledger's canonical signed form."""

    payload: OrderPayload
    signer: Hex32
    sig: Hex128


class CancelPayload(Strict):
    kind: Literal["cancel"]
    log_id: Hex64
    market_id: Text
    order_id: Text
    participant: Text
    nonce: Text


class SignedCancel(Strict):
    payload: CancelPayload
    signer: Hex32
    sig: Hex128


class ReadingPayload(Strict):
    """A meter's registers over a session's delivery interval [Wh, never negative]."""

    kind: Literal["meter-reading"]
    log_id: Hex64
    market_id: Text
    interval: Interval
    participant: Text
    meter: Text
    import_wh: Annotated[StrictInt, Field(ge=0, le=10**12)]
    export_wh: Annotated[StrictInt, Field(ge=0, le=10**12)]
    nonce: Text


class SignedReading(Strict):
    """A meter reading in the ledger's canonical signed form."""

    payload: ReadingPayload
    signer: Hex32
    sig: Hex128


class SealedSessionBody(Strict):
    """A sealed-bid session: commit window until ``gate_ms``, reveal window until
    ``reveal_ms``."""

    market_id: Text
    interval: Interval
    gate_ms: Annotated[StrictInt, Field(ge=0, le=2**62)]
    reveal_ms: Annotated[StrictInt, Field(ge=0, le=2**62)]
    mechanism: Literal["uniform", "pay-as-bid"] | None = None


class CommitPayload(Strict):
    kind: Literal["commit"]
    log_id: Hex64
    market_id: Text
    interval: Interval
    participant: Text
    commitment: Hex64
    nonce: Text


class SignedCommit(Strict):
    """A commitment to a hidden order (:func:`lemgrid.ledger.sealed.commitment_digest`)."""

    payload: CommitPayload
    signer: Hex32
    sig: Hex128


class RevealPayload(Strict):
    kind: Literal["reveal"]
    log_id: Hex64
    market_id: Text
    interval: Interval
    participant: Text
    salt: Hex64
    order: OrderPayload
    nonce: Text


class SignedReveal(Strict):
    """The order and salt opening a commitment."""

    payload: RevealPayload
    signer: Hex32
    sig: Hex128


class MeteringBody(Strict):
    readings_deadline_ms: Annotated[StrictInt, Field(ge=0, le=2**62)]


def _record(body: SignedOrder | SignedCancel | SignedReading | SignedCommit | SignedReveal
            ) -> SignedRecord:
    return SignedRecord(body.payload.model_dump(exclude_none=True), body.signer, body.sig)


def _signed_path(path: str, query: str) -> str:
    """The path a request signature covers: the path, and ``?query`` if there is one."""
    return path + (f"?{query}" if query else "")


def _order_message(record: SignedRecord) -> bytes:
    """The bytes the order record's signature covers (the ledger's signing message)."""
    return signing_message(record.payload)


def _check_role(who: dict, allowed: tuple[str, ...]) -> None:
    if who["role"] not in allowed:
        raise Refused(403, f"role {who['role']!r} may not do this (allowed: "
                           f"{', '.join(allowed)})")


def _json_safe_error(error: dict) -> dict:
    """A pydantic error with its ``input`` and ``ctx`` kept only if they encode as strict JSON."""
    out = {k: error[k] for k in ("type", "loc", "msg") if k in error}
    for k in ("input", "ctx"):
        try:
            json.dumps(error.get(k), allow_nan=False)
        except (TypeError, ValueError):
            continue
        if k in error:
            out[k] = error[k]
    return out
class _OrderWriter:
    """Commits orders in groups (:meth:`Market.stage_orders`), pipelined with request reading.

    A group is what arrived while the previous group was being committed: one transaction and
    one sync for all of them, each answered after the commit. The group is written on the event
    loop's thread (a second Python thread would compete with request handling for the
    interpreter lock); only the commit, where the database syncs and Python's lock is released,
    runs on a thread of its own, so that the loop goes on reading the next group's requests
    meanwhile.
    """

    def __init__(self, market: Market) -> None:
        self.market = market
        self.pending: collections.deque = collections.deque()
        self.task: asyncio.Task | None = None
        self.committer = ThreadPoolExecutor(1, thread_name_prefix="lemgrid-commit")

    def submit(self, item: Any) -> None:
        """Queue a checked order; its ``answer`` future resolves after its group commits."""
        self.pending.append(item)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            n = -1
            while n != len(self.pending):  # let the requests already read reach the queue
                n = len(self.pending)
                await asyncio.sleep(0)
            if not self.pending:
                return
            group = [self.pending.popleft() for _ in range(min(n, MAX_GROUP))]
            try:
                staged = self.market.stage_orders(group)
                await loop.run_in_executor(self.committer, staged.commit)
            except Exception as exc:  # noqa: BLE001  (then each order on its own)
                self.market.commit_one_by_one(group, exc)
                continue
            self.market.finish_orders(group, staged.outcomes)


#: The path of order submission (FastAPI's ``{market_id}`` matches one path segment).
_ORDERS_PATH = re.compile(r"/markets/([^/]+)/orders")


#: JSON bodies nested deeper than this are refused before any parser reads them (422).
MAX_JSON_DEPTH = 32

_OPENERS, _CLOSERS = np.zeros(256, np.int8), np.zeros(256, np.int8)
_OPENERS[[ord("["), ord("{")]] = 1
_CLOSERS[[ord("]"), ord("}")]] = 1
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_too_deep(raw: bytes) -> bool:
    """Whether the arrays and objects of a JSON text nest deeper than :data:`MAX_JSON_DEPTH`
    (brackets inside strings do not count).

    Parsers recurse once per level: Python's ``json`` overflows a thread's C stack long before
    the interpreter's recursion limit once a library has raised that limit (py-evm and py_ecc
    set it to 100,000 on import), so the depth is measured without parsing.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    codes = np.frombuffer(_JSON_STRING.sub(b"", raw), np.uint8)
    depth = np.cumsum(_OPENERS[codes].astype(np.int32) - _CLOSERS[codes])
    return bool(depth.max(initial=0) > MAX_JSON_DEPTH)


class _OrderFastPath:
    """ASGI middleware: refuses JSON bodies nested deeper than :data:`MAX_JSON_DEPTH`, and lets
    a well-formed signed order skip FastAPI's routing and dependency solving, which cost about
    as much CPU as the rest of the order's handling.

    Only a ``POST /markets/{market_id}/orders`` with ``Content-Type: application/json`` whose
    body is a valid :class:`SignedOrder` is handled here, by the same checks as the route
    (``authenticate``, the role check, ``Market.check_order``); every other request, and any
    such request whose body does not validate, goes to FastAPI with its body unchanged, so that
    errors are answered exactly as the route answers them.
    """

    def __init__(self, app: Any, handle: Callable) -> None:
        self.app, self.handle = app, handle

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay(b"", message), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if json_too_deep(body):
            why = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
            if scope["path"].startswith("/umei/"):  # UMEI's own problem details
                from lemgrid.service.umei.problems import Problem

                problem = Problem("ValidationError", f"body: {why}", field="body")
                await _send_json(send, problem.status, problem.body(scope["path"]),
                                 "application/problem+json")
            else:
                await _send_json(send, 422, {"detail": [{
                    "type": "json_invalid", "loc": ["body"], "input": None, "msg": why}]})
            return
        if (_ORDERS_PATH.fullmatch(scope["path"]) is None or scope.get("root_path")
                or scope["method"] != "POST" or not await self.handle(scope, body, send)):
            await self.app(scope, _replay(body, None), send)


def _replay(body: bytes, last: dict | None) -> Callable:
    """An ASGI ``receive`` that gives ``body`` again (then ``last``, or waits forever as a
    real connection does until the client leaves)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            if last is not None:
                return last
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # pragma: no cover  (cancelled with the request)
        return {"type": "http.disconnect"}

    return receive


async def _send_json(send: Callable, status: int, content: Any,
                     media_type: str = "application/json") -> None:
    """Send a JSON answer as ``JSONResponse`` would."""
    data = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(data)).encode()),
                            (b"content-type", media_type.encode())]})
    await send({"type": "http.response.body", "body": data})


def create_app(db_url: str, operator_key: Ed25519PrivateKey, *,
               clock_ms: Callable[[], int] | None = None,
               spec: lab.MarketSpec | None = None, tick_s: float | None = None,
               verify_process: bool = False) -> FastAPI:
    """The market operator's app.

    Parameters
    ----------
    db_url : str
        SQLAlchemy URL of the database (created and migrated if needed).
    operator_key : Ed25519PrivateKey
        The operator's key (log key, and the operator's API identity).
    clock_ms : callable, optional
        The market clock [ms since the Unix epoch]; wall time by default (tests pass a
        simulated one).
    spec : MarketSpec, optional
        From a scenario (:func:`lemgrid.service.engine.load_market`).
    tick_s : float, optional
        Run the session scheduler in the background every ``tick_s`` seconds (``lemgrid
        serve``); None leaves it to ``POST /admin/tick``.
    verify_process : bool
        Verify request and order signatures in a helper process
        (:mod:`lemgrid.service.verifier`; ``lemgrid serve`` does) rather than on the event
        loop's thread.
    """
    clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
    market = Market(db_url, operator_key, clock, spec)
    app = FastAPI(title="lemgrid market operator", version="1",
                  description="Signed order intake, gate closure, clearing by the lab's code, "
                              "settlement and a verifiable ledger. See docs/service.md.")
    app.state.market = market

    @app.exception_handler(Refused)
    async def _refused(_request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, and a NaN or infinity in a body (which
        # Python's JSON reader accepts) would then make the answer itself unencodable: a 500.
        return JSONResponse({"detail": [_json_safe_error(e) for e in exc.errors()]},
                            status_code=422)

    @app.exception_handler(InputError)
    async def _input(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    writer = _OrderWriter(market)

    @app.on_event("shutdown")
    def _close() -> None:
        writer.committer.shutdown(wait=True)
        verifier.close()
        market.close()

    if tick_s is not None:
        @app.on_event("startup")
        async def _scheduler() -> None:
            async def loop() -> None:
                while True:
                    await asyncio.sleep(tick_s)
                    try:
                        await asyncio.to_thread(market.tick)
                    except Exception as exc:  # noqa: BLE001  (the scheduler must outlive one)
                        logging.getLogger("lemgrid.service").error("scheduler: %s", exc)
            app.state.scheduler = asyncio.create_task(loop())

    verifier = Verifier(helper=verify_process)
    app.state.verifier = verifier

    async def authenticate(method: str, path: str, headers: Headers, body: bytes,
                           also: list | None = None) -> dict:
        """The approved identity whose key signed this request (401 otherwise).

        ``also``: more ``(raw public key, signature hex, message)`` items to verify in the same
        exchange with the signature helper; their results replace the list's items (booleans).
        """
        x_lemgrid_key = headers.get(signing.KEY_HEADER)
        x_lemgrid_timestamp = headers.get(signing.TIME_HEADER)
        x_lemgrid_nonce = headers.get(signing.NONCE_HEADER)
        x_lemgrid_signature = headers.get(signing.SIG_HEADER)
        if not (x_lemgrid_key and x_lemgrid_timestamp and x_lemgrid_nonce
                and x_lemgrid_signature):
            raise Refused(401, "X-Lemgrid-Key, -Timestamp, -Nonce and -Signature headers are "
                               "required")
        if not x_lemgrid_timestamp.isdigit() or len(x_lemgrid_timestamp) > 16:
            raise Refused(401, "X-Lemgrid-Timestamp: must be ms since the Unix epoch")
        if not 0 < len(x_lemgrid_nonce) <= 200:
            raise Refused(401, "X-Lemgrid-Nonce: 1 to 200 characters")
        ts = int(x_lemgrid_timestamp)
        if abs(ts - clock()) > signing.MAX_SKEW_MS:
            raise Refused(401, "X-Lemgrid-Timestamp: stale or ahead of the server's clock by "
                               f"more than {signing.MAX_SKEW_MS // 1000} s")
        who = market.identity_by_key(x_lemgrid_key)
        if who is None or not who["approved"]:
            raise Refused(401, "X-Lemgrid-Key: not the key of an approved identity")
        message = signing.request_message(method, path, body, ts, x_lemgrid_nonce)
        extra = also or []
        oks = await verifier.verify([(bytes.fromhex(who["public_key"]), x_lemgrid_signature,
                                      message), *extra])
        if not oks[0]:
            raise Refused(401, "X-Lemgrid-Signature: does not verify for this request")
        if not market.use_request_nonce(x_lemgrid_key, x_lemgrid_nonce, ts):
            raise Refused(401, "X-Lemgrid-Nonce: already used (replayed request)")
        extra[:] = oks[1:]
        return who

    async def identity(request: Request) -> dict:
        """The approved identity whose key signed this request (401 otherwise)."""
        # Read here rather than declared as Header parameters, which cost FastAPI more per
        # request than the signature check; they are documented by _document_headers.
        return await authenticate(request.method, _signed_path(request.url.path,
                                                               request.url.query),
                                  request.headers, await request.body())

    def role(*allowed: str) -> Callable:
        async def check(who: Annotated[dict, Depends(identity)]) -> dict:
            _check_role(who, allowed)
            return who
        return check

    Anyone = Annotated[dict, Depends(role(*ROLES))]
    Operator = Annotated[dict, Depends(role("operator"))]
    Trader = Annotated[dict, Depends(role("participant"))]
    #: Orders and cancels: a participant for itself, an aggregator for its members.
    Agent = Annotated[dict, Depends(role("participant", "aggregator"))]
    Reader = Annotated[dict, Depends(role("operator", "participant", "aggregator"))]
    Grid = Annotated[dict, Depends(role("operator", "dso", "tso"))]

    @app.get("/health")
    def health() -> dict:
        """Liveness, the log id and the market clock."""
        return {"ok": True, "log_id": market.log_id, "clock_ms": clock()}

    @app.post("/register", status_code=201)
    def register(body: RegisterBody) -> dict:
        """Register an identity (pending until the operator approves it)."""
        return market.register(body.participant, body.role, body.meter, body.public_key,
                               body.pop_sig, body.members)

    @app.post("/identities/{participant}/approve")
    def approve(participant: str, _: Operator) -> dict:
        """Approve an identity: its key-registration goes into the ledger."""
        return market.approve(participant)

    @app.get("/identities/me")
    def me(who: Anyone) -> dict:
        """The identity of the signing key."""
        return {k: who[k] for k in ("participant", "role", "meter", "key_id")}

    @app.post("/sessions", status_code=201)
    def create_session(body: SessionBody, _: Operator) -> dict:
        """Open a session (one market interval with a gate closure time)."""
        return market.create_session(body.market_id, body.interval, body.gate_ms,
                                     body.mechanism)

    @app.get("/sessions/{market_id}")
    def session(market_id: str, _: Anyone) -> dict:
        return market.session(market_id)

    @app.post("/capabilities", status_code=201)
    def capability(body: CapabilityBody, _: Annotated[dict, Depends(role("operator", "dso"))]
                   ) -> dict:
        """Sellable energy of a participant in an interval (bounds its offers and trades)."""
        return market.set_capability(body.participant, body.interval, body.sellable_wh,
                                     body.source)

    async def intake(who: dict, market_id: str, body: SignedOrder, headers: Headers,
                     raw: bytes, order_ok: bool) -> tuple[int, dict]:
        """An authenticated order request: its checks, then its group commit's answer."""
        idempotency_key = headers.get(signing.IDEMPOTENCY_HEADER)
        if idempotency_key is not None and len(idempotency_key) > 200:
            raise Refused(422, "Idempotency-Key: at most 200 characters")
        record = _record(body)
        item = market.check_order(who, market_id, record, idempotency_key,
                                  hashlib.sha256(raw).hexdigest(),
                                  asyncio.get_running_loop().create_future(),
                                  _order_message(record) if order_ok else None)
        writer.submit(item)
        result: tuple[int, dict] = await item.answer
        return result

    @app.post("/markets/{market_id}/orders", status_code=201)
    async def submit(market_id: str, body: SignedOrder, request: Request, who: Agent
                     ) -> JSONResponse:
        """Submit a signed order (``Idempotency-Key`` makes retries safe)."""
        status, answer = await intake(who, market_id, body, request.headers,
                                      await request.body(), False)
        return JSONResponse(answer, status_code=status)

    async def fast_order(scope: dict, raw: bytes, send: Callable) -> bool:
        """The order route without FastAPI (see :class:`_OrderFastPath`); False: not handled."""
        headers = Headers(scope=scope)
        if headers.get("content-type") != "application/json":
            return False
        try:
            body = SignedOrder.model_validate(json.loads(raw))
        except Exception:  # noqa: BLE001  (ValidationError, JSON errors, ...: FastAPI answers
            return False  # each as it does for the route, naming the field)
        market_id = _ORDERS_PATH.fullmatch(scope["path"]).group(1)  # type: ignore[union-attr]
        url = URL(scope=scope)  # as Request.url: the same path and query as the route signs
        try:
            record = _record(body)
            key = headers.get(signing.KEY_HEADER)
            signer = market.identity_by_key(key) if key == record.signer else None
            also: list = []  # the order's signature, by the request's key: checked together
            if signer is not None:
                with contextlib.suppress(InputError):  # the ledger refuses it, naming it
                    also = [(bytes.fromhex(signer["public_key"]), record.sig,
                             _order_message(record))]
            who = await authenticate("POST", _signed_path(url.path, url.query), headers, raw,
                                     also)
            _check_role(who, ("participant", "aggregator"))
            # authenticate replaced ``also``'s item by whether the order's signature verified
            status, answer = await intake(who, market_id, body, headers, raw,
                                          bool(also) and also[0] is True)
        except Refused as exc:
            status, answer = exc.status, {"detail": exc.detail}
        except InputError as exc:
            status, answer = 422, {"detail": str(exc)}
        await _send_json(send, status, answer)
        return True

    app.add_middleware(_OrderFastPath, handle=fast_order)

    @app.get("/markets/{market_id}/orders/{order_id}")
    def order(market_id: str, order_id: str, who: Reader) -> dict:
        """Status of an order (yours, your members', or any for the operator)."""
        return market.order(who, market_id, order_id)

    @app.post("/markets/{market_id}/cancel")
    def cancel(market_id: str, body: SignedCancel, who: Agent) -> dict:
        """Cancel an open order before gate closure (a signed cancel record)."""
        return market.cancel(who, market_id, _record(body))

    @app.post("/admin/tick")
    def tick(_: Operator) -> dict:
        """Run the scheduler now: close, clear and settle every session past its gate."""
        return {"settled": market.tick()}

    @app.get("/markets/{market_id}/trades")
    def trades(market_id: str, who: Anyone) -> list[dict]:
        """Trades of a settled session (a participant sees its own)."""
        return market.trades(who, market_id)

    @app.get("/markets/{market_id}/statements/{participant}")
    def statement(market_id: str, participant: str, who: Reader) -> dict:
        """A participant's statement for a session [µ€, positive = receives]."""
        return market.statement(who, market_id, participant)

    @app.get("/markets/{market_id}/budget")
    def budget(market_id: str, _: Grid) -> dict:
        """Sum of a session's statements (0: the session balances)."""
        return market.budget(market_id)

    @app.get("/ledger/checkpoints")
    def checkpoints(_: Anyone) -> list[dict]:
        """Every signed checkpoint."""
        return market.checkpoints()

    @app.get("/ledger/inclusion/{seq}")
    def inclusion(seq: int, _: Anyone, checkpoint: int | None = None) -> dict:
        """Inclusion proof of an entry against a checkpoint (the latest by default)."""
        try:
            return market.ledger.inclusion_proof(seq, checkpoint)
        except InputError as exc:
            raise Refused(404, f"seq: {exc}") from None

    @app.get("/ledger/consistency")
    def consistency(first: int, second: int, _: Anyone) -> dict:
        """Consistency proof between two checkpoints (given by their entry positions)."""
        try:
            return market.ledger.consistency_proof(first, second)
        except InputError as exc:
            raise Refused(404, f"first, second: {exc}") from None

    # -- sealed-bid sessions (lemgrid.service.sealed) ---------------------------------------
    @app.post("/sessions/sealed", status_code=201)
    def create_sealed_session(body: SealedSessionBody, _: Operator) -> dict:
        """Open a sealed-bid session (commit window, then reveal window, then clearing)."""
        return sealed.create(market, body.market_id, body.interval, body.gate_ms,
                             body.reveal_ms, body.mechanism)

    @app.post("/markets/{market_id}/commits", status_code=201)
    def commit(market_id: str, body: SignedCommit, who: Trader) -> dict:
        """A signed commitment to a hidden order, in the commit window."""
        return sealed.commit(market, who, market_id, _record(body))

    @app.post("/markets/{market_id}/reveals", status_code=201)
    def reveal(market_id: str, body: SignedReveal, who: Trader) -> dict:
        """The order and salt opening one's commitment, in the reveal window."""
        return sealed.reveal(market, who, market_id, _record(body))

    # -- delivery: meter readings, imbalance and statements (lemgrid.service.delivery) ------
    @app.post("/markets/{market_id}/metering", status_code=201)
    def open_metering(market_id: str, body: MeteringBody, _: Operator) -> dict:
        """Accept meter readings for a cleared session until the deadline."""
        return delivery.open_metering(market, market_id, body.readings_deadline_ms)

    @app.post("/markets/{market_id}/readings", status_code=201)
    def reading(market_id: str, body: SignedReading, who: Trader) -> dict:
        """A signed meter reading of one's own meter for the session's interval."""
        return delivery.submit_reading(market, who, market_id, _record(body))

    @app.get("/markets/{market_id}/delivery-statements/{participant}")
    def delivery_statement(market_id: str, participant: str, who: Reader) -> dict:
        """A participant's statement of a delivered session: energies [Wh], imbalance, network
        charges and the other cost parts [µ€, positive = pays]."""
        return delivery.statement(market, who, market_id, participant)

    @app.get("/markets/{market_id}/delivery-budget")
    def delivery_budget(market_id: str, _: Grid) -> dict:
        """A delivered session's budget balance (the lab's check, in µ€)."""
        return delivery.budget(market, market_id)
    from lemgrid.service.grid_api import add_routes

    add_routes(app, market, role)
    from lemgrid.service import community, dashboard, umei

    community.add_routes(app, market, role)

    umei.add_routes(app, market)
    dashboard.add_routes(app, market, role)

    @app.get("/feed")
    async def feed(_: Anyone, max_events: Annotated[int | None, Query(ge=1, le=10**6)] = None
                   ) -> StreamingResponse:
        """Server-Sent Events: orders, cancels, gate closures, trades, checkpoints, traffic
        lights, flexibility requests, offers and activations."""
        return sse_response(market, max_events, preamble=": lemgrid feed\n\n")

    _document_headers(app)
    return app


def _document_headers(app: FastAPI) -> None:
    """Put the signature headers (and ``Idempotency-Key``) into the OpenAPI schema."""
    def text(name: str, description: str, max_length: int = 200) -> dict:
        return {"name": name, "in": "header", "required": False, "description": description,
                "schema": {"type": "string", "maxLength": max_length}}

    signed = [text(signing.KEY_HEADER, "key id of an approved identity", 32),
              text(signing.TIME_HEADER, "ms since the Unix epoch", 16),
              text(signing.NONCE_HEADER, "unique per key within 60 s"),
              text(signing.SIG_HEADER, "Ed25519 signature (docs/service.md)", 128)]
    plain = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = plain()  # cached by FastAPI as app.openapi_schema: the additions stay
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                extra = [] if path in ("/register", "/health") else signed
                if path.endswith("/orders") and "requestBody" in operation:
                    extra = [*extra, text(signing.IDEMPOTENCY_HEADER, "makes retries safe")]
                operation["parameters"] = [*operation.get("parameters", []), *extra]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
