"""``mner ask-llm`` against a real HTTP server on 127.0.0.1 that speaks the chat-completions protocol: canned
answers (JSON for a ``response_format``, text without), malformed answers, 429s, slow answers, a server without
structured output, image parts; resume, the concurrency limit, the API key kept secret, the sidecar. Hostile
servers: ``tests/test_llm_hostile.py``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import pytest
from typer.testing import CliRunner

from mner.channels.entities import read_entities
from mner.channels.llm import prompt
from mner.cli import app
from mner.data import read_keyed_tsv
from tests.serving import chat_endpoint

runner = CliRunner()
ANSWER = "Named entities:1. {name} (person)Reasoning:The post\tmentions {name}.\n"


def post_text(body: dict) -> str:
    """The post's text in a request: the last message's (first) text part, after "Post: "."""
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        content = next(part["text"] for part in content if part["type"] == "text")
    return content.split("\n")[0].removeprefix("Post: ")


class ChatServer:
    """What the server does for a post: ``plans[text]`` is a list of steps, one a request, the last repeated:
    ("ok",), ("status", code, retry_after), ("raw", bytes), ("sleep", seconds). An "ok" answer is the schema's
    JSON when the request asks for it (``response_format``), text otherwise; ``refuse_format``: a request with a
    ``response_format`` gets 400, as from a server without structured output. ``requests``: every request's
    method, path, Authorization header and JSON body."""

    def __init__(self):
        self.plans: dict[str, list[tuple]] = {}
        self.calls: dict[str, int] = {}
        self.auth: list[str | None] = []
        self.requests: list[dict] = []
        self.refuse_format = False
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = post_text(body)
                with server.lock:
                    server.auth.append(self.headers.get("Authorization"))
                    server.requests.append(
                        {
                            "method": "POST",
                            "path": self.path,
                            "auth": self.headers.get("Authorization"),
                            "body": body,
                        }
                    )
                    n = server.calls[text] = server.calls.get(text, 0) + 1
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                plan = server.plans.get(text, [("ok",)])
                step = plan[min(n, len(plan)) - 1]
                if step[0] == "sleep":
                    time.sleep(step[1])
                    step = ("ok",)
                if server.refuse_format and "response_format" in body:
                    step = ("status", 400, None)
                with (
                    server.lock
                ):  # done before answering: the client cannot send its next request before this
                    server.in_flight -= 1
                if step[0] == "status":
                    self.send_response(step[1])
                    if step[2] is not None:
                        self.send_header("Retry-After", str(step[2]))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                name = text.split()[0]
                if "response_format" in body:
                    content = json.dumps(
                        {
                            "entities": [{"name": name, "kind": "person"}],
                            "reasoning": f"The post mentions {name}.",
                        }
                    )
                else:
                    content = ANSWER.format(name=name)
                raw = (
                    step[1]
                    if step[0] == "raw"
                    else json.dumps(
                        {
                            "id": "x",
                            "object": "chat.completion",
                            "model": body["model"] + "-served",
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop",
                                }
                            ],
                        }
                    ).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler


@contextmanager
def chat_server() -> Iterator[tuple[ChatServer, str]]:
    state = ChatServer()
    with chat_endpoint(state.handler(), wait_for_handlers=True) as endpoint:
        yield state, endpoint


def posts_file(tmp_path, texts):
    path = tmp_path / "posts.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8"
    )
    return path


def run(endpoint, posts, out, *extra):
    return runner.invoke(
        app,
        [
            "ask-llm",
            "--in",
            str(posts),
            "--out",
            str(out),
            "--endpoint",
            endpoint,
            "--model",
            "test-model",
            *extra,
        ],
    )


def test_the_prompt_has_its_examples_then_the_post():
    chat = prompt().messages("Kobe scores", "a basketball player")
    assert [m["role"] for m in chat] == ["system"] + ["user", "assistant"] * len(prompt().examples) + ["user"]
    assert chat[-1]["content"] == "Post: Kobe scores\nImage caption: a basketball player"
    assert all(read_entities(m["content"]) for m in chat[2:-1:2])  # the examples show the shape asked for


def test_canned_answers_become_a_context_file_that_train_and_tag_read(tmp_path):
    with chat_server() as (server, endpoint):
        result = run(
            endpoint, posts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris"]), tmp_path / "c.tsv"
        )
    assert result.exit_code == 0, result.output
    texts, key = read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))
    assert key == "id"
    assert texts == {
        "p0": "Named entities:1. Obama (person)Reasoning:The post mentions Obama.",
        "p1": "Named entities:1. Merkel (person)Reasoning:The post mentions Merkel.",
    }
    assert "wrote 2, failed 0, skipped 0 (already in the output), bad lines 0" in result.stderr
    assert server.auth == [None, None]  # no key in the environment: no header


def test_429_with_retry_after_and_malformed_answers_are_retried(tmp_path):
    with chat_server() as (server, endpoint):
        server.plans = {
            "Obama in Berlin": [("status", 429, 0), ("ok",)],
            "Merkel in Paris": [("raw", b"<html>oops</html>"), ("ok",)],
            "Macron in Rome": [("raw", b'{"choices": []}'), ("ok",)],
        }
        posts = posts_file(tmp_path, list(server.plans))
        result = run(endpoint, posts, tmp_path / "c.tsv")
    assert result.exit_code == 0, result.output
    assert server.calls == {"Obama in Berlin": 2, "Merkel in Paris": 2, "Macron in Rome": 2}
    assert len(read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))[0]) == 3


def test_a_post_that_keeps_failing_is_one_error_and_a_rerun_asks_only_for_it(tmp_path):
    with chat_server() as (server, endpoint):
        server.plans = {"Merkel in Paris": [("status", 500, None)]}
        posts = posts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris", "Macron in Rome"])
        first = run(endpoint, posts, tmp_path / "c.tsv", "--retries", "1")
        assert first.exit_code == 1
        assert f"error: {posts}:2: id 'p1': HTTP 500 Internal Server Error (after 2 tries)" in first.stderr
        assert "1 post(s) failed: run the same command again to retry them" in first.stderr
        assert set(read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))[0]) == {"p0", "p2"}
        server.plans = {}
        second = run(endpoint, posts, tmp_path / "c.tsv")
    assert second.exit_code == 0, second.output
    assert "wrote 1, failed 0, skipped 2" in second.stderr
    assert server.calls == {"Obama in Berlin": 1, "Merkel in Paris": 3, "Macron in Rome": 1}
    assert set(read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))[0]) == {"p0", "p1", "p2"}


def test_a_slow_answer_times_out(tmp_path):
    with chat_server() as (server, endpoint):
        server.plans = {"Obama in Berlin": [("sleep", 3)]}
        result = run(
            endpoint,
            posts_file(tmp_path, ["Obama in Berlin"]),
            tmp_path / "c.tsv",
            "--timeout",
            "0.3",
            "--retries",
            "0",
        )
    assert result.exit_code == 1
    assert (
        f"error: {tmp_path / 'posts.jsonl'}:1: id 'p0': no answer within 0.3 s (after 1 tries)"
        in result.stderr
    )


def test_an_unreachable_endpoint_is_a_clear_error(tmp_path):
    result = run(
        "http://127.0.0.1:9/v1",
        posts_file(tmp_path, ["Obama in Berlin"]),
        tmp_path / "c.tsv",
        "--retries",
        "0",
    )
    assert result.exit_code == 1
    assert (
        f"error: {tmp_path / 'posts.jsonl'}:1: id 'p0': cannot reach http://127.0.0.1:9/v1: " in result.stderr
    )


def test_the_api_key_is_sent_and_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sekrit-123")
    with chat_server() as (server, endpoint):
        server.plans = {"Merkel in Paris": [("status", 401, None)]}
        result = run(
            endpoint,
            posts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris"]),
            tmp_path / "c.tsv",
            "--api-key-env",
            "MY_LLM_KEY",
            "--retries",
            "0",
        )
    assert set(server.auth) == {"Bearer sekrit-123"}
    assert "sekrit" not in result.stdout + result.stderr + (tmp_path / "c.tsv").read_text(encoding="utf-8")
    assert "--api-key" not in str(app.registered_commands)  # no flag can carry a key into a shell history


def test_no_more_requests_in_flight_than_the_limit(tmp_path):
    with chat_server() as (server, endpoint):
        texts = [f"Person{i} in Berlin" for i in range(8)]
        server.plans = {t: [("sleep", 0.2)] for t in texts}
        result = run(endpoint, posts_file(tmp_path, texts), tmp_path / "c.tsv", "--concurrency", "2")
    assert result.exit_code == 0, result.output
    assert server.most_in_flight == 2 and len(read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))[0]) == 8


def test_a_last_row_without_its_line_break_is_kept_and_a_foreign_file_refused(tmp_path):
    """Issue #25 case 14: a last complete row without its line break was removed as "incomplete". mner writes
    each row whole (and undoes one it could not), so such a row is the user's: kept, the line break added."""
    out = tmp_path / "c.tsv"
    out.write_text(
        "id\tcontext\np0\tNamed entities:1. Obama (person)\np1\tNamed entities:1. Merkel (person)", "utf-8"
    )
    with chat_server() as (server, endpoint):
        posts = posts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris", "Macron in Rome"])
        result = run(endpoint, posts, out)
        assert result.exit_code == 0, result.output
        assert f"{out}: its last row had no line break: kept as it is, the line break added" in result.stderr
        assert "wrote 1, failed 0, skipped 2" in result.stderr and server.calls == {"Macron in Rome": 1}
        texts, _ = read_keyed_tsv(out, ("image_id", "id"))
        assert texts["p1"] == "Named entities:1. Merkel (person)" and set(texts) == {"p0", "p1", "p2"}
        (tmp_path / "mine.tsv").write_text("my notes\n", encoding="utf-8")
        refused = run(endpoint, posts_file(tmp_path, ["Obama in Berlin"]), tmp_path / "mine.tsv")
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: {tmp_path / 'mine.tsv'}:1: not an 'mner ask-llm' output (its header is not 'id\\tcontext'); "
        "give another --out\n"
    )
    assert (tmp_path / "mine.tsv").read_text(encoding="utf-8") == "my notes\n"
    assert not (tmp_path / "mine.tsv.meta.json").exists()


