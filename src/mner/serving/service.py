"""The HTTP service: ``POST /v1/tag``, ``GET /health``, a web demo at ``/``, the OpenAPI docs at ``/docs``.

    from mner.serving.pipeline import Pipeline
    from mner.serving.service import create_app
    app = create_app(Pipeline())             # the model and KG are loaded once, here
    # uvicorn.run(app) — or ``mner serve``

Every error is a JSON object ``{"error": "..."}`` that says what was expected. Bad input gets a 4xx
(400 malformed body, 413 over a limit, 415 wrong content type, 422 invalid post or image), never a 500.

Concurrency: a request reserves its body's bytes before the body is read, and a place among the requests being
tagged once it is in (``Admission``); each post is then prepared
(tokenised, its image decoded: ``Pipeline.prepare_later``) on the Pipeline's ``--threads`` threads, so that
decoding overlaps tagging; posts that arrive together are tagged in one batch (``Batcher``: it waits at most
``batch_wait_ms`` after the first post for others, up to ``max_batch`` posts) on one thread of its own, so the
Pipeline's tagging (the runtime's sessions, the KG's SQLite connection) is never used by two threads at once.
The event loop only reads requests and waits, so ``/health`` and the page answer while posts are tagged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from mner.channels.spec import CHANNELS, text_fields
from mner.data import MnerInputError, parse_json
from mner.serving.pipeline import PostInput
from mner.version import __version__
from mner.vision.decode import ImageError

log = logging.getLogger("mner.serving.service")

FIELDS = ("text", "image", *text_fields())  # what a request may carry (mner.channels.spec)
EXPECTED_JSON = (
    '{"text": str, "image"?: base64 str' + "".join(f', "{name}"?: str' for name in text_fields()) + "}"
)
_DATA_URL = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]+)*;base64,", re.IGNORECASE)


def default_max_chars() -> dict[str, int]:
    """The longest text each text field may hold, by field: the post's text and each channel's (the specs')."""
    return {name: CHANNELS[spec].max_chars for name, spec in _field_channels().items()}


def _field_channels() -> dict[str, str]:
    """Each text field of a request (``text`` and the channels' text fields) → the channel it fills."""
    return {
        spec.field: spec.name
        for spec in CHANNELS.values()
        if spec.field is not None and spec.reads in ("text", "words") and spec.max_chars is not None
    }


@dataclass(frozen=True)
class Limits:
    """What one request may carry (over a limit: a 413 naming it), and how many may queue (over: a 503).
    ``max_chars``: the longest text by field (those not given keep their defaults, ``default_max_chars``)."""

    max_chars: Mapping[str, int] = field(default_factory=default_max_chars)
    max_image_bytes: int = 10 * 1024 * 1024
    max_pending: int = 64  # requests in the service at once (reading or waiting to be tagged); more get 503
    max_buffered_bytes: int = 128 * 1024 * 1024  # request bodies held at once (announced sizes); more get 503
    max_batch: int = 16  # posts tagged in one batch
    batch_wait_ms: int = 5  # how long the first post of a batch waits for others to join it

    def __post_init__(self):
        unknown = sorted(set(self.max_chars) - set(default_max_chars()))
        if unknown:
            raise ValueError(f"Limits.max_chars: unknown field(s) {unknown}; expected some of {FIELDS}")
        object.__setattr__(self, "max_chars", {**default_max_chars(), **self.max_chars})
        values = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "max_chars"]
        values += [(f"max_chars[{name!r}]", n) for name, n in self.max_chars.items()]
        for name, value in values:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: the image as base64, the text and caption JSON-escaped, some slack."""
        base64_image = (self.max_image_bytes + 2) // 3 * 4
        return base64_image + 12 * sum(self.max_chars.values()) + 64 * 1024


# ------------------------------------------------------------------------------ request/response models


class _TagRequestBase(BaseModel):
    """A post to tag, as JSON. The same fields can be sent as multipart/form-data, with ``image`` a file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(description="The post's text.", examples=["Barack Obama visits Berlin"])
    image: str | None = Field(
        None, description="The post's image file (JPEG, PNG, ...) as base64; a data: URL prefix is accepted."
    )


