"""The service's request and response schema: the fields a request may carry, the JSON models (also the
OpenAPI schema), and ``RequestError``, a refusal that becomes ``{"error": message}`` with a status."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from mner.channels.spec import CHANNELS, text_fields

FIELDS = ("text", "image", *text_fields())  # what a request may carry (mner.channels.spec)
FLAGS = ("attributes",)  # what a request may ask for besides its post: a bool
EXPECTED_JSON = (
    '{"text": str, "image"?: base64 str'
    + "".join(f', "{name}"?: str' for name in text_fields())
    + "".join(f', "{name}"?: bool' for name in FLAGS)
    + "}"
)
ATTRIBUTES_HELP = (
    "Read the image for its top-5 ImageNet classes ('attributes' of the answer). Without it the image is read only "
    "by a model that uses it (GET /health's 'images' says), else it is not opened and 'attributes' is null."
)


def default_max_chars() -> dict[str, int]:
    """The longest text each text field may hold, by field: the post's text and each channel's (the specs')."""
    return {name: CHANNELS[spec].max_chars for name, spec in field_channels().items()}


def field_channels() -> dict[str, str]:
    """Each text field of a request (``text`` and the channels' text fields) → the channel it fills."""
    return {
        spec.field: spec.name
        for spec in CHANNELS.values()
        if spec.field is not None and spec.reads in ("text", "words") and spec.max_chars is not None
    }


class _TagRequestBase(BaseModel):
    """A post to tag, as JSON. The same fields can be sent as multipart/form-data, with ``image`` a file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(description="The post's text.", examples=["Barack Obama visits Berlin"])
    image: str | None = Field(
        None, description="The post's image file (JPEG, PNG, ...) as base64; a data: URL prefix is accepted."
    )
    attributes: bool = Field(False, description=ATTRIBUTES_HELP)


# the channels' text fields, each optional (mner.channels.spec)
TagRequest = create_model(
    "TagRequest",
    __base__=_TagRequestBase,
    **{
        name: (
            str | None,
            Field(None, description=f"{CHANNELS[channel].summary.capitalize()} ('{channel}' channel)."),
        )
        for name, channel in field_channels().items()
        if name != "text"
    },
)


class Entity(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str = Field(description="The entity as written in the post's text: text[start_char:end_char].")
    type: str = Field(
        description="One of the model's entity types (the shipped models: PER, LOC, ORG, OTHER)."
    )
    start: int = Field(description="First token of the entity.")
    end: int = Field(description="Token after the entity (exclusive).")
    score: float | None = Field(description="The model's probability of this entity (its CRF's marginal).")
    start_char: int | None = Field(
        description="First character of the entity in the text sent (Python str index)."
    )
    end_char: int | None = Field(description="Character after the entity in the text sent (exclusive).")


class Attribute(BaseModel):
    model_config = ConfigDict(extra="allow")

    label: str = Field(description="An ImageNet class seen in the image.")
    probability: float


class _TagResponseBase(BaseModel):
    """What ``mner predict --json`` prints for the same post."""

    model_config = ConfigDict(extra="allow")

    tokens: list[str]
    entities: list[Entity]
    attributes: list[Attribute] | None = Field(
        description="The image's top classes; empty without an image; null: the image was not read (the model "
        "reads none, and the request did not ask for attributes)."
    )
    knowledge: dict[str, Any] | None = Field(description="The KG entity and triples used; null without a KG.")
    warnings: list[str] = Field(
        [],
        description="Only present when the post had something it could not use (a context listing no entity).",
    )
    read_as: dict[str, Any] | None = Field(
        None,
        description="How the context was read: {entities: [{name, kind, type, in_post}], route, path}; only "
        "present when the model reads the post's context.",
    )


# and the channels' text fields the post was tagged with (mner.channels.spec)
TagResponse = create_model(
    "TagResponse",
    __base__=_TagResponseBase,
    **{
        name: (str | None, Field(description=f"The {name} the post was tagged with; null without one."))
        for name in text_fields()
    },
)


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str = Field(examples=["ok"])
    model: Any = None
    channels: list[str] = []
    files: dict[str, str] = Field(
        {}, description="The file that fills each channel that has one, by channel."
    )
    image_backbone: Any = None
    images: str | None = Field(
        None, description="What is done with posts' images: read (the model uses them), or only on request."
    )
    warnings: list[str] = Field(
        [], description="What the service cannot fill for every post, e.g. no KG for a 'knowledge' channel."
    )


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong and what was expected.")


class RequestError(Exception):
    """A request the service refuses: becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def validation_message(err: ValidationError) -> str:
    """Pydantic's errors as one line: ``missing field 'text'; 'image': expected a string, got int``."""
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"])
        if e["type"] == "missing":
            parts.append(f"missing field {where!r}")
        elif e["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif e["type"] == "model_type":
            parts.append(f"expected a JSON object, got {type(e['input']).__name__}")
        else:
            parts.append(f"{where!r}: {e['msg']}, got {type(e['input']).__name__}")
    return "; ".join(parts)