# ------------------------------------------------------------ structured output, images, the sidecar (#22)


def test_structured_output_is_asked_for_and_rendered_as_the_context_the_parser_reads(tmp_path):
    with chat_server() as (server, endpoint):
        result = run(
            endpoint, posts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris"]), tmp_path / "c.tsv"
        )
    assert result.exit_code == 0, result.output
    body = server.requests[0]["body"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "post_context", "strict": True, "schema": prompt().schema},
    }
    assert set(prompt().schema["required"]) == {"entities", "reasoning"}
    assert json.loads(body["messages"][2]["content"])["entities"][0] == {
        "name": "FindMyBikeYYC",
        "kind": "organization/handle",
    }
    texts, _ = read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))
    assert texts["p0"] == "Named entities:1. Obama (person)Reasoning:The post mentions Obama."
    assert read_entities(texts["p1"]) == [("Merkel", "person")]
    meta = json.loads((tmp_path / "c.tsv.meta.json").read_text(encoding="utf-8"))
    (only,) = meta["runs"]
    assert only["model"] == "test-model" and only["answered_by"] == {"test-model-served": 2}
    assert only["prompt_version"] == prompt().version == "context-v2"
    assert only["answers"] == {"json_schema": 2} and only["written"] == 2 and only["images"] is False
    assert only["endpoint"] == endpoint + "/chat/completions" and only["finished"] is not None


