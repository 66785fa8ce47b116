"""Reading a request's post: its body (bounded), then JSON or a form, checked against the limits."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from mner.channels.spec import text_fields
from mner.data import parse_json
from mner.serving.http.admission import Limits
from mner.serving.http.forms import post_from_form
from mner.serving.http.schema import EXPECTED_JSON, RequestError, TagRequest, validation_message
from mner.serving.pipeline import PostInput

_DATA_URL = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]+)*;base64,", re.IGNORECASE)


async def read_post(
    request: Request, limits: Limits, on_bytes: Callable[[int], None] = lambda size: None
) -> PostInput:
    """The post in a JSON, multipart or urlencoded request, checked against ``limits``; ``on_bytes`` is told the
    size of each piece of the body as it arrives (``Admission.hold``: it may refuse it).

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
    body = await read_body(request, limits.max_body_bytes, on_bytes)
    if media_type == "application/json":
        post = await run_in_threadpool(post_from_body, body, limits)  # parsing ~13 MB takes tens of ms
    else:  # multipart, or a urlencoded form (text and caption only)
        post = await run_in_threadpool(post_from_form, body, content_type)
    check_post(post, limits)
    return post


async def read_body(
    request: Request, max_bytes: int, on_bytes: Callable[[int], None] = lambda size: None
) -> bytes:
    """The whole body, refused from its Content-Length when it announces too much, else when it gets there;
    ``on_bytes`` is called with each piece's size as it arrives."""
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
        on_bytes(len(chunk))
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
    return PostInput(
        request.text,
        image,
        attributes=request.attributes,
        **{name: getattr(request, name) or None for name in text_fields()},
    )


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
