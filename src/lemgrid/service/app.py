"""The FastAPI application of the market operator (``create_app``).

Every request except ``/register`` and ``/health`` carries an Ed25519 signature by a registered,
approved key (:mod:`lemgrid.service.signing`); roles decide what it may do (``docs/service.md``).
Bodies are validated by pydantic: a bad body is a 422 whose ``detail`` names the field.
"""


import asyncio
import collections
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lemgrid.errors import InputError
from lemgrid.ledger.identity import public_key_from_hex, signature_valid
from lemgrid.ledger.records import SignedRecord
from lemgrid.service import delivery, sealed
from lemgrid.service import engine as lab
from lemgrid.service import signing
from lemgrid.service.operator import MAX_GROUP, ROLES, Market, Refused

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
    mechanism: Literal["uniform", "pay-as-bid", "continuous"] | None = None


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
    return SignedRecord(body.payload.model_dump(), body.signer, body.sig)


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
    """Commits orders in groups on the event loop's thread (:meth:`Market.commit_orders`).

    A group is what arrived while the previous group was being committed: one transaction and
    one sync for all of them, each answered after the commit. Running on the loop's thread
    spares a second Python thread that would compete for the GIL with request handling.
    """

    def __init__(self, market: Market) -> None:
        self.market = market
        self.pending: collections.deque = collections.deque()
        self.task: asyncio.Task | None = None

    def submit(self, item: Any) -> None:
        """Queue a checked order; its ``answer`` future resolves after its group commits."""
        self.pending.append(item)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            n = -1
            while n != len(self.pending):  # let the requests already read reach the queue
                n = len(self.pending)
                await asyncio.sleep(0)
            if not self.pending:
                return
            group = [self.pending.popleft() for _ in range(min(n, MAX_GROUP))]
            self.market.commit_orders(group)


def create_app(db_url: str, operator_key: Ed25519PrivateKey, *,
               clock_ms: Callable[[], int] | None = None,
               spec: lab.MarketSpec | None = None, tick_s: float | None = None) -> FastAPI:
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

    async def identity(request: Request) -> dict:
        """The approved identity whose key signed this request (401 otherwise)."""
        # Read here rather than declared as Header parameters, which cost FastAPI more per
        # request than the signature check; they are documented by _document_headers.
        headers = request.headers
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
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        message = signing.request_message(request.method, path, await request.body(), ts,
                                          x_lemgrid_nonce)
        if not signature_valid(public_key_from_hex(who["public_key"]), x_lemgrid_signature,
                               message):
            raise Refused(401, "X-Lemgrid-Signature: does not verify for this request")
        if not market.use_request_nonce(x_lemgrid_key, x_lemgrid_nonce, ts):
            raise Refused(401, "X-Lemgrid-Nonce: already used (replayed request)")
        return who

    def role(*allowed: str) -> Callable:
        async def check(who: Annotated[dict, Depends(identity)]) -> dict:
            if who["role"] not in allowed:
                raise Refused(403, f"role {who['role']!r} may not do this (allowed: "
                                   f"{', '.join(allowed)})")
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

    @app.post("/markets/{market_id}/orders", status_code=201)
    async def submit(market_id: str, body: SignedOrder, request: Request, who: Agent
                     ) -> JSONResponse:
        """Submit a signed order (``Idempotency-Key`` makes retries safe)."""
        idempotency_key = request.headers.get(signing.IDEMPOTENCY_HEADER)
        if idempotency_key is not None and len(idempotency_key) > 200:
            raise Refused(422, "Idempotency-Key: at most 200 characters")
        digest = hashlib.sha256(await request.body()).hexdigest()
        item = market.check_order(who, market_id, _record(body), idempotency_key, digest,
                                  asyncio.get_running_loop().create_future())
        writer.submit(item)
        status, answer = await item.answer
        return JSONResponse(answer, status_code=status)

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
    from lemgrid.service import dashboard

    dashboard.add_routes(app, market, role)

    @app.get("/feed")
    async def feed(_: Anyone, max_events: Annotated[int | None, Query(ge=1, le=10**6)] = None
                   ) -> StreamingResponse:
        """Server-Sent Events: orders, cancels, gate closures, trades, checkpoints, traffic
        lights, flexibility requests, offers and activations."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict] = asyncio.Queue()

        def send(event: dict) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        market.subscribers.append(send)

        async def stream():
            try:
                yield ": lemgrid feed\n\n"
                n = 0
                while max_events is None or n < max_events:
                    event = await queue.get()
                    yield f"event: {event['event']}\ndata: {json.dumps(event)}\n\n"
                    n += 1
            finally:
                market.subscribers.remove(send)

        return StreamingResponse(stream(), media_type="text/event-stream")

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
