"""``mner ask-llm`` against a hostile LLM on 127.0.0.1 (issue #25): answers nested 100,000 deep, a 5,000-digit
number, a lone surrogate, answers of hundreds of MB, a server that trickles, redirects to another origin; two
runs on one output, ids a context file cannot key by, a full disk. Each becomes that post's error (recorded,
counted, asked again on a rerun) or one clear error; never a traceback, never a lost or doubled row, never
the API key sent elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.data import read_keyed_tsv
from tests.serving import chat_endpoint
from tests.test_llm import post_text

runner = CliRunner()
KEY = "sekrit-key-123"


def answer(content: str, **extra) -> bytes:
    return json.dumps(
        {"model": "hostile", "choices": [{"message": {"role": "assistant", "content": content}}], **extra}
    ).encode()


GOOD = answer("Named entities:1. Obama (person)Reasoning:fine.")


class Hostile:
    """A chat-completions server whose answer depends on the post's first word (``behave``); every request is
    recorded (method, path, Authorization, body)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.other_port: int | None = None  # where "elsewhere" redirects

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self, method: str):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                with server.lock:
                    server.requests.append(
                        {
                            "method": method,
                            "path": self.path,
                            "auth": self.headers.get("Authorization"),
                            "body": body,
                        }
                    )
                word = post_text(body).split()[0] if body else "get"
                try:
                    getattr(server, f"do_{word}", server.do_ok)(self)
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: as it should
                    pass

            def do_POST(self):
                self.handle_one("POST")

            def do_GET(self):
                self.handle_one("GET")

        return Handler

    @staticmethod
    def send(handler, raw: bytes, status: int = 200, headers: dict | None = None):
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(raw)

    def do_ok(self, h):
        self.send(h, GOOD)

    def do_deep(self, h):  # valid JSON, nested 100,000 deep
        self.send(h, b'{"choices": [{"message": {"content": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}]}")

    def do_bignumber(self, h):  # a valid answer with a 5,000-digit integer in usage
        self.send(h, GOOD[:-1] + b', "usage": {"prompt_tokens": ' + b"9" * 5000 + b"}}")

    def do_surrogate(self, h):  # content with a lone surrogate
        self.send(h, b'{"choices": [{"message": {"content": "Named entities:1. Obama \\udc80 (person)"}}]}')

    def do_long(self, h):  # a 3 MB answer, under the body limit: kept, cut to the context limit
        self.send(h, answer("Named entities:1. Obama (person)Reasoning:" + "blah " * 600_000))

    def do_huge(self, h):  # announced at 600 MB
        h.send_response(200)
        h.send_header("Content-Length", str(600 * 1024 * 1024))
        h.end_headers()
        h.wfile.write(b'{"choices": [{"message": {"content": "' + b"x" * (8 << 20))

    def do_endless(self, h):  # chunked, never-ending, 1 MB a chunk
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        block = b"x" * (1 << 20)
        h.wfile.write(b'5\r\n{"cho\r\n')
        for _ in range(400):
            h.wfile.write(b"%x\r\n" % len(block) + block + b"\r\n")

    def do_trickle(self, h):  # a valid answer, a byte every 50 ms
        h.send_response(200)
        h.send_header("Content-Length", str(len(GOOD)))
        h.end_headers()
        h.wfile.flush()
        for byte in GOOD:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(0.05)

    def do_slowheaders(self, h):  # the status line and headers, a byte every 50 ms
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"p" * 200 + b"\r\n"
        for byte in head:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(0.05)

    def do_elsewhere(self, h):  # a redirect to another origin
        location = f"http://127.0.0.1:{self.other_port}/v1/chat/completions"
        self.send(h, b"", 302, {"Location": location})

    def do_slow(self, h):  # a valid answer after half a second
        time.sleep(0.5)
        self.send(h, GOOD)

    def do_moved(self, h):  # a redirect on the same origin, as a 302 (which browsers turn into a GET)
        if h.path == "/v2/chat/completions":
            self.send(h, GOOD)
        else:
            self.send(h, b"", 302, {"Location": "/v2/chat/completions"})


@contextmanager
def serving(state) -> Iterator[str]:
    with chat_endpoint(state.handler()) as endpoint:
        yield endpoint


@pytest.fixture
def hostile():
    state = Hostile()
    with serving(state) as endpoint:
        yield state, endpoint


def posts_file(tmp_path, texts, ids=None):
    path = tmp_path / "posts.jsonl"
    ids = ids or [f"p{i}" for i in range(len(texts))]
    path.write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)), encoding="utf-8"
    )
    return path


def ask(endpoint, posts, out, *extra):
    return runner.invoke(
        app,
        ["ask-llm", "--in", str(posts), "--out", str(out), "--endpoint", endpoint, "--model", "m", *extra],
    )


def rows(path) -> dict[str, str]:
    return read_keyed_tsv(path, ("id",), "context")[0]


# ---------------------------------------------------- 2. answers that crashed every run, on the same post


