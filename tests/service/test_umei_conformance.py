"""Requests generated from the UMEI specification (schemathesis), sent by an authenticated FSP
to ``/umei`` on a market with a DSO: no server error, and every answer conforms to the
specification's schemas and media types.

The specification is read at test time from outside the repository (``LEMGRID_UMEI_SPEC``, or
``../shared/umei/umei-openapi.json`` beside it); without it this module skips, and
``test_umei_market`` still checks every response against lemgrid's own models.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from ._umei import PREFIX, checker, fsp_client_module, require_spec
from .test_service_grid import IPOWER, _world

pytestmark = pytest.mark.slow

EXAMPLES = 8


@pytest.fixture(scope="module")
def spec():
    return require_spec()


@pytest.fixture(scope="module")
def fsp_world(spec, tmp_path_factory):
    world, _ = _world(f"sqlite:///{tmp_path_factory.mktemp('umei-fuzz') / 'market.db'}", IPOWER)
    client = fsp_client_module().UmeiClient(world.http, world.clients["agg-ev-heat"].key)
    client.login()
    yield world, client
    world.http.close()
    world.http.app.state.market.engine.dispose()


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_generated_requests_get_conforming_answers(spec, fsp_world, mode):
    """Valid inputs (POSITIVE): every answer conforms. Invalid inputs (NEGATIVE): no server
    error, and every refusal is a problem details body (lemgrid's checker)."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
    )

    mode = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    world, client = fsp_world
    schema = schemathesis.openapi.from_path(str(spec))
    ours = checker()
    assert ours is not None
    counts = {"requests": 0, "operations": 0}
    headers = {"Authorization": f"Bearer {client.token}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:  # noqa: ANN001
            kwargs = case.as_transport_kwargs(base_url="http://testserver" + PREFIX,
                                              headers=headers)
            kwargs = {k: v for k, v in kwargs.items() if k in (
                "method", "url", "headers", "params", "json", "content", "cookies")}
            response = world.http.request(**kwargs)
            counts["requests"] += 1
            case.validate_response(response, checks=[not_a_server_error,
                                                     content_type_conformance,
                                                     response_schema_conformance]
                                   if mode is GenerationMode.POSITIVE else [not_a_server_error])
            # and lemgrid's own checker: listed statuses, problem details for the rest
            body = response.json() if response.content else None
            ours.check(case.method, response.request.url.path, response.status_code,
                       response.headers.get("content-type", ""), body)

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # no parameters: no invalid input exists
    print("generated requests:", counts)
    assert counts["operations"] == 37  # every operation of UMEI 1.0
    assert counts["requests"] >= counts["operations"] * (2 if mode is GenerationMode.POSITIVE
                                                         else 1), counts
