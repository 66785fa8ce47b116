"""The HTTP service over real HTTP (uvicorn on 127.0.0.1) with the shipped model: tagging, limits, errors,
concurrency and clients that go away."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytest.importorskip("skimage.data")

from mner.serving.pipeline import Pipeline
from mner.serving.result import TagResult
from mner.serving.service import Limits, TagResponse, create_app
from tests.serving import photo_jpeg, running_server

POST = "Barack Obama visits Berlin"
EXPECTED = '{"text": str, "image"?: base64 str, "caption"?: str, "context"?: str, "attributes"?: bool}'
SMALL = Limits(max_chars={"text": 100, "caption": 20, "context": 100}, max_image_bytes=50_000, max_pending=64)


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline()


@pytest.fixture(scope="module")
def url(pipeline):
    with running_server(create_app(pipeline)) as base:
        yield base


@pytest.fixture(scope="module")
def small_url(pipeline):
    """A server with small limits, so that going over them takes kilobytes, not megabytes."""
    with running_server(create_app(pipeline, SMALL)) as base:
        yield base


@pytest.fixture(scope="module")
def photo():
    return photo_jpeg("astronaut")


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png(width: int, height: int) -> bytes:
    """A 1-bit PNG: 10,000×10,000 pixels compress to ~12 KB, so a pixel bomb needs no large upload."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG")
    return out.getvalue()