@pytest.mark.parametrize(
    "word, reason",
    [
        ("deep", "malformed answer: not usable JSON: nested too deeply"),
        (
            "bignumber",
            "malformed answer: not usable JSON: Exceeds the limit (4300 digits) for integer string",
        ),
        ("surrogate", "malformed answer: not valid Unicode: a lone surrogate '\\udc80' in a string"),
    ],
)
def test_an_unusable_answer_is_that_posts_error_and_a_rerun_asks_again(hostile, tmp_path, word, reason):
    state, endpoint = hostile
    posts = posts_file(tmp_path, ["Obama in Berlin", f"{word} post", "Merkel in Paris", "Macron in Rome"])
    out = tmp_path / "c.tsv"
    for _ in range(2):  # the rerun meets the same answer: the same error, nothing doubled
        result = ask(endpoint, posts, out, "--retries", "0", "--concurrency", "4")
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"error: {posts}:2: id 'p1': {reason}" in result.stderr
        assert "1 post(s) failed: run the same command again to retry them" in result.stderr
        assert set(rows(out)) == {"p0", "p2", "p3"}  # the posts in flight beside it are written
    assert "wrote 0, failed 1, skipped 3" in result.stderr
    assert sum(post_text(r["body"]).startswith(word) for r in state.requests) == 2


# --------------------------------------------------------------- 11 and 12. long answers, huge answers


def test_a_long_answer_is_cut_to_the_context_limit_and_the_file_stays_readable(hostile, tmp_path):
    _, endpoint = hostile
    posts = posts_file(tmp_path, ["long answer", "Obama in Berlin"])
    result = ask(endpoint, posts, tmp_path / "c.tsv")
    assert result.exit_code == 0, result.output
    texts = rows(tmp_path / "c.tsv")  # and mner tag reads it
    assert len(texts["p0"]) == 10_000 and texts["p0"].startswith(
        "Named entities:1. Obama (person)Reasoning:blah"
    )
    assert (
        f"note: {posts}:1: id 'p0': the answer is 3,000,041 characters; its first 10,000 are kept"
        in result.stderr
    )
    meta = json.loads((tmp_path / "c.tsv.meta.json").read_text(encoding="utf-8"))
    assert meta["runs"][0]["cut"] == 1
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


@pytest.mark.parametrize(
    "word, reason",
    [
        ("huge", "answer of 629,145,600 bytes, over the 4,194,304-byte limit: not read"),
        ("endless", "answer over the 4,194,304-byte limit: not read further"),
    ],
)
def test_an_answer_over_the_size_limit_is_not_read(hostile, tmp_path, word, reason):
    _, endpoint = hostile
    posts = posts_file(tmp_path, [f"{word} answer", "Obama in Berlin"])
    result = ask(endpoint, posts, tmp_path / "c.tsv", "--retries", "0")
    assert result.exit_code == 1
    assert f"error: {posts}:1: id 'p0': {reason} (after 1 tries)" in result.stderr
    assert set(rows(tmp_path / "c.tsv")) == {"p1"}


MEASURED = """
import atexit, os, sys

def report():
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    with open(os.environ["MNER_TEST_PEAK"], "w") as out:
        out.write(peak.split()[1])

atexit.register(report)
sys.argv = ["mner", *sys.argv[1:]]
from mner.cli import main
main()
"""


def test_endless_answers_keep_memory_bounded(hostile, tmp_path):
    """Issue #25 case 12: every answer was read whole (600 MB answers: 1.88 GB at --concurrency 2)."""
    _, endpoint = hostile
    posts = posts_file(tmp_path, [f"endless answer {i}" for i in range(4)])
    peak = tmp_path / "peak.txt"
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, "ask-llm", "--in", str(posts), "--out", str(tmp_path / "c.tsv")]
        + ["--endpoint", endpoint, "--model", "m", "--retries", "0", "--concurrency", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MNER_TEST_PEAK": str(peak)},
    )
    assert result.returncode == 1 and "failed 4" in result.stderr, result.stderr
    peak_mb = int(peak.read_text()) / 1024
    assert peak_mb < 150, f"four endless answers, two at a time: {peak_mb:.0f} MB"


# -------------------------------------------------------------------- 17. a deadline on each answer


@pytest.mark.parametrize("word", ["trickle", "slowheaders"])
def test_timeout_is_a_deadline_on_the_whole_answer(hostile, tmp_path, word):
    _, endpoint = hostile
    posts = posts_file(tmp_path, [f"{word} answer"])
    start = time.monotonic()
    result = ask(endpoint, posts, tmp_path / "c.tsv", "--timeout", "1", "--retries", "0")
    assert time.monotonic() - start < 5  # the server would take over 5 s to send it all
    assert result.exit_code == 1
    assert f"error: {posts}:1: id 'p0': no answer within 1 s (after 1 tries)" in result.stderr


# ----------------------------------------------------------------------------------- 13. redirects