# the channels' text fields, each optional (mner.channels.spec)
TagRequest = create_model(
    "TagRequest",
    __base__=_TagRequestBase,
    **{
        name: (
            str | None,
            Field(None, description=f"{CHANNELS[channel].summary.capitalize()} ('{channel}' channel)."),
        )
        for name, channel in _field_channels().items()
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
    attributes: list[Attribute] = Field(description="The image's top classes; empty without an image.")
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


# ---------------------------------------------------------------------------------------- the app


def create_app(pipeline, limits: Limits = Limits()) -> FastAPI:
    """The service around a loaded Pipeline (anything with ``prepare_later``, ``tag_prepared`` and ``describe``)."""
    tagging_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mner-tag")
    batcher = Batcher(pipeline, tagging_thread, limits.max_batch, limits.batch_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.stop()
        tagging_thread.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="mner",
        version=__version__,
        lifespan=lifespan,
        description="Multimodal named entity recognition for social-media posts: text + image "
        "(+ a knowledge graph) → PER/LOC/ORG/OTHER entities.",
        docs_url=None,  # served below from the swagger-ui-bundle package: /docs works offline
        redoc_url=None,
    )
    app.state.pipeline = pipeline
    app.state.limits = limits
    admission = app.state.admission = Admission(limits)
    _add_error_handlers(app)
    app.mount("/web", StaticFiles(packages=[("mner", "web")]), name="web")
    _add_docs(app)
    page = resources.files("mner").joinpath("web", "index.html").read_text(encoding="utf-8")

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
    def demo_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", response_model=HealthResponse)
    def health() -> JSONResponse:
        """The service is up; which model, channels, KG and image backbone it tags with."""
        return JSONResponse({"status": "ok", **pipeline.describe()})

    @app.post(
        "/v1/tag",
        response_model=TagResponse,
        openapi_extra=_TAG_REQUEST_DOC,
        responses={code: {"model": ErrorResponse, "description": why} for code, why in _TAG_ERRORS.items()},
    )
    async def tag(request: Request) -> Response:
        """Tag one post: JSON ``{text, image?, caption?}`` (image in base64) or multipart (image a file)."""
        try:
            reserved = admission.admit(request)  # before a byte of the body is read
        except RequestError as err:
            return error_response(err.status, err.message, err.headers)
        entered = False
        try:
            post = await read_post(request, limits)
            admission.enter()  # a place among the requests being tagged, once the body is in
            entered = True
            result = await batcher.tag(post)
        except RequestError as err:
            return error_response(err.status, err.message, err.headers)
        except ClientDisconnect:
            log.info("client went away before sending the whole request")
            return Response(status_code=400)  # nobody reads it
        finally:
            admission.release(reserved, entered)
        return JSONResponse(result)

    return app


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its scripts and styles from the installed swagger-ui-bundle (no CDN); it reads
    OpenAPI 3.0 only, so it is given the 3.1 document of /openapi.json in 3.0 (``mner.serving.openapi30``)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    from mner.serving.openapi30 import openapi_30

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/openapi-3.0.json", include_in_schema=False)
    def openapi_document_30() -> JSONResponse:
        return JSONResponse(openapi_30(app.openapi()))

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi-3.0.json",
            title="mner API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


_TAG_ERRORS = {
    400: "Malformed JSON, bad base64, or a malformed multipart body.",
    413: "Text, caption, image or the whole body over the service's limits.",
    415: "Content-Type is neither application/json nor multipart/form-data.",
    422: "Missing or empty text, unknown or mistyped fields, or an image the decoder refuses "
    "(not an image, truncated, too many pixels, too small).",
    503: "Too many posts already waiting; retry later.",
}

_TAG_REQUEST_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": TagRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "text": {"type": "string", "description": "The post's text."},
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "The post's image file.",
                        },
                        **{
                            name: {
                                "type": "string",
                                "description": CHANNELS[channel].summary.capitalize() + ".",
                            }
                            for name, channel in _field_channels().items()
                            if name != "text"
                        },
                    },
                }
            },
        },
    },
}