def raw_exchange(url: str, request: bytes, close_after_send: bool = False, timeout: float = 20) -> bytes:
    """Send raw bytes to the server; return what it answers until it closes (b"" if we close first)."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if close_after_send:
            return b""
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and _body_complete(answer):
                break
        return answer


def _body_complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


# ------------------------------------------------------------------------------------------ tagging


def test_health_describes_the_loaded_pipeline(client, pipeline):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", **pipeline.describe()}


def test_health_says_what_the_service_cannot_fill_for_every_post(pipeline):
    assert Pipeline("text").describe()["warnings"] == []  # the text model reads nothing more
    assert pipeline.describe()["warnings"] == [  # the default reads a context, which a request may carry
        (
            "the model was trained with 'context', and no context file is given (--context-file): a post without "
            "its own is "
            "tagged without it"
        )
    ]
    full = Pipeline("paper-full")
    with running_server(create_app(full)) as base:
        health = httpx.get(base + "/health", timeout=10).json()
    assert health["warnings"] == [
        (
            "the model was trained with 'caption', and no captions file is given (--captions): a post without its "
            "own caption or an image is tagged without it; 'knowledge', and no KG is given (--kg): every post is "
            "tagged without it"
        )
    ]


def test_json_post_with_base64_image_gives_the_pipeline_dict(client, pipeline, photo):
    response = client.post("/v1/tag", json={"text": POST, "image": b64(photo), "attributes": True})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result == pipeline.tag(POST, image=photo, attributes=True).to_dict()
    entities = [(e["text"], e["type"]) for e in result["entities"]]
    assert entities == [("Barack Obama", "PER"), ("Berlin", "LOC")]
    assert len(result["attributes"]) == 5 and all(0 < a["probability"] <= 1 for a in result["attributes"])
    TagResponse.model_validate(result)  # the documented response model fits what is sent


def test_an_image_is_read_only_when_the_request_asks_for_attributes(client, pipeline, photo):
    """The default reads no image: a post's image is not opened (not even one that is no image) and its
    'attributes' is null, unless the request asks for them ("attributes": true, or the form field)."""
    assert pipeline.describe()["images"].startswith("not read: the model reads no image")
    for image in (photo, b"hello, not a picture"):
        as_json = client.post("/v1/tag", json={"text": POST, "image": b64(image)})
        as_form = client.post(
            "/v1/tag", files={"text": (None, POST), "image": ("p.jpg", image, "image/jpeg")}
        )
        for response in (as_json, as_form):
            assert response.status_code == 200, response.text
            assert response.json() == {**pipeline.tag(POST).to_dict(), "attributes": None}
            TagResponse.model_validate(response.json())
    asked = client.post(
        "/v1/tag",
        files={"text": (None, POST), "image": ("p.jpg", photo, "image/jpeg"), "attributes": (None, "true")},
    )
    assert asked.status_code == 200 and len(asked.json()["attributes"]) == 5
    refused = client.post("/v1/tag", json={"text": POST, "image": b64(b"hello"), "attributes": True})
    assert (refused.status_code, refused.json()) == (
        422,
        {"error": "image: not an image (unrecognised format)"},
    )
    bad_flag = client.post("/v1/tag", files={"text": (None, POST), "attributes": (None, "maybe")})
    assert (bad_flag.status_code, bad_flag.json()) == (
        422,
        {"error": "form field 'attributes' is 'maybe': expected true or false (1 or 0, on or off)"},
    )


def test_multipart_post_equals_the_json_post(client, photo):
    fields = {"text": POST, "caption": "a man in a space suit"}
    multipart = client.post("/v1/tag", data=fields, files={"image": ("photo.jpg", photo, "image/jpeg")})
    as_json = client.post("/v1/tag", json={**fields, "image": b64(photo)})
    assert multipart.status_code == 200, multipart.text
    assert multipart.json() == as_json.json()
    assert multipart.json()["caption"] == "a man in a space suit"


def test_text_only_post_has_no_attributes(client, pipeline):
    as_json = client.post("/v1/tag", json={"text": POST})
    as_multipart = client.post("/v1/tag", files={"text": (None, POST)})
    for response in (as_json, as_multipart):
        assert response.status_code == 200, response.text
        assert response.json() == pipeline.tag(POST).to_dict()
        assert response.json()["attributes"] == [] and response.json()["knowledge"] is None


def test_an_empty_file_input_means_no_image(client, pipeline):
    # what a browser sends for a form whose file input was left empty
    empty_file = ("", b"", "application/octet-stream")
    response = client.post("/v1/tag", data={"text": POST}, files={"image": empty_file})
    assert response.status_code == 200, response.text
    assert response.json() == pipeline.tag(POST).to_dict()


def test_a_data_url_is_accepted_as_base64(client, photo):
    plain = client.post("/v1/tag", json={"text": POST, "image": b64(photo)}).json()
    data_url = client.post("/v1/tag", json={"text": POST, "image": "data:image/jpeg;base64," + b64(photo)})
    assert data_url.status_code == 200 and data_url.json() == plain


def test_openapi_documents_both_request_bodies_and_the_models(client):
    spec = client.get("/openapi.json").json()
    tag = spec["paths"]["/v1/tag"]["post"]
    assert set(tag["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert tag["requestBody"]["content"]["application/json"]["schema"]["required"] == ["text"]
    form = tag["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["image"]["format"] == "binary" and form["required"] == ["text"]
    assert tag["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TagResponse"
    }
    assert {"400", "413", "415", "422", "503"} <= set(tag["responses"])
    models = {"TagResponse", "Entity", "Attribute", "ErrorResponse", "HealthResponse"}
    assert models <= set(spec["components"]["schemas"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# ----------------------------------------------------------------------------------------- bad input


BAD_JSON = [
    (
        b"{bad",
        400,
        (
            "malformed JSON: not JSON (Expecting property name enclosed in double quotes at column 2); "
            f"expected an object {EXPECTED}"
        ),
    ),
    (b"\xff\xfe\x00", 400, None),
    (b'{"text": ""}', 422, "'text' is empty: expected the words of a post"),
    (b'{"text": "  \\n "}', 422, "'text' is empty: expected the words of a post"),
    (b"{}", 422, f"invalid request: missing field 'text'; expected {EXPECTED}"),
    (b"[1, 2]", 422, f"invalid request: expected a JSON object, got list; expected {EXPECTED}"),
    (
        b'{"text": 3}',
        422,
        (f"invalid request: 'text': Input should be a valid string, got int; expected {EXPECTED}"),
    ),
    (b'{"text": "a", "img": "x"}', 422, f"invalid request: unknown field 'img'; expected {EXPECTED}"),
    (
        b'{"text": "a", "image": "not base64!"}',
        400,
        (
            "'image' is not valid base64 (Only base64 data is allowed): "
            "expected the image file's bytes base64-encoded"
        ),
    ),
    (b'{"text": "a", "image": "", "attributes": true}', 422, "image: empty file (0 bytes)"),
    (
        json.dumps({"text": "a", "image": b64(b"hello, not a picture"), "attributes": True}).encode(),
        422,
        "image: not an image (unrecognised format)",
    ),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_JSON, ids=[str(i) for i in range(len(BAD_JSON))])
def test_bad_json_bodies_get_4xx_with_a_clear_message(client, body, status, message):
    response = client.post("/v1/tag", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    if message is not None:
        assert response.json()["error"] == message
    else:
        assert response.json()["error"].startswith("malformed JSON: ")


def test_a_truncated_jpeg_is_refused_with_the_decoders_reason(client, photo):
    cut = ("cut.jpg", photo[:4000], "image/jpeg")
    response = client.post("/v1/tag", files={"text": (None, POST), "image": cut, "attributes": (None, "on")})
    assert (response.status_code, response.json()) == (422, {"error": "image: truncated image data"})


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(client):
    response = client.post(
        "/v1/tag", json={"text": POST, "image": b64(png(10_000, 10_000)), "attributes": True}
    )
    assert (response.status_code, response.json()) == (
        422,
        {
            "error": (
                "image: image is 10000×10000 (100,000,000 pixels), over the 89,478,485-pixel limit (decompression "
                "bomb); not decoded"
            )
        },
    )


def test_a_tiny_image_is_refused(client):
    dot = ("dot.png", png(4, 4), "image/png")
    response = client.post("/v1/tag", files={"text": (None, POST), "image": dot, "attributes": (None, "1")})
    assert (response.status_code, response.json()) == (
        422,
        {"error": "image: image is 4×4 pixels; the smallest accepted side is 8"},
    )


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/plain", b"Barack Obama"), (None, b"Barack Obama"), ("application/xml", b"<text>a</text>")],
)
def test_other_content_types_get_415(client, content_type, body):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/tag", content=body, headers=headers)
    shown = repr(content_type) if content_type else "'(none)'"
    assert (response.status_code, response.json()) == (
        415,
        {"error": (f"unsupported Content-Type {shown}: expected application/json or multipart/form-data")},
    )


FORM_ERRORS = [
    (
        {"data": {"caption": "x"}, "files": {"image": ("p.jpg", b"\xff\xd8", "image/jpeg")}},
        422,
        "missing form field 'text': expected the post's words",
    ),
    (
        {"files": {"text": ("post.txt", b"Barack Obama", "text/plain")}},
        422,
        "form field 'text' is a file: expected a text field",
    ),
    (
        {"files": {"text": (None, "a"), "image": (None, "aGVsbG8=")}},
        422,
        "form field 'image' is text: expected a file part (Content-Disposition with a filename)",
    ),
    (
        {"files": {"text": (None, "a"), "picture": ("p.jpg", b"x", "image/jpeg")}},
        422,
        "unknown form field(s) 'picture': expected 'text', an 'image' file, 'caption', 'context', 'attributes'",
    ),
    (
        {"files": [("text", (None, "a")), ("text", (None, "b"))]},
        422,
        "form field 'text' is given 2 times; expected it once",
    ),
    ({"files": {"text": (None, "")}}, 422, "'text' is empty: expected the words of a post"),
]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"), FORM_ERRORS, ids=[str(i) for i in range(len(FORM_ERRORS))]
)
def test_bad_multipart_forms_get_4xx_with_a_clear_message(client, request_kwargs, status, message):
    response = client.post("/v1/tag", **request_kwargs)
    assert (response.status_code, response.json()) == (status, {"error": message})


def test_a_multipart_body_without_its_boundary_is_a_400(client):
    response = client.post("/v1/tag", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "malformed multipart body: Missing boundary in multipart."},
    )


# ------------------------------------------------------------------------------------------- limits


def test_text_and_caption_over_their_limits_get_413(small_url):
    with httpx.Client(base_url=small_url, timeout=60) as c:
        long_text = c.post("/v1/tag", json={"text": "word " * 21})
        long_caption = c.post("/v1/tag", files={"text": (None, "a"), "caption": (None, "c" * 21)})
        at_limits = c.post("/v1/tag", json={"text": "a" * 100, "caption": "c" * 20})
    assert (long_text.status_code, long_text.json()) == (
        413,
        {"error": "text is 105 characters, over the 100-character limit"},
    )
    assert (long_caption.status_code, long_caption.json()) == (
        413,
        {"error": "caption is 21 characters, over the 20-character limit"},
    )
    assert at_limits.status_code == 200, at_limits.text


def test_the_default_text_limit_is_5000_characters(client):
    response = client.post("/v1/tag", json={"text": "a " * 2500 + "b"})
    assert (response.status_code, response.json()) == (
        413,
        {"error": "text is 5,001 characters, over the 5,000-character limit"},
    )


def test_an_image_over_the_byte_limit_gets_413(small_url):
    big = photo_jpeg("astronaut", quality=100)  # ~150 KB, over the small server's 50,000 bytes
    assert len(big) > SMALL.max_image_bytes
    with httpx.Client(base_url=small_url, timeout=60) as c:
        as_file = c.post("/v1/tag", files={"text": (None, POST), "image": ("big.jpg", big, "image/jpeg")})
        as_base64 = c.post("/v1/tag", json={"text": POST, "image": b64(big[:60_000])})
    assert (as_file.status_code, as_file.json()) == (
        413,
        {
            "error": f"request body is {int(as_file.request.headers['content-length']):,} bytes, over the "
            f"{SMALL.max_body_bytes:,}-byte limit (an image, the text, caption and context)"
        },
    )
    assert (as_base64.status_code, as_base64.json()) == (
        413,
        {"error": "image is about 60,000 bytes, over the 50,000-byte limit"},
    )


def test_an_11_mb_upload_is_refused_by_the_default_limit(client):
    data = b"\xff\xd8" + bytes(11_000_000)
    response = client.post("/v1/tag", files={"text": (None, POST), "image": ("huge.jpg", data, "image/jpeg")})
    assert (response.status_code, response.json()) == (
        413,
        {"error": f"image is {len(data):,} bytes, over the 10,485,760-byte limit"},
    )


def test_an_announced_content_length_over_the_limit_is_refused_before_the_body(url):
    head = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\n\r\n"
    )  # and no body at all: the answer must not wait for it
    answer = raw_exchange(url, head)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {
        "error": (
            f"request body is 1,000,000,000 bytes, over the {Limits().max_body_bytes:,}-byte limit "
            "(an image, the text, caption and context)"
        )
    }


def test_a_chunked_body_is_cut_off_at_the_limit(small_url):
    def chunks():
        for _ in range(100):  # 400 KB in all, with no Content-Length
            yield b"x" * 4096

    with httpx.Client(base_url=small_url, timeout=60) as c:
        response = c.post("/v1/tag", content=chunks(), headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (
        413,
        {
            "error": (
                f"request body is over the {SMALL.max_body_bytes:,}-byte limit (an image, the text, caption and context)"
            )
        },
    )


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match=r"^Limits.max_image_bytes must be a positive integer, got 0$"):
        Limits(max_image_bytes=0)


def test_unknown_paths_and_methods_get_json_errors(client):
    assert (client.get("/v2/tag").status_code, client.get("/v2/tag").json()) == (
        404,
        {"error": "no such path '/v2/tag': see /docs for the API"},
    )
    assert (client.get("/v1/tag").status_code, client.get("/v1/tag").json()) == (
        405,
        {"error": "method GET is not allowed on '/v1/tag': see /docs for the API"},
    )


# ---------------------------------------------------------------------------- concurrency and failures


class GatedPipeline:
    """The real Pipeline, whose tagging waits at a gate: shows what the server does while a post is tagged."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.entered = threading.Event()
        self.gate = threading.Event()

    def describe(self) -> dict:
        return self.pipeline.describe()

    def prepare_later(self, posts):
        return self.pipeline.prepare_later(posts)

    def tag_prepared(self, prepared) -> list[TagResult]:
        self.entered.set()
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        return self.pipeline.tag_prepared(prepared)