def test_an_endpoint_that_refuses_response_format_is_asked_with_instructions(tmp_path):
    with chat_server() as (server, endpoint):
        server.refuse_format = (
            True  # answers 400 to a response_format, as many servers without structured output
        )
        posts = posts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris", "Macron in Rome"])
        result = run(endpoint, posts, tmp_path / "c.tsv", "--concurrency", "1")
    assert result.exit_code == 0, result.output
    formats = ["response_format" in r["body"] for r in server.requests]
    assert formats == [True, False, False, False]  # refused once, then never sent again
    assert "Named entities:" in server.requests[1]["body"]["messages"][0]["content"]  # the text instructions
    texts, _ = read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))
    assert texts["p2"] == "Named entities:1. Macron (person)Reasoning:The post mentions Macron."
    run_meta = json.loads((tmp_path / "c.tsv.meta.json").read_text(encoding="utf-8"))["runs"][0]
    assert run_meta["answers"] == {"instructions": 3}


def test_no_structured_sends_no_response_format(tmp_path):
    with chat_server() as (server, endpoint):
        result = run(
            endpoint, posts_file(tmp_path, ["Obama in Berlin"]), tmp_path / "c.tsv", "--no-structured"
        )
    assert result.exit_code == 0, result.output
    assert "response_format" not in server.requests[0]["body"]


