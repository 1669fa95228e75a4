"""schemathesis against the live OpenAPI of a `lemgrid serve` process on loopback, stateless and
stateful, every request signed by an approved participant's key: no server error, and every
refused body a 4xx whose detail names the field."""

from __future__ import annotations

import re

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key, write_private_key
from lemgrid.service import signing

from ._live import LiveServer

pytestmark = pytest.mark.slow

COUNT = {"requests": 0}
EXAMPLES = 100


class SigningSession(requests.Session):
    """Signs every prepared request (method, path, body hash, time, nonce) with a key."""

    def __init__(self, client: MarketClient) -> None:
        super().__init__()
        self.client = client

    def send(self, prepared, **kwargs):  # noqa: ANN001
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        prepared.headers.update(self.client.headers(prepared.method, prepared.path_url, body))
        COUNT["requests"] += 1
        return super().send(prepared, **kwargs)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    key = generate_key()
    write_private_key(key, tmp / "operator.key")
    server = LiveServer(f"sqlite:///{tmp / 'market.db'}", tmp / "operator.key").start()
    operator = MarketClient(server.url, key)
    alice = MarketClient(server.url, generate_key())
    assert alice.register("alice", "meter-alice").status_code == 201
    assert operator.request("POST", "/identities/alice/approve").status_code == 200
    assert operator.request("POST", "/sessions", {"market_id": "s1", "interval": 0,
                                                  "gate_ms": 2**61}).status_code == 201
    yield server, SigningSession(alice)
    server.stop()


@pytest.fixture(scope="module")
def api_schema(live):
    server, _ = live
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    max_examples=EXAMPLES)
    return schema


_FIELD = re.compile(r"^[A-Za-z][\w\-]*(\.[\w\-]+)*(, [\w\-]+)*: ")


def _check(response) -> None:  # noqa: ANN001
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code == 422:
        detail = response.json()["detail"]
        if isinstance(detail, list):
            assert detail and all(e.get("loc") for e in detail), detail
        else:
            assert _FIELD.match(detail), detail


def _operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


def _stateless(api_schema, session, mode) -> None:  # noqa: ANN001
    """Every operation with generated valid (POSITIVE) or invalid (NEGATIVE) inputs."""
    for operation in _operations(api_schema):
        if operation.path == "/feed":
            continue  # the live feed streams; covered by test_sse_feed_*

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:  # noqa: ANN001
            _check(case.call(session=session, timeout=10))

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # no parameters: no invalid input exists


def _stateful(api_schema, session) -> None:  # noqa: ANN001
    """Sequences of calls linked by the OpenAPI's links (an order, then its status...)."""

    class Machine(api_schema.as_state_machine()):
        def call(self, case, **kwargs):  # noqa: ANN001
            if case.path == "/feed":
                case.query = {"max_events": 1}
            return case.call(session=session, timeout=10, **kwargs)

        def validate_response(self, response, case, **kwargs):  # noqa: ANN001
            _check(response)

    Machine.run(settings=settings(max_examples=60, stateful_step_count=8, deadline=None,
                                  suppress_health_check=list(HealthCheck)))


def test_at_least_2000_generated_requests_without_a_server_error(api_schema, live):
    """Stateless (valid and invalid inputs) and stateful runs in one test, so that the count of
    the requests they sent does not depend on how the test runner orders or spreads tests."""
    _, session = live
    COUNT["requests"] = 0
    _stateless(api_schema, session, GenerationMode.POSITIVE)
    _stateless(api_schema, session, GenerationMode.NEGATIVE)
    _stateful(api_schema, session)
    print("generated requests:", COUNT["requests"])
    assert COUNT["requests"] >= 2000, COUNT
