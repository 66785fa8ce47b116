"""``mner ask-llm`` against a real HTTP server on 127.0.0.1 that speaks the chat-completions protocol: canned
answers, malformed answers, 429s, slow answers; resume, the concurrency limit, the API key kept secret."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from mner.channels.entities import read_entities
from mner.channels.llm import EXAMPLES, messages
from mner.cli import app
from mner.data import read_keyed_tsv

runner = CliRunner()
ANSWER = "Named entities:1. {name} (person)Reasoning:The post\tmentions {name}.\n"


class ChatServer:
    """What the server does for a post: ``plans[text]`` is a list of steps, one a request, the last repeated:
    ("ok",), ("status", code, retry_after), ("raw", bytes), ("sleep", seconds)."""

    def __init__(self):
        self.plans: dict[str, list[tuple]] = {}
        self.calls: dict[str, int] = {}
        self.auth: list[str | None] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = body["messages"][-1]["content"].split("\n")[0].removeprefix("Post: ")
                with server.lock:
                    server.auth.append(self.headers.get("Authorization"))
                    n = server.calls[text] = server.calls.get(text, 0) + 1
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                plan = server.plans.get(text, [("ok",)])
                step = plan[min(n, len(plan)) - 1]
                if step[0] == "sleep":
                    time.sleep(step[1])
                    step = ("ok",)
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
                raw = (
                    step[1]
                    if step[0] == "raw"
                    else json.dumps(
                        {
                            "id": "x",
                            "object": "chat.completion",
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {
                                        "role": "assistant",
                                        "content": ANSWER.format(name=text.split()[0]),
                                    },
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
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


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
    chat = messages("Kobe scores", "a basketball player")
    assert [m["role"] for m in chat] == ["system"] + ["user", "assistant"] * len(EXAMPLES) + ["user"]
    assert chat[-1]["content"] == "Post: Kobe scores\nImage caption: a basketball player"
    assert all(read_entities(answer) for _, _, answer in EXAMPLES)  # the examples show the shape asked for


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


def test_an_interrupted_output_is_resumed_and_a_foreign_file_refused(tmp_path):
    out = tmp_path / "c.tsv"
    out.write_text("id\tcontext\np0\tNamed entities:1. Obama (person)\np1\tNamed ent", encoding="utf-8")
    with chat_server() as (server, endpoint):
        result = run(endpoint, posts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris"]), out)
        assert result.exit_code == 0, result.output
        assert "c.tsv: removed an incomplete last line (12 bytes) left by an interrupted run" in result.stderr
        assert server.calls == {"Merkel in Paris": 1}
        assert set(read_keyed_tsv(out, ("image_id", "id"))[0]) == {"p0", "p1"}
        (tmp_path / "mine.tsv").write_text("my notes\n", encoding="utf-8")
        refused = run(endpoint, posts_file(tmp_path, ["Obama in Berlin"]), tmp_path / "mine.tsv")
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: {tmp_path / 'mine.tsv'}:1: not an 'mner ask-llm' output (its header is not 'id\\tcontext'); "
        "give another --out\n"
    )
    assert (tmp_path / "mine.tsv").read_text(encoding="utf-8") == "my notes\n"


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
    assert result.exit_code == 0, result.output
    assert f"error: {tmp_path / message}" in result.stderr and "bad lines 1" in result.stderr
    assert set(read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))[0]) == {"b"}