class Admission:
    """Requests let in in two steps, so that clients that stall cannot use up the places of working ones.
    Before its body is read, a request reserves its announced Content-Length (or the largest body when it
    announces none) out of ``max_buffered_bytes``: over, 503 with Retry-After before a byte of the body is read.
    Once its body is in, it takes one of ``max_pending`` places (the requests being prepared and tagged): over,
    503. A client that sends its headers and stalls holds only the bytes it announced until ``--read-timeout``
    cuts it off, never a place (64 such sockets made every request 503 for 30 s: issue #25). Used on the event
    loop's thread only."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.requests = 0
        self.bytes = 0

    def admit(self, request: Request) -> int:
        """Reserve the bytes of a request's body before it is read; returns the bytes reserved.

        Raises:
            RequestError: 400 (a Content-Length that is not a number), 413 (one over the body limit), 503 (the
            bodies held would be over ``max_buffered_bytes``).
        """
        limits = self.limits
        announced = request.headers.get("content-length")
        reserve = limits.max_body_bytes
        if announced is not None:
            if not announced.strip().isdigit():
                raise RequestError(400, f"Content-Length {announced!r} is not a number of bytes")
            if int(announced) > limits.max_body_bytes:
                raise RequestError(
                    413,
                    f"request body is {int(announced):,} bytes, over the {limits.max_body_bytes:,}-byte "
                    "limit (an image, the text, caption and context)",
                )
            reserve = int(announced)
        if self.bytes + reserve > limits.max_buffered_bytes:
            raise self._busy()
        self.bytes += reserve
        return reserve

    def enter(self) -> None:
        """Take a place for a request whose body is in.

        Raises:
            RequestError: 503, ``max_pending`` requests are in already.
        """
        if self.requests >= self.limits.max_pending:
            raise self._busy()
        self.requests += 1

    def _busy(self) -> RequestError:
        limits = self.limits
        return RequestError(
            503,
            f"server busy: {self.requests} requests in progress (at most {limits.max_pending}, holding at most "
            f"{limits.max_buffered_bytes:,} bytes of bodies); retry later",
            {"Retry-After": "1"},
        )

    def release(self, reserve: int, entered: bool) -> None:
        self.requests -= entered
        self.bytes -= reserve


class Batcher:
    """Posts prepared on the Pipeline's threads, then those that arrive together tagged in one batch on the
    tagging thread (see the module docstring); each post's answer is what tagging it alone gives."""

    def __init__(self, pipeline, executor: ThreadPoolExecutor, max_batch: int, wait: float):
        self.pipeline, self.executor = pipeline, executor
        self.max_batch, self.wait = max_batch, wait
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def tag(self, post: PostInput) -> dict:
        """The post's result as JSON.

        Raises:
            RequestError: 422 for a post the Pipeline refuses (its reason).
        """
        loop = asyncio.get_running_loop()
        if self.task is None:  # started on the event loop that serves the requests
            self.queue = asyncio.Queue()
            self.task = loop.create_task(self._run())
        prepared = (await asyncio.wrap_future(self.pipeline.prepare_later([post])))[0]
        answer = loop.create_future()
        self.queue.put_nowait((prepared, answer))  # bounded: Admission lets at most max_pending requests in
        return await answer

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            try:
                results = await loop.run_in_executor(
                    self.executor, tag_posts, self.pipeline, [p for p, _ in batch]
                )
            except Exception as err:  # noqa: BLE001 - a crash answers its requests with the crash, not a hang
                results = [err] * len(batch)
            for (_, answer), result in zip(batch, results, strict=True):
                if answer.done():  # the client went away
                    continue
                if isinstance(result, Exception):
                    answer.set_exception(result)
                else:
                    answer.set_result(result)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


def tag_posts(pipeline, prepared: list) -> list[dict | RequestError]:
    """The Pipeline's result for each prepared post as JSON; a post's input error becomes a 422 naming the
    reason."""
    out: list[dict | RequestError] = []
    for result in pipeline.tag_prepared(prepared):
        if isinstance(result, ImageError):
            # the reason without the name the Pipeline gives an upload ("<upload>: ...")
            out.append(RequestError(422, f"image: {result.reason}"))
        elif isinstance(result, MnerInputError):
            out.append(RequestError(422, str(result)))
        else:
            out.append(result.to_dict())
    return out


# ----------------------------------------------------------------------------------- reading requests