def test_16_concurrent_requests_get_the_same_answers_as_one_at_a_time(client, pipeline, photo):
    cat = photo_jpeg("chelsea")
    posts = [
        {"text": POST, "image": photo},
        {"text": "RT @nasa : Astronaut Scott Kelly back in Houston after a year on the ISS", "image": cat},
        {"text": "Google opens a new office in London", "image": None},
        {"text": "Lionel Messi signs for Inter Miami", "image": cat},
    ]
    expected = [pipeline.tag(p["text"], image=p["image"]).to_dict() for p in posts]

    def send(i: int) -> tuple[int, int, dict]:
        post = posts[i % len(posts)]
        with httpx.Client(base_url=client.base_url, timeout=120) as c:
            if i % 2:  # half as multipart, half as JSON
                files = {"text": (None, post["text"])}
                if post["image"]:
                    files["image"] = ("p.jpg", post["image"], "image/jpeg")
                response = c.post("/v1/tag", files=files)
            else:
                response = c.post(
                    "/v1/tag",
                    json={"text": post["text"], "image": b64(post["image"]) if post["image"] else None},
                )
        return i, response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, range(16)))
    for i, status, body in answers:
        assert status == 200, body
        assert body == expected[i % len(posts)], f"request {i}"


def test_the_event_loop_answers_while_a_post_is_being_tagged(pipeline):
    gated = GatedPipeline(pipeline)
    with running_server(create_app(gated)) as base, ThreadPoolExecutor(1) as pool:
        tagging = pool.submit(httpx.post, base + "/v1/tag", json={"text": POST}, timeout=60)
        assert gated.entered.wait(timeout=30)
        health = httpx.get(base + "/health", timeout=10)  # the tagging thread is busy; the loop is not
        page = httpx.get(base + "/", timeout=10)
        gated.gate.set()
        assert health.status_code == 200 and page.status_code == 200
        assert tagging.result().status_code == 200
        assert tagging.result().json() == pipeline.tag(POST).to_dict()