def test_images_are_sent_as_image_url_parts_with_a_data_url(tmp_path):
    import base64

    from tests.serving import photo_jpeg

    (tmp_path / "img").mkdir()
    photo = photo_jpeg("chelsea")
    (tmp_path / "img" / "cat.jpg").write_bytes(photo)
    (tmp_path / "img" / "notes.jpg").write_bytes(b"not an image")
    lines = [
        {"id": "a", "text": "Chelsea sleeping", "image": "img/cat.jpg"},  # no caption: it stays optional
        {"id": "b", "text": "Obama in Berlin"},  # no image: text alone
        {"id": "c", "text": "Merkel in Paris", "image": "img/notes.jpg", "caption": "a page"},
        {"id": "d", "text": "Macron in Rome", "image": "img/gone.jpg"},
    ]
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    with chat_server() as (server, endpoint):
        result = run(endpoint, posts, tmp_path / "c.tsv", "--image", "--retries", "0")
    assert result.exit_code == 1
    (sent,) = [
        r["body"]["messages"][-1]["content"]
        for r in server.requests
        if post_text(r["body"]) == "Chelsea sleeping"
    ]
    assert sent[0] == {"type": "text", "text": "Post: Chelsea sleeping\nImage caption: (no image caption)"}
    assert sent[1]["type"] == "image_url"
    url = sent[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.removeprefix("data:image/jpeg;base64,")) == photo
    (plain,) = [
        r["body"]["messages"][-1]["content"]
        for r in server.requests
        if post_text(r["body"]) == "Obama in Berlin"
    ]
    assert plain == "Post: Obama in Berlin\nImage caption: (no image caption)"
    assert (
        f"error: {posts}:3: id 'c': image {tmp_path / 'img' / 'notes.jpg'}: not a JPEG, PNG, GIF or WebP file"
        in result.stderr
    )
    assert (
        f"error: {posts}:4: id 'd': image {tmp_path / 'img' / 'gone.jpg'}: cannot read (No such file or directory)"
        in result.stderr
    )
    assert set(read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))[0]) == {"a", "b"}
    assert json.loads((tmp_path / "c.tsv.meta.json").read_text(encoding="utf-8"))["runs"][0]["images"] is True


def test_the_context_file_is_read_by_tag_as_before(tmp_path):
    with chat_server() as (_, endpoint):
        posts = posts_file(tmp_path, ["Obama in Berlin"])
        assert run(endpoint, posts, tmp_path / "c.tsv").exit_code == 0
    tagged = runner.invoke(
        app,
        [
            "tag",
            "--in",
            str(posts),
            "--out",
            str(tmp_path / "t.jsonl"),
            "--context-file",
            str(tmp_path / "c.tsv"),
        ],
    )
    assert tagged.exit_code == 0, tagged.output
    record = json.loads((tmp_path / "t.jsonl").read_text(encoding="utf-8"))
    assert record["context"] == "Named entities:1. Obama (person)Reasoning:The post mentions Obama."
    assert record["entities"][0]["text"] == "Obama"


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "posts.jsonl:1: not JSON"),
        ('{"id": "a"}', "posts.jsonl:1: expected 'text' (a string) or 'tokens' (a list of strings)"),
    ],
)
def test_bad_lines_are_reported_and_the_rest_asked(tmp_path, line, message):
    (tmp_path / "posts.jsonl").write_text(
        line + "\n" + json.dumps({"id": "b", "text": "Obama"}) + "\n", encoding="utf-8"
    )
    with chat_server() as (_, endpoint):
        result = run(endpoint, tmp_path / "posts.jsonl", tmp_path / "c.tsv")
    assert result.exit_code == 1, result.output  # a line not asked: the output lacks a post (issue #32 N18)
    assert f"error: {tmp_path / message}" in result.stderr and "bad lines 1" in result.stderr
    assert (
        "1 line(s) of the input could not be asked (each named above): mend them and run the same command again"
        in result.stderr
    )
    assert set(read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))[0]) == {"b"}
