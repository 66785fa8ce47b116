"""The HTTP service: ``POST /v1/tag``, ``GET /health``, a web demo at ``/``, the OpenAPI docs at ``/docs``.

    from mner.serving.pipeline import Pipeline
    from mner.serving.service import create_app
    app = create_app(Pipeline())             # the model and KG are loaded once, here
    # uvicorn.run(app) — or ``mner serve``

Every error is a JSON object ``{"error": "..."}`` that says what was expected. Bad input gets a 4xx
(400 malformed body, 413 over a limit, 415 wrong content type, 422 invalid post or image), never a 500.

Concurrency: a request holds its body's bytes as they arrive, and a place among the requests being
tagged once it is in (``Admission``); each post is then prepared
(tokenised, its image decoded: ``Pipeline.prepare_later``) on the Pipeline's ``--threads`` threads, so that
decoding overlaps tagging; posts that arrive together are tagged in one batch (``Batcher``: it waits at most
``batch_wait_ms`` after the first post for others, up to ``max_batch`` posts) on one thread of its own, so the
Pipeline's tagging (the runtime's sessions, the KG's SQLite connection) is never used by two threads at once.
The event loop only reads requests and waits, so ``/health`` and the page answer while posts are tagged.

This module builds the app; its parts are in ``mner.serving.http``: ``schema`` (the request and response models),
``admission`` (``Limits``, ``Admission``), ``batcher``, ``reading`` (a request's post: JSON), ``forms``
(multipart and urlencoded) and ``server`` (uvicorn with a read deadline).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from mner.channels.spec import CHANNELS
from mner.serving.http.admission import Admission, Limits
from mner.serving.http.batcher import Batcher
from mner.serving.http.reading import read_post
from mner.serving.http.schema import (
    ATTRIBUTES_HELP,
    FIELDS,
    Attribute,
    Entity,
    ErrorResponse,
    HealthResponse,
    RequestError,
    TagRequest,
    TagResponse,
    field_channels,
)
from mner.serving.http.server import listening_socket, server_config
from mner.version import __version__

__all__ = [
    "FIELDS",
    "Attribute",
    "Entity",
    "Limits",
    "TagRequest",
    "TagResponse",
    "create_app",
    "listening_socket",
    "server_config",
]

log = logging.getLogger("mner.serving.service")
DEFAULT_LIMITS = Limits()  # frozen: one shared default is safe


def create_app(pipeline, limits: Limits = DEFAULT_LIMITS) -> FastAPI:
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
        """Tag one post: JSON ``{text, image?, caption?, context?, attributes?}`` (image in base64) or multipart
        (image a file)."""
        try:
            ticket = admission.admit(request)  # before a byte of the body is read
        except RequestError as err:
            return error_response(err.status, err.message, err.headers)
        try:
            post = await read_post(request, limits, lambda size: admission.hold(ticket, size))
            admission.enter(ticket)  # a place among the requests being tagged, once the body is in
            result = await batcher.tag(post)
        except RequestError as err:
            return error_response(err.status, err.message, err.headers)
        except ClientDisconnect:
            log.info("client went away before sending the whole request")
            return Response(status_code=400)  # nobody reads it
        finally:
            admission.release(ticket)
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
                            for name, channel in field_channels().items()
                            if name != "text"
                        },
                        "attributes": {
                            "type": "boolean",
                            "default": False,
                            "description": ATTRIBUTES_HELP + " In a form: true or false (1 or 0, on or off).",
                        },
                    },
                }
            },
        },
    },
}


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
