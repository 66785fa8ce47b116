"""The service's OpenAPI 3.1 document (what FastAPI writes) as OpenAPI 3.0, for the Swagger UI that ships offline.

The bundled Swagger UI (``swagger-ui-bundle``, Swagger UI 4.15) reads OpenAPI 3.0 only: given 3.1 it shows
"Unable to render this definition" and no operation. The 3.1 document stays at ``/openapi.json``; ``/docs`` reads
this translation. It rewrites what the service's schemas use of JSON Schema 2020-12 into its 3.0 spelling:

- ``anyOf: [X, {"type": "null"}]`` → X with ``nullable: true`` (any other ``anyOf`` keeps its non-null members);
- ``type: [X, "null"]`` → ``type: X`` with ``nullable: true``;
- ``examples: [a, ...]`` in a schema → ``example: a``; ``const: v`` → ``enum: [v]``;
- numeric ``exclusiveMinimum``/``exclusiveMaximum`` → ``minimum``/``maximum`` with the boolean flag;
- ``contentMediaType``/``contentEncoding`` of a file → ``format: binary``/``base64``.
"""

from __future__ import annotations

from typing import Any

OPENAPI_30 = "3.0.3"
NULL = {"type": "null"}


def openapi_30(document: dict) -> dict:
    """A new OpenAPI 3.0 document saying what ``document`` (OpenAPI 3.1) says; ``document`` is unchanged."""
    out = {key: _walk(value, in_schema=False) for key, value in document.items()}
    out["openapi"] = OPENAPI_30
    return out


def _walk(value: Any, in_schema: bool) -> Any:
    if isinstance(value, list):
        return [_walk(v, in_schema) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in (
            "schema",
            "schemas",
            "properties",
            "items",
            "additionalProperties",
            "allOf",
            "anyOf",
            "oneOf",
        ):
            out[key] = _schema_container(key, item)
        else:
            out[key] = _walk(item, in_schema and key not in ("example", "default", "enum"))
    return _schema(out) if in_schema else out


def _schema_container(key: str, item: Any) -> Any:
    """The schemas under a keyword: one (``schema``, ``items``), a name → schema map, or a list of them."""
    if key in ("schemas", "properties") and isinstance(item, dict):
        return {name: _walk(schema, in_schema=True) for name, schema in item.items()}
    return _walk(item, in_schema=True) if not isinstance(item, bool) else item


def _schema(schema: dict) -> dict:
    """One schema's own keywords in their 3.0 spelling (its sub-schemas were translated already)."""
    schema = dict(schema)
    _nullable_any_of(schema)
    _nullable_type_list(schema)
    if isinstance(schema.get("examples"), list):
        examples = schema.pop("examples")
        if examples:
            schema.setdefault("example", examples[0])
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), int | float) and not isinstance(schema[bound], bool):
            schema[plain] = schema.pop(bound)
            schema[bound] = True
    if schema.pop("contentMediaType", None) is not None:
        schema.setdefault("format", "binary")
    if schema.pop("contentEncoding", None) == "base64":
        schema.setdefault("format", "base64")
    return schema


def _nullable_type_list(schema: dict) -> None:
    """``type: [X, "null"]`` → ``type: X, nullable``; several types (no 3.0 spelling) leave the schema untyped."""
    kinds = schema.get("type")
    if not isinstance(kinds, list):
        return
    rest = [k for k in kinds if k != "null"]
    if len(rest) < len(kinds):
        schema["nullable"] = True
    if len(rest) == 1:
        schema["type"] = rest[0]
    else:
        del schema["type"]


def _nullable_any_of(schema: dict) -> None:
    """``anyOf`` with a ``null`` member: the others, and ``nullable``; a single other member is merged in."""
    members = schema.get("anyOf")
    if not isinstance(members, list) or NULL not in members:
        return
    others = [m for m in members if m != NULL]
    del schema["anyOf"]
    schema["nullable"] = True
    if len(others) == 1 and "$ref" not in others[0]:
        for key, value in others[0].items():
            schema.setdefault(key, value)
    elif len(others) == 1:
        schema["allOf"] = others  # a $ref cannot sit beside nullable in 3.0: wrapped
    elif others:
        schema["anyOf"] = others