async def read_post(request: Request, limits: Limits) -> PostInput:
    """The post in a JSON, multipart or urlencoded request, checked against ``limits``.

    Raises:
        RequestError: 400, 413, 415 or 422 with a message naming what was expected.
        ClientDisconnect: the client went away mid-body.
    """
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in ("application/json", "multipart/form-data", "application/x-www-form-urlencoded"):
        raise RequestError(
            415,
            f"unsupported Content-Type {content_type or '(none)'!r}: expected "
            "application/json or multipart/form-data",
        )
    body = await read_body(request, limits.max_body_bytes)
    if media_type == "application/json":
        post = await run_in_threadpool(post_from_body, body, limits)  # parsing ~13 MB takes tens of ms
    else:  # multipart, or a urlencoded form (text and caption only)
        post = await run_in_threadpool(post_from_form, body, content_type)
    check_post(post, limits)
    return post


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused from its Content-Length when it announces too much, else when it gets there."""
    announced = request.headers.get("content-length")
    if announced is not None:
        if not announced.strip().isdigit():
            raise RequestError(400, f"Content-Length {announced!r} is not a number of bytes")
        if int(announced) > max_bytes:
            raise RequestError(
                413,
                f"request body is {int(announced):,} bytes, over the {max_bytes:,}-byte "
                "limit (an image, the text, caption and context)",
            )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:  # a chunked body that announced nothing, or one that lied
            raise RequestError(
                413,
                f"request body is over the {max_bytes:,}-byte limit (an image, the text, caption and context)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def post_from_body(body: bytes, limits: Limits) -> PostInput:
    """The post in a JSON body; the image's base64 is decoded here."""
    try:
        data = parse_json(body)
    except ValueError as err:  # not JSON, too deep, an over-long integer, a lone surrogate
        raise RequestError(
            400,
            f"malformed JSON: {err}; expected an object " + EXPECTED_JSON,
        ) from None
    try:
        request = TagRequest.model_validate(data)
    except ValidationError as err:
        raise RequestError(
            422,
            "invalid request: " + validation_message(err) + "; expected " + EXPECTED_JSON,
        ) from None
    image = None if request.image is None else decode_base64_image(request.image, limits)
    return PostInput(request.text, image, **{name: getattr(request, name) or None for name in text_fields()})


def decode_base64_image(value: str, limits: Limits) -> bytes:
    """The image bytes of a base64 string (a ``data:...;base64,`` prefix is dropped)."""
    value = "".join(_DATA_URL.sub("", value.strip(), count=1).split())  # line breaks, as `base64` prints them
    if len(value) // 4 * 3 > limits.max_image_bytes + 2:  # refused before decoding
        raise RequestError(
            413,
            f"image is about {len(value) // 4 * 3:,} bytes, over the {limits.max_image_bytes:,}-byte limit",
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(
            400, f"'image' is not valid base64 ({err}): expected the image file's bytes base64-encoded"
        ) from None


@dataclass
class FormPart:
    """One field of a form: its name, its file name (None for a text field) and its bytes."""

    name: str
    filename: str | None
    data: bytearray = field(default_factory=bytearray)


MAX_FORM_PARTS = 2 * len(FIELDS)  # more is not a post's form


def form_parts(body: bytes, content_type: str) -> list[FormPart]:
    """The fields of a multipart/form-data body (each part, as bytes) or of a urlencoded one.

    Raises:
        RequestError: 400, a malformed body or one with more than ``MAX_FORM_PARTS`` parts.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    media_type, options = parse_options_header(content_type)
    if media_type == b"application/x-www-form-urlencoded":
        return _urlencoded_parts(body)
    boundary = options.get(b"boundary")
    if not boundary:
        raise RequestError(400, "malformed multipart body: Missing boundary in multipart.")
    parts: list[FormPart] = []
    header = {"name": b"", "value": b"", "disposition": b""}

    def on_header_field(data, start, end):
        header["name"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        if header["name"].lower() == b"content-disposition":
            header["disposition"] = header["value"]
        header["name"] = header["value"] = b""

    def on_headers_finished():
        _, params = parse_options_header(header["disposition"])
        header["disposition"] = b""
        if b"name" not in params:
            raise RequestError(
                400, 'malformed multipart body: a part without a "name" in its Content-Disposition'
            )
        if len(parts) >= MAX_FORM_PARTS:
            raise RequestError(400, f"malformed multipart body: more than {MAX_FORM_PARTS} parts")
        filename = params.get(b"filename")
        parts.append(
            FormPart(
                params[b"name"].decode("utf-8", "replace"),
                None if filename is None else filename.decode("utf-8", "replace"),
            )
        )

    def on_part_data(data, start, end):
        parts[-1].data += data[start:end]

    callbacks = {
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except RequestError:
        raise
    except Exception as err:  # noqa: BLE001 - python-multipart's refusals of a malformed body
        raise RequestError(400, f"malformed multipart body: {err}") from None
    return parts


def _urlencoded_parts(body: bytes) -> list[FormPart]:
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_PARTS,
        )
    except UnicodeDecodeError as err:
        raise RequestError(
            400, f"malformed form: not UTF-8 (byte 0x{err.object[err.start]:02x}): expected UTF-8 text"
        ) from None
    except ValueError as err:
        raise RequestError(400, f"malformed form: {err}") from None
    return [FormPart(name, None, bytearray(value.encode("utf-8"))) for name, value in pairs]


def _form_text(part: FormPart) -> str:
    """A text field's value, which must be UTF-8 (as a JSON body must)."""
    try:
        return part.data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(
            400,
            f"form field {part.name!r} is not UTF-8 (byte 0x{part.data[err.start]:02x} at offset {err.start}): "
            "expected UTF-8 text",
        ) from None


def post_from_form(body: bytes, content_type: str) -> PostInput:
    """The post in a multipart/form-data body (``text``, the channels' text fields, an ``image`` file) or a
    urlencoded one (no image). Text fields must be UTF-8, as a JSON body must (never read as Latin-1)."""
    parts = form_parts(body, content_type)
    unknown = sorted({p.name for p in parts} - set(FIELDS))
    if unknown:
        raise RequestError(
            422,
            f"unknown form field(s) {', '.join(map(repr, unknown))}: expected "
            f"'text', an 'image' file, {', '.join(map(repr, text_fields()))}",
        )
    given = {}
    for part in parts:
        if part.name in given:
            times = sum(p.name == part.name for p in parts)
            raise RequestError(422, f"form field {part.name!r} is given {times} times; expected it once")
        given[part.name] = part
    for name in ("text", *text_fields()):
        if name in given and given[name].filename is not None:
            raise RequestError(422, f"form field {name!r} is a file: expected a text field")
    image = given.get("image")
    if image is not None and image.filename is None and image.data:
        raise RequestError(
            422, "form field 'image' is text: expected a file part (Content-Disposition with a filename)"
        )
    if "text" not in given:
        raise RequestError(422, "missing form field 'text': expected the post's words")
    texts = {name: _form_text(given[name]) if name in given else None for name in text_fields()}
    # a form whose file input was left empty sends a part with no filename and no bytes: no image
    no_image = image is None or (not image.data and not image.filename)
    return PostInput(
        _form_text(given["text"]),
        None if no_image else bytes(image.data),
        **{name: value or None for name, value in texts.items()},
    )


def check_post(post: PostInput, limits: Limits) -> None:
    """Refuse a post over ``limits`` (413) or with no words (422)."""
    for name, limit in limits.max_chars.items():
        value = getattr(post, name)
        if value is not None and len(value) > limit:
            what = "text" if name == "text" else name
            raise RequestError(
                413, f"{what} is {len(value):,} characters, over the {limit:,}-character limit"
            )
    if not post.text.strip():
        raise RequestError(422, "'text' is empty: expected the words of a post")
    if post.image is not None and len(post.image) > limits.max_image_bytes:
        raise RequestError(
            413, f"image is {len(post.image):,} bytes, over the {limits.max_image_bytes:,}-byte limit"
        )


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


# --------------------------------------------------------------------------------------------- errors


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": ...}``; a crash is logged here and never shown to the client."""

    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such path {request.url.path!r}: see /docs for the API"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path!r}: see /docs for the API"
        return error_response(exc.status_code, message, exc.headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, "invalid request: " + "; ".join(str(e.get("msg")) for e in exc.errors()))

    async def crash(request: Request, exc: Exception) -> Response:
        log.error(
            "internal error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc
        )
        return error_response(
            500, "internal error while handling the request; the server log has the details"
        )

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, crash)


