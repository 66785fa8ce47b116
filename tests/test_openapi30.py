"""The OpenAPI 3.1 → 3.0 translation the bundled Swagger UI reads (``mner.serving.openapi30``), keyword by
keyword, and on the service's own document."""

from __future__ import annotations

import copy
import json

import pytest

from mner.serving.openapi30 import openapi_30

REF = {"$ref": "#/components/schemas/Entity"}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "T"},
            {"type": "string", "nullable": True, "title": "T"},
        ),
        ({"anyOf": [REF, {"type": "null"}]}, {"allOf": [REF], "nullable": True}),
        (
            {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            {"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": True},
        ),
        (
            {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        ),
        ({"type": ["number", "null"]}, {"type": "number", "nullable": True}),
        (
            {"type": "string", "examples": ["Barack Obama visits Berlin"]},
            {"type": "string", "example": "Barack Obama visits Berlin"},
        ),
        ({"const": "ok"}, {"enum": ["ok"]}),
        (
            {"type": "number", "exclusiveMinimum": 0},
            {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        ),
        (
            {"type": "string", "contentMediaType": "application/octet-stream"},
            {"type": "string", "format": "binary"},
        ),
        ({"type": "string", "contentEncoding": "base64"}, {"type": "string", "format": "base64"}),
        (
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            {"type": "array", "items": {"type": "string", "nullable": True}},
        ),
    ],
)
def test_a_schema_keyword_in_its_30_spelling(schema, expected):
    document = {"openapi": "3.1.0", "components": {"schemas": {"X": schema}}}
    assert openapi_30(document) == {"openapi": "3.0.3", "components": {"schemas": {"X": expected}}}


def test_a_property_named_like_a_keyword_is_a_property_and_examples_are_left_as_data():
    schema = {
        "type": "object",
        "properties": {"items": {"type": ["string", "null"]}, "const": {"type": "integer"}},
        "example": {"anyOf": "is data here"},
    }
    out = openapi_30({"openapi": "3.1.0", "components": {"schemas": {"X": schema}}})["components"]["schemas"][
        "X"
    ]
    assert out["properties"] == {"items": {"type": "string", "nullable": True}, "const": {"type": "integer"}}
    assert out["example"] == {"anyOf": "is data here"}


def test_the_services_document_has_no_31_keyword_left_and_is_not_changed():
    from mner.serving.pipeline import Pipeline
    from mner.serving.service import create_app

    app = create_app(Pipeline("text"))
    document = app.openapi()
    before = copy.deepcopy(document)
    translated = openapi_30(document)
    assert document == before
    text = json.dumps(translated)
    assert translated["openapi"] == "3.0.3"
    for keyword in ('"anyOf"', '"examples"', '"const"', '"type": "null"', '"contentMediaType"'):
        assert keyword not in text, keyword
    assert set(translated["paths"]) == set(document["paths"]) == {"/health", "/v1/tag"}

    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        assert client.get("/openapi-3.0.json").json() == translated
        page = client.get("/docs").text
        assert "/openapi-3.0.json" in page
