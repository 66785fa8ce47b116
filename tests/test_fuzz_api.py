"""API fuzzing of ``mner serve`` from its own OpenAPI schema (Schemathesis), against a real server on
127.0.0.1: whatever a client sends, no answer is a 500, and every answer matches the documented schema.
Bounded: a fixed number of generated requests per operation and media type."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings

from mner.serving.pipeline import Pipeline
from mner.serving.service import Limits, create_app
from tests.serving import running_server

EXAMPLES = 400  # per operation: generated requests, positive and negative (schema-violating) ones


@pytest.fixture(scope="module")
def api_schema():
    app = create_app(Pipeline(), Limits(max_chars={"text": 2_000}, max_image_bytes=200_000))
    with running_server(app) as base:
        yield schemathesis.openapi.from_url(base + "/openapi.json")


def test_no_request_gets_a_500_and_every_answer_fits_the_schema(api_schema):
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} == {"POST /v1/tag", "GET /health"}
    sent = []
    for operation in operations:
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case):
            response = case.call_and_validate(checks=checks)
            sent.append(response.status_code)

        fuzz()
    assert len(sent) >= EXAMPLES and 200 in sent and any(400 <= code < 500 for code in sent)