# ----------------------------------------------------------------------------------------- the server


def server_config(app, host: str = "127.0.0.1", port: int = 8000, read_timeout: float = 30.0, **options):
    """uvicorn's config for the app, with a deadline on reading each request: a client that has not sent its
    whole request (headers and body) ``read_timeout`` seconds after it started is cut off, so stalled or
    trickling clients cannot hold connections (uvicorn alone waits for them forever)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=_deadline_protocol(read_timeout), **options)


def listening_socket(host: str, port: int):
    """A socket bound to ``host:port`` for uvicorn to serve on (``uvicorn.Server.run(sockets=[...])``): binding
    it first lets ``mner serve`` refuse a port in use with one line, before it loads the model.

    Raises:
        OSError: the address cannot be bound (in use, not this machine's, a privileged port).
    """
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts reuse the port
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _deadline_protocol(read_timeout: float):
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DeadlineProtocol(H11Protocol):
        """uvicorn's h11 protocol with a read deadline per request (see ``server_config``)."""

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._deadline = None
            self._arm()

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(read_timeout, self._read_timed_out)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
                self._disarm()  # the whole request is in: the time to answer it is the app's

        def on_response_complete(self) -> None:
            super().on_response_complete()
            waiting = self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
            if waiting and not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _read_timed_out(self) -> None:
            self._deadline = None
            if self.transport.is_closing() or self.conn.their_state in (h11.DONE, h11.MUST_CLOSE):
                return
            self.logger.info("closing a connection that sent no whole request in %g s", read_timeout)
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.close()

    return DeadlineProtocol