def test_more_waiting_posts_than_max_pending_get_503(pipeline):
    gated = GatedPipeline(pipeline)
    app = create_app(gated, Limits(max_pending=1))
    with running_server(app) as base, ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, base + "/v1/tag", json={"text": POST}, timeout=60)
        assert gated.entered.wait(timeout=30)
        second = httpx.post(base + "/v1/tag", json={"text": POST}, timeout=10)
        gated.gate.set()
        assert first.result().status_code == 200
    assert (second.status_code, second.json()) == (
        503,
        {
            "error": "server busy: 1 requests in progress (at most 1, holding at most 134,217,728 bytes of bodies); "
            "retry later"
        },
    )
    assert second.headers["retry-after"] == "1"


def test_a_client_that_leaves_mid_body_does_not_hurt_the_server(url, client, caplog):
    caplog.set_level(logging.INFO)
    head = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    for part in (b'{"text": "Barack Obama", "image": "' + b"A" * 1000, b""):
        raw_exchange(url, head + part, close_after_send=True)  # announces 100 KB, sends less, hangs up
    multipart_head = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 50000\r\n\r\n"
        b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nBar'
    )
    raw_exchange(url, multipart_head, close_after_send=True)
    deadline = time.monotonic() + 10
    while sum("client went away" in r.getMessage() for r in caplog.records) < 3:  # the server noticed each
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.05)
    response = client.post("/v1/tag", json={"text": POST})
    assert response.status_code == 200 and response.json()["entities"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def test_a_client_that_leaves_while_its_post_is_tagged_does_not_wedge_the_server(pipeline):
    gated = GatedPipeline(pipeline)
    body = json.dumps({"text": POST}).encode()
    request = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with running_server(create_app(gated)) as base:
        raw_exchange(base, request, close_after_send=True)
        assert gated.entered.wait(timeout=30)
        gated.gate.set()
        response = httpx.post(base + "/v1/tag", json={"text": POST}, timeout=60)
    assert response.status_code == 200 and response.json() == pipeline.tag(POST).to_dict()


class FailingPipeline(GatedPipeline):
    def tag_prepared(self, prepared) -> list[TagResult]:
        raise RuntimeError("secret internal detail /srv/model")


def test_an_internal_error_is_a_500_without_the_traceback(pipeline, caplog):
    with running_server(create_app(FailingPipeline(pipeline))) as base:
        response = httpx.post(base + "/v1/tag", json={"text": POST}, timeout=60)
        after = httpx.get(base + "/health", timeout=10)
    assert (response.status_code, response.json()) == (
        500,
        {"error": "internal error while handling the request; the server log has the details"},
    )
    assert "secret" not in response.text and "Traceback" not in response.text
    assert after.status_code == 200
    assert any("secret internal detail" in r.getMessage() for r in caplog.records)  # the log does have it


# ------------------------------------------------------------------------------------ page, CLI, import


def test_the_demo_page_and_its_assets_are_served_and_load_nothing_from_outside(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element_id in ('id="text"', 'id="image"', 'id="caption"', 'id="submit"', 'id="error"'):
        assert element_id in page.text
    script, style = client.get("/web/demo.js"), client.get("/web/demo.css")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert "/v1/tag" in script.text
    for text in (page.text, script.text, style.text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_mner_serve_starts_the_service_from_the_command_line(photo):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mner = Path(sys.executable).with_name("mner")
    command = [str(mner), "serve", "--port", str(port), "--max-text-chars", "50", "--log-level", "warning"]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "mner serve did not answer /health in 120 s"
            try:
                health = httpx.get(base + "/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        files = {"text": (None, POST), "image": ("p.jpg", photo, "image/jpeg"), "attributes": (None, "true")}
        tagged = httpx.post(base + "/v1/tag", files=files, timeout=60)
        assert tagged.status_code == 200 and len(tagged.json()["attributes"]) == 5
        too_long = httpx.post(base + "/v1/tag", json={"text": "a" * 51}, timeout=60)
        assert (too_long.status_code, too_long.json()) == (
            413,
            {"error": "text is 51 characters, over the 50-character limit"},
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_mner_serve_on_a_port_in_use_is_one_error_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mner = Path(sys.executable).with_name("mner")
        result = subprocess.run(
            [str(mner), "serve", "--port", str(port), "--threads", "1"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: 127.0.0.1:{port}: cannot listen there (address already in use): give another --port or --host\n"
    )


def test_importing_mner_and_its_cli_loads_neither_fastapi_nor_torch():
    code = (
        "import sys, mner, mner.cli; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_response_model_is_the_tag_result():
    """The documented response is the one result type every caller emits (``TagResult.to_dict``)."""
    from mner.data import Span
    from mner.serving.result import ImageAttribute
    from mner.serving.service import Attribute as AttributeOut
    from mner.serving.service import Entity as EntityOut

    result = TagResult(
        ("Barack", "Obama"),
        (Span(0, 2, "PER", "Barack Obama", 0.9, 0, 12),),
        (ImageAttribute("suit", 0.5),),
        None,
        caption="a man",
        read_as={"entities": [], "route": "none", "path": "the text path"},  # present when a context was read
    )
    assert set(TagResponse.model_fields) == set(result.to_dict())
    assert set(EntityOut.model_fields) == set(result.to_dict()["entities"][0])
    assert set(AttributeOut.model_fields) == set(result.to_dict()["attributes"][0])
    assert TagResponse.model_validate(result.to_dict()).model_dump() == result.to_dict()


def test_requests_arriving_together_are_tagged_in_one_batch(pipeline):
    class Counting(GatedPipeline):
        def __init__(self, pipeline):
            super().__init__(pipeline)
            self.sizes: list[int] = []

        def tag_prepared(self, prepared):
            self.sizes.append(len(prepared))
            return super().tag_prepared(prepared)

    gated = Counting(pipeline)
    texts = [f"{name} visits Berlin" for name in ("Obama", "Merkel", "Macron", "Trudeau", "Modi", "Lula")]
    with running_server(create_app(gated, Limits(batch_wait_ms=50))) as base, ThreadPoolExecutor(7) as pool:
        first = pool.submit(httpx.post, base + "/v1/tag", json={"text": POST}, timeout=60)
        assert gated.entered.wait(timeout=30)  # the first batch is being tagged: the others queue
        rest = [pool.submit(httpx.post, base + "/v1/tag", json={"text": t}, timeout=60) for t in texts]
        time.sleep(0.5)
        gated.gate.set()
        answers = [f.result().json() for f in [first, *rest]]
    assert gated.sizes[0] == 1 and sum(gated.sizes) == 7 and max(gated.sizes) > 1  # the six waited together
    assert answers == [pipeline.tag(t).to_dict() for t in [POST, *texts]]  # as if tagged one at a time