def test_a_redirect_to_another_origin_is_not_followed_and_the_key_stays_home(hostile, tmp_path, monkeypatch):
    state, endpoint = hostile
    elsewhere = Hostile()
    with serving(elsewhere) as other:
        state.other_port = int(other.rsplit(":", 1)[1].split("/")[0])
        monkeypatch.setenv("MNER_LLM_API_KEY", KEY)
        posts = posts_file(tmp_path, ["elsewhere please", "Obama in Berlin"])
        result = ask(endpoint, posts, tmp_path / "c.tsv", "--retries", "3")
    assert elsewhere.requests == []  # nothing, and so no key, reached the other origin
    assert result.exit_code == 1
    assert (
        f"error: {posts}:1: id 'p0': the endpoint redirects to another origin (http://127.0.0.1:{state.other_port}"
        "/v1/chat/completions): not followed, so that the API key is never sent there; give that address as "
        "--endpoint if you trust it\n"
    ) in result.stderr
    assert sum(post_text(r["body"]) == "elsewhere please" for r in state.requests) == 1  # not retried
    assert KEY not in result.output


def test_a_redirect_on_the_same_origin_is_followed_with_the_same_post(hostile, tmp_path, monkeypatch):
    state, endpoint = hostile
    monkeypatch.setenv("MNER_LLM_API_KEY", KEY)
    result = ask(endpoint, posts_file(tmp_path, ["moved endpoint"]), tmp_path / "c.tsv")
    assert result.exit_code == 0, result.output
    first, second = state.requests
    assert (first["path"], second["path"]) == ("/v1/chat/completions", "/v2/chat/completions")
    assert second["method"] == "POST" and second["body"] == first["body"]  # a 302 never turns into a GET
    assert second["auth"] == f"Bearer {KEY}"
    assert set(rows(tmp_path / "c.tsv")) == {"p0"}


# ------------------------------------------------------------------------ 10. one run on an output at a time


def test_a_second_run_on_the_same_output_is_refused(hostile, tmp_path):
    """Issue #25 case 10: two runs on one --out wrote every post twice (and two headers)."""
    _, endpoint = hostile
    posts = posts_file(tmp_path, [f"slow post {i}" for i in range(6)])
    out = tmp_path / "c.tsv"
    command = [sys.executable, "-m", "mner", "ask-llm", "--in", str(posts), "--out", str(out)]
    first = subprocess.Popen(
        command + ["--endpoint", endpoint, "--model", "m", "--concurrency", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.05)  # the first run has begun: its header is written
        second = ask(endpoint, posts, out)
    finally:
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert second.exit_code == 2
    assert second.stderr == (
        f"error: {out}: another mner ask-llm is writing to this file: wait for it or give another --out\n"
    )
    assert out.read_text(encoding="utf-8").count("id\tcontext") == 1 and len(rows(out)) == 6


def test_an_output_that_is_the_input_is_refused(hostile, tmp_path):
    _, endpoint = hostile
    posts = posts_file(tmp_path, ["Obama in Berlin"])
    before = posts.read_bytes()
    result = ask(endpoint, posts, posts)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: {posts}: --out is the input file: give another --out (the input is never overwritten)\n"
    )
    assert posts.read_bytes() == before


# ---------------------------------------------------------------- 16. ids a context file cannot key by


def test_ids_padded_with_spaces_or_empty_are_bad_lines_not_rows_that_read_back_otherwise(hostile, tmp_path):
    _, endpoint = hostile
    posts = posts_file(tmp_path, ["Obama", "Merkel", "Macron", "Lula"], ids=[" p1", "", "p1 ", "p2"])
    out = tmp_path / "c.tsv"
    for _ in range(2):  # a rerun: no duplicate, nothing refused
        result = ask(endpoint, posts, out)
        assert result.exit_code == 1, result.output  # lines not asked (issue #32 N18)
        assert set(rows(out)) == {"p2"}
    assert (
        f"error: {posts}:1: id ' p1' begins or ends with a space: a context file's key cannot (it would be read back as 'p1')"
        in result.stderr
    )
    assert f"error: {posts}:2: id '' is empty: a context file's key cannot be" in result.stderr
    assert "wrote 0, failed 0, skipped 1 (already in the output), bad lines 3" in result.stderr


# ---------------------------------------------------------------------------- 20. a full disk, named


def test_a_full_disk_names_the_file_and_leaves_no_half_row(hostile, tmp_path):
    import resource
    import signal

    _, endpoint = hostile
    posts = posts_file(tmp_path, [f"Obama in Berlin {i}" for i in range(40)])
    out = tmp_path / "c.tsv"

    def small_files():  # writes past 1 KB fail with EFBIG ("File too large"), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    command = [sys.executable, "-m", "mner", "ask-llm", "--in", str(posts), "--out", str(out)]
    command += ["--endpoint", endpoint, "--model", "m", "--concurrency", "1"]
    result = subprocess.run(command, capture_output=True, text=True, preexec_fn=small_files, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {out}: cannot write (File too large)"
    written = out.read_bytes()
    assert written.endswith(b"\n") and len(rows(out)) == written.count(b"\n") - 1  # whole rows only
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert len(rows(out)) == 40
