"""``mner ask-llm`` after the round-4 hostile re-test (issue #32, N1-N6 and N14-N18), against a real chat server on
127.0.0.1: one output holds the answers of one source (or says which run wrote which rows), a damaged sidecar
is one clear error, images come only from regular files inside the input's folder and within a byte budget, an
answer without a readable entity list is that post's error, what is sent is bounded and a 400 is not paid for
twice, credentials never printed, ``--timeout`` checked, control characters never written, a run that asked
nothing says so. Hypothesis: any sidecar, any answer."""

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
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mner.channels.entities import read_entities
from mner.channels.llm import ChatClient, LLMError
from mner.cli import app
from mner.data import read_keyed_tsv
from tests.serving import chat_endpoint
from tests.test_llm import post_text
from tests.test_llm_hostile import MEASURED

runner = CliRunner()
JPEG = b"\xff\xd8\xff\xe0" + bytes(200)


def chat(content: str) -> bytes:
    return json.dumps({"model": "canned", "choices": [{"message": {"content": content}}]}).encode()


class Canned:
    """A chat-completions server: the answer to a post is ``answers[its text]`` (the schema's JSON of its first
    word by default), or ``statuses[its text]`` as an HTTP status; ``delay`` seconds before each answer. Every
    request's JSON body is recorded (with its length in bytes)."""

    def __init__(self):
        self.answers: dict[str, str] = {}
        self.statuses: dict[str, int] = {}
        self.delay = 0.0
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                text = post_text(body)
                with server.lock:
                    server.requests.append({"body": body, "bytes": len(raw), "path": self.path})
                time.sleep(server.delay)
                status = server.statuses.get(text, 200)
                default = json.dumps(
                    {"entities": [{"name": text.split()[0], "kind": "person"}], "reasoning": "r"}
                )
                data = chat(server.answers.get(text, default)) if status == 200 else b'{"error": "refused"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@contextmanager
def canned() -> Iterator[tuple[Canned, str]]:
    state = Canned()
    with chat_endpoint(state.handler()) as endpoint:
        yield state, endpoint


@pytest.fixture
def server():
    with canned() as pair:
        yield pair


def write_posts(path, posts: list[dict]):
    path.write_text("".join(json.dumps(p) + "\n" for p in posts), encoding="utf-8")
    return path


def texts_file(tmp_path, texts, name="posts.jsonl"):
    return write_posts(tmp_path / name, [{"id": f"p{i}", "text": t} for i, t in enumerate(texts)])


def ask(endpoint, posts, out, *extra):
    args = ["ask-llm", "--in", str(posts), "--out", str(out), "--endpoint", endpoint, "--model", "m"]
    return runner.invoke(app, [*args, "--retries", "0", *extra])


def rows(path) -> dict[str, str]:
    return read_keyed_tsv(path, ("id",), "context")[0]


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------- N1. one output, one source (or the runs' lines recorded)


@pytest.mark.parametrize(
    "other, what",
    [
        (["--model", "m2"], "model 'm' (this run: 'm2')"),
        (["--no-structured"], "response_format 'json_schema' (this run: 'none')"),
        (["--image"], "images False (this run: True)"),
    ],
)
def test_a_rerun_asking_another_source_is_refused_unless_allowed(server, tmp_path, other, what):
    state, endpoint = server
    out = tmp_path / "c.tsv"
    assert ask(endpoint, texts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris"]), out).exit_code == 0
    before, asked = out.read_bytes(), len(state.requests)
    posts = texts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris", "Macron in Rome", "Lula in Rio"])
    refused = ask(endpoint, posts, out, *other)
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert refused.stderr == (
        f"error: {out}: its rows came from another source ({what}): one file would mix the answers of two; give "
        "another --out, or --allow-mixed to append anyway (the sidecar records the lines each run wrote)\n"
    )
    assert out.read_bytes() == before and len(state.requests) == asked  # nothing asked, nothing written
    allowed = ask(endpoint, posts, out, *other, "--allow-mixed")
    assert allowed.exit_code == 0, allowed.output
    lines = out.read_text(encoding="utf-8").splitlines()
    runs = json.loads((tmp_path / "c.tsv.meta.json").read_text(encoding="utf-8"))["runs"]
    assert [(r["first_line"], r["written"]) for r in runs] == [(2, 2), (4, 2)]  # each run's rows, by line
    assert [line.split("\t")[0] for line in lines[3:5]] == ["p2", "p3"]


def test_a_rerun_against_another_endpoint_is_refused_and_the_same_source_resumes(server, tmp_path):
    _, endpoint = server
    out = tmp_path / "c.tsv"
    posts = texts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris"])
    assert ask(endpoint, texts_file(tmp_path, ["Obama in Berlin"], "one.jsonl"), out).exit_code == 0
    with canned() as (_, elsewhere):
        refused = ask(elsewhere, posts, out)
    assert refused.exit_code == 2
    assert (
        f"endpoint '{endpoint}/chat/completions' (this run: '{elsewhere}/chat/completions')" in refused.stderr
    )
    again = ask(endpoint, posts, out)  # the same source: resumes as before
    assert again.exit_code == 0 and "wrote 1, failed 0, skipped 1" in again.stderr
    assert set(rows(out)) == {"p0", "p1"}


def test_rows_of_another_prompt_version_are_not_mixed_with_this_ones(server, tmp_path):
    _, endpoint = server
    out, meta = tmp_path / "c.tsv", tmp_path / "c.tsv.meta.json"
    assert ask(endpoint, texts_file(tmp_path, ["Obama in Berlin"], "one.jsonl"), out).exit_code == 0
    sidecar = json.loads(meta.read_text(encoding="utf-8"))
    sidecar["runs"][0]["prompt_version"] = "context-v1"  # as an earlier mner wrote it
    meta.write_text(json.dumps(sidecar), encoding="utf-8")
    refused = ask(endpoint, texts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris"]), out)
    assert refused.exit_code == 2
    assert (
        "its rows came from another source (prompt_version 'context-v1' (this run: 'context-v2'))"
        in refused.stderr
    )


# ------------------------------------------------------------------------- N2. a damaged sidecar, named


DAMAGED = {
    "deep": '{"written_by":"mner ask-llm","runs":[],"x":' + "[" * 100_000 + "]" * 100_000 + "}",
    "surrogate": '{"written_by":"mner ask-llm","format":1,"runs":[{"model":"\\udc80"}]}',
    "a run that is not one": '{"written_by":"mner ask-llm","format":1,"runs":[1]}',
    "a key that is a surrogate": '{"written_by":"mner ask-llm","runs":[],"\\ud800":1}',
}


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_a_damaged_sidecar_is_one_clear_error_on_every_run_and_leaves_no_file(server, tmp_path, kind):
    _, endpoint = server
    out, meta = tmp_path / "c.tsv", tmp_path / "c.tsv.meta.json"
    out.write_text("id\tcontext\n", encoding="utf-8")
    meta.write_text(DAMAGED[kind], encoding="utf-8")
    for _ in range(2):
        result = ask(endpoint, texts_file(tmp_path, ["Obama in Berlin"]), out)
        assert result.exit_code == 2 and "Traceback" not in result.output
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: {meta}: not the sidecar of an 'mner ask-llm' output (")
        assert line.endswith("); move it away or give another --out")
        assert leftovers(tmp_path) == [] and meta.read_text(encoding="utf-8") == DAMAGED[kind]
        assert out.read_text(encoding="utf-8") == "id\tcontext\n"


# --------------------------------------------------------- N3, N16. images: regular files, inside the folder


def test_an_image_that_is_a_fifo_a_device_or_a_folder_is_that_posts_error_at_once(server, tmp_path):
    """N3: opening a FIFO without a writer blocked for ever (and --timeout did not apply): no answer written."""
    _, endpoint = server
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "adir.jpg").mkdir()
    posts = write_posts(
        tmp_path / "posts.jsonl",
        [
            {"id": "f", "text": "Obama visits Berlin", "image": str(tmp_path / "fifo.jpg")},
            {"id": "d", "text": "Obama visits Berlin", "image": str(tmp_path / "adir.jpg")},
            {"id": "z", "text": "Obama visits Berlin", "image": "/dev/zero"},
            {"id": "p", "text": "Merkel in Paris"},
        ],
    )
    command = [sys.executable, "-m", "mner", "ask-llm", "--in", str(posts), "--out", str(tmp_path / "c.tsv")]
    command += ["--endpoint", endpoint, "--model", "m", "--image", "--images-root", "/", "--timeout", "5"]
    start = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("ask-llm hung on an image that is a FIFO")
    assert time.monotonic() - start < 30
    assert result.returncode == 1, result.stderr
    assert f"id 'f': image {tmp_path / 'fifo.jpg'}: not a regular file (a FIFO)" in result.stderr
    assert f"id 'd': image {tmp_path / 'adir.jpg'}: not a regular file (a folder)" in result.stderr
    assert "id 'z': image /dev/zero: not a regular file (a character device)" in result.stderr
    assert set(rows(tmp_path / "c.tsv")) == {"p"}  # the post after them is written


def test_images_outside_the_inputs_folder_are_not_sent_unless_asked(server, tmp_path):
    """N16: an absolute path, '..' and a link leading out were sent to the endpoint."""
    state, endpoint = server
    (tmp_path / "posts").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "private.jpg").write_bytes(JPEG)
    (tmp_path / "posts" / "mine.jpg").write_bytes(JPEG)
    (tmp_path / "posts" / "link.jpg").symlink_to(tmp_path / "outside" / "private.jpg")
    names = ["mine.jpg", str(tmp_path / "outside" / "private.jpg"), "../outside/private.jpg", "link.jpg"]
    posts = write_posts(
        tmp_path / "posts" / "posts.jsonl",
        [{"id": f"i{n}", "text": f"Post{n} here", "image": name} for n, name in enumerate(names)],
    )
    result = ask(endpoint, posts, tmp_path / "c.tsv", "--image")
    assert result.exit_code == 1
    for n, name in enumerate(names[1:], 1):
        assert (
            f"error: {posts}:{n + 1}: id 'i{n}': image {name!r} is outside the input's folder {tmp_path / 'posts'}: "
            "not sent (give --images-root, or --images-anywhere to send images from anywhere)\n"
        ) in result.stderr
    assert [post_text(r["body"]) for r in state.requests] == ["Post0 here"]
    anywhere = ask(endpoint, posts, tmp_path / "c.tsv", "--image", "--images-anywhere")
    assert anywhere.exit_code == 0, anywhere.output
    assert set(rows(tmp_path / "c.tsv")) == {"i0", "i1", "i2", "i3"}


# ------------------------------------------------------------------------ N4. image bytes in flight, bounded


@pytest.mark.parametrize("status", [200, 400])
def test_the_image_bytes_in_flight_are_bounded_whatever_the_concurrency(server, tmp_path, status):
    """N4: each request held about six copies of its image (16 at once of 19 MB: 1.9 GB); a post that failed
    kept its image until its turn to be written came."""
    state, endpoint = server
    state.delay = 0.3  # every request in flight at once, where the client lets them
    (tmp_path / "big.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(12 * 2**20))
    posts = write_posts(
        tmp_path / "posts.jsonl",
        [{"id": f"m{i}", "text": f"Post{i} here", "image": "big.jpg"} for i in range(12)],
    )
    state.statuses = {f"Post{i} here": status for i in range(12)}
    peak = tmp_path / "peak.txt"
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, "ask-llm", "--in", str(posts), "--out", str(tmp_path / "c.tsv")]
        + ["--endpoint", endpoint, "--model", "m", "--image", "--concurrency", "12", "--retries", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "MNER_TEST_PEAK": str(peak)},
    )
    assert result.returncode == (0 if status == 200 else 1), result.stderr
    assert result.stderr.count("error: ") == (0 if status == 200 else 12)
    assert len(state.requests) == (12 if status == 200 else 24)  # 400: asked again without the schema, once
    assert all(r["bytes"] > 16 * 2**20 for r in state.requests)  # each image sent whole (base64)
    peak_mb = int(peak.read_text()) / 1024
    assert peak_mb < 200, f"12 images of 12 MB, 12 requests at once, answered {status}: {peak_mb:.0f} MB"


@pytest.mark.parametrize("size", [1, 2, 3, 4, 98_303, 98_304, 98_305, 196_610, 1_000_003])
def test_an_image_is_encoded_block_by_block_as_base64_of_the_whole_file(tmp_path, size):
    import base64

    from mner.channels.llm_images import ImageFile

    data = (b"\xff\xd8\xff\xe0" + os.urandom(size))[:size] if size >= 3 else b"\xff\xd8\xff"[:size]
    (tmp_path / "x.jpg").write_bytes(data)
    if size < 3:  # too short to be a JPEG
        with (
            ImageFile(tmp_path / "x.jpg") as image,
            pytest.raises(LLMError, match="not a JPEG, PNG, GIF or WebP"),
        ):
            image.encoded()
        return
    with ImageFile(tmp_path / "x.jpg") as image:
        encoded = image.encoded()
    assert encoded.media_type == "image/jpeg" and bytes(encoded.base64) == base64.b64encode(data)
    assert encoded.url() == "data:image/jpeg;base64," + base64.b64encode(data).decode()


def test_a_byte_budget_never_holds_more_than_its_limit_and_lets_a_big_one_through_alone():
    from mner.channels.llm_images import ByteBudget

    budget, seen, lock = ByteBudget(100), [], threading.Lock()

    def hold(size):
        with budget.hold(size):
            with lock:
                seen.append(budget.held)
            time.sleep(0.02)

    threads = [threading.Thread(target=hold, args=(size,)) for size in [40, 40, 40, 150, 30, 60] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 18 and budget.held == 0
    assert max(seen) == 150 and all(held <= 100 for held in seen if held != 150)


# ------------------------------------------------------ N5, N17. an answer is written only when it is readable


LONG_NAME = json.dumps({"entities": [{"name": "A" * 20_000, "kind": "person"}], "reasoning": ""})
UNREADABLE = {
    "a list cut unreadable": (
        LONG_NAME,
        f"unusable answer: it lists no entity that can be read in its first 10,000 characters ({LONG_NAME[:60]!r})",
    ),
    "entities not a list": ('{"entities": "Obama"}', "unusable answer: its 'entities' is not a list"),
    "items without names": (
        '{"entities": [1, 2, null]}',
        "unusable answer: no item of its 'entities' has a name",
    ),
    "another key": (
        '{"entities": [{"nom": "Obama"}]}',
        "unusable answer: no item of its 'entities' has a name",
    ),
    "an empty name": (
        '{"entities": [{"name": "", "kind": "x"}]}',
        "unusable answer: no item of its 'entities' has a name",
    ),
    "null": ("null", "unusable answer: it lists no entity that can be read ('null')"),
    "a number": ("42", "unusable answer: it lists no entity that can be read ('42')"),
    "a string": (
        '"just a string"',
        "unusable answer: it lists no entity that can be read ('\"just a string\"')",
    ),
    "prose": (
        "The post is about a visit.",
        "unusable answer: it lists no entity that can be read ('The post is about a visit.')",
    ),
}


@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_an_answer_without_a_readable_entity_list_is_that_posts_error_and_asked_again(server, tmp_path, kind):
    state, endpoint = server
    content, reason = UNREADABLE[kind]
    state.answers["Merkel in Paris"] = content
    posts = texts_file(tmp_path, ["Obama in Berlin", "Merkel in Paris"])
    for _ in range(2):
        result = ask(endpoint, posts, tmp_path / "c.tsv")
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"error: {posts}:2: id 'p1': {reason} (after 1 tries)\n" in result.stderr
        assert set(rows(tmp_path / "c.tsv")) == {"p0"}
    assert sum(post_text(r["body"]) == "Merkel in Paris" for r in state.requests) == 2  # asked again


@pytest.mark.parametrize(
    "content, context",
    [
        ('{"entities": [], "reasoning": "no name here"}', "Named entities:Reasoning:no name here"),
        ("Named entities: none. Reasoning: a sunset.", "Named entities: none. Reasoning: a sunset."),
        ("None.", "None."),
        ('[{"name": "Merkel", "kind": "person"}]', '[{"name": "Merkel", "kind": "person"}]'),
        ("Named entities:1. Merkel (person)", "Named entities:1. Merkel (person)"),
    ],
)
def test_an_explicit_empty_list_and_any_list_the_parser_reads_are_answers(server, tmp_path, content, context):
    state, endpoint = server
    state.answers["Merkel in Paris"] = content
    result = ask(endpoint, texts_file(tmp_path, ["Merkel in Paris"]), tmp_path / "c.tsv")
    assert result.exit_code == 0, result.output
    assert rows(tmp_path / "c.tsv") == {"p0": context}


CONTROLS = "\x00\x1b[31m\x07\x7f\x85\x9b\u202e\u2066\u200f"


def clean(text: str) -> bool:
    return not any(
        ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u202a\u202b\u202c\u202d\u202e" for c in text
    )


def test_control_characters_of_an_answer_are_never_written(server, tmp_path):
    """N17: NUL, ESC [31m and U+202E reached the TSV and mner tag's context field."""
    state, endpoint = server
    state.answers["Obama visits Berlin"] = json.dumps(
        {
            "entities": [
                {"name": "Oba\x00ma", "kind": "per\x00son\x1b[31m"},
                {"name": "Z\u202eRTL", "kind": "\x85\x0c"},
            ],
            "reasoning": f"line\nbreak\ttab\rcr{CONTROLS}end",
        }
    )
    state.answers["Merkel in Paris"] = f"Named entities:1. Mer{CONTROLS}kel (per\x00son)Reasoning:x\x1b[0m"
    posts = texts_file(tmp_path, ["Obama visits Berlin", "Merkel in Paris"])
    result = ask(endpoint, posts, tmp_path / "c.tsv")
    assert result.exit_code == 0, result.output
    raw = (tmp_path / "c.tsv").read_text(encoding="utf-8")
    assert clean(raw.replace("\t", " ").replace("\n", " ")) and raw.count("\n") == 3 and raw.count("\t") == 3
    texts = rows(tmp_path / "c.tsv")
    assert (
        texts["p0"]
        == "Named entities:1. Oba ma (per son [31m)2. Z RTL (unknown)Reasoning:line break tab cr [31m end"
    )
    assert read_entities(texts["p1"]) == [("Mer [31m kel", "per son")]


# ---------------------------------------------------------------- N6. what is sent is bounded; 400 once


def test_a_long_post_is_sent_in_part_and_said(server, tmp_path):
    """N6: an 11 MB post was sent whole, 6 times (a text over 100,000 characters is now refused on reading, D8: the
    longest a post may be is sent in part)."""
    state, endpoint = server
    posts = write_posts(
        tmp_path / "posts.jsonl",
        [{"id": "big", "text": "Obama visits Berlin . " * 4_500, "caption": "x" * 5000}],
    )
    result = ask(endpoint, posts, tmp_path / "c.tsv")
    assert result.exit_code == 0, result.output
    (request,) = state.requests
    last = request["body"]["messages"][-1]["content"]
    assert last == "Post: " + ("Obama visits Berlin . " * 4_500)[:5000] + "\nImage caption: " + "x" * 1000
    assert request["bytes"] < 20_000
    assert (
        f"note: {posts}:1: id 'big': 98,000 characters of the post and its caption were not sent (the first "
        "5,000 of a post's text and 1,000 of its caption are)"
    ) in result.stderr
    meta = json.loads((tmp_path / "c.tsv.meta.json").read_text(encoding="utf-8"))
    assert meta["runs"][0]["sent_in_part"] == 1


@pytest.mark.parametrize("extra, sent", [([], 2), (["--no-structured"], 1)])
def test_a_400_is_not_retried_once_the_fallback_got_it_too(server, tmp_path, extra, sent):
    state, endpoint = server
    state.statuses["Merkel in Paris"] = 400
    posts = texts_file(tmp_path, ["Merkel in Paris"])
    result = ask(endpoint, posts, tmp_path / "c.tsv", "--retries", "2", *extra)
    assert result.exit_code == 1
    assert (
        f'error: {posts}:1: id \'p0\': HTTP 400 Bad Request: {{"error": "refused"}} (not retried: another try '
        "gets the same)\n"
    ) in result.stderr
    assert len(state.requests) == sent  # with the schema, then without it; never again


def test_a_5xx_is_still_retried(server, tmp_path):
    state, endpoint = server
    state.statuses["Merkel in Paris"] = 503
    result = ask(endpoint, texts_file(tmp_path, ["Merkel in Paris"]), tmp_path / "c.tsv", "--retries", "1")
    assert result.exit_code == 1 and "HTTP 503 Service Unavailable (after 2 tries)" in result.stderr
    assert len(state.requests) == 2


# ------------------------------------------------------------------- N14, N15. credentials; --timeout


def test_credentials_in_the_endpoint_are_sent_where_they_belong_and_never_printed_or_recorded(
    server, tmp_path
):
    state, endpoint = server
    keyed = endpoint.replace("http://", "http://user:pw-SECRET@") + "?api_key=SECRET3"
    result = ask(keyed, texts_file(tmp_path, ["Obama in Berlin"]), tmp_path / "k.tsv")
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in state.requests] == [
        "/v1/chat/completions?api_key=SECRET3"
    ]  # the query stays a query
    meta = (tmp_path / "k.tsv.meta.json").read_text(encoding="utf-8")
    assert "SECRET" not in meta + result.output and f'"endpoint": "{endpoint}/chat/completions"' in meta


def test_credentials_in_an_unreachable_endpoint_are_never_printed(tmp_path):
    endpoint = "http://user:pw-SECRET@127.0.0.1:9/v1?api_key=SECRET3"
    result = ask(endpoint, texts_file(tmp_path, ["Obama in Berlin"]), tmp_path / "c.tsv")
    assert result.exit_code == 1
    assert (
        f"error: {tmp_path / 'posts.jsonl'}:1: id 'p0': cannot reach http://127.0.0.1:9/v1: " in result.stderr
    )
    assert "SECRET" not in result.output
    bad_port = ask("http://user:pw-SECRET@127.0.0.1:nine/v1", texts_file(tmp_path, ["x"]), tmp_path / "d.tsv")
    assert bad_port.exit_code == 2
    assert bad_port.stderr == (
        "error: --endpoint http://127.0.0.1:nine/v1: expected http://HOST[:PORT]/PATH or https://...\n"
    )


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "0", "1e300"])
def test_a_timeout_that_is_not_a_number_of_seconds_is_refused(tmp_path, value):
    """N15: --timeout inf failed every post with a thread traceback."""
    result = ask("http://127.0.0.1:9/v1", texts_file(tmp_path, ["x"]), tmp_path / "c.tsv", "--timeout", value)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--timeout': expected seconds from 0.1 to 86400, got" in result.output
    assert not (tmp_path / "c.tsv").exists()
    with pytest.raises(ValueError, match="timeout: expected seconds in"):
        ChatClient("http://127.0.0.1:9/v1", "m", timeout=float(value))


def test_the_commands_timeout_limit_is_the_clients():
    from mner.channels import llm
    from mner.cli import ask_llm

    assert (
        ask_llm.MAX_TIMEOUT == llm.MAX_TIMEOUT
    )  # spelled twice only to keep `mner --help` from importing HTTP


# ------------------------------------------------------------------------- N18. a run that asked nothing


def test_a_run_whose_every_line_is_bad_exits_1_and_leaves_no_file(server, tmp_path):
    _, endpoint = server
    posts = tmp_path / "ws.jsonl"
    posts.write_text('{"id": " a", "text": "x"}\nnot json\n{"id": "", "text": "y"}\n', encoding="utf-8")
    result = ask(endpoint, posts, tmp_path / "c.tsv")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-3:-1] == [
        "wrote 0, failed 0, skipped 0 (already in the output), bad lines 3; 0.0 posts/s",
        f"{tmp_path / 'c.tsv'}: no row written: not left behind",
    ]
    assert result.stderr.splitlines()[-1] == (
        "3 line(s) of the input could not be asked (each named above): mend them and run the same command again"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws.jsonl"]


# ------------------------------------------------------------------------------------------- hypothesis


def json_values(alphabet) -> st.SearchStrategy:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(alphabet),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet, max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )


JSON = json_values(st.characters(categories=["Cs", "L", "N", "P", "Cc"]))  # lone surrogates too
PLAIN_JSON = json_values(st.characters(categories=["L", "N", "P", "Cc"]))
SOURCE = {  # the source of FAKE_CLIENT's runs
    "endpoint": "http://127.0.0.1:9/v1/chat/completions",
    "model": "m",
    "prompt_version": "context-v2",
    "response_format": "json_schema",
    "images": False,
}
RUN = st.one_of(
    st.dictionaries(st.sampled_from([*SOURCE, "written", "first_line"]), JSON),
    st.fixed_dictionaries(
        {k: st.just(v) for k, v in SOURCE.items()}, optional={"written": PLAIN_JSON, "x": PLAIN_JSON}
    ),
)


def sidecar_text(runs, extra, depth: int) -> str:
    """A sidecar of mner's shape holding anything (lone surrogates as JSON escapes), and a list nested ``depth``
    deep."""
    body = json.dumps(
        {"written_by": "mner ask-llm", "format": 1, "runs": runs, "x": extra}, ensure_ascii=True
    )
    return body[:-1] + ', "deep": ' + "[" * depth + "0" + "]" * depth + "}"


SIDECAR = st.one_of(
    st.binary(max_size=200),
    st.builds(
        sidecar_text, st.one_of(st.lists(RUN, max_size=3), JSON), JSON, st.sampled_from([0, 995, 5000])
    ),
    st.builds(sidecar_text, st.lists(RUN, max_size=3), PLAIN_JSON, st.sampled_from([0, 0, 0, 400])),
)
FAKE_CLIENT = SimpleNamespace(  # what the sidecar reads of a ChatClient
    endpoint="http://127.0.0.1:9/v1", model="m", structured=True, prompt=SimpleNamespace(version="context-v2")
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sidecar=SIDECAR, has_rows=st.booleans())
def test_any_sidecar_is_read_and_written_back_or_one_clear_error(tmp_path_factory, sidecar, has_rows):
    from mner.cli.ask_llm import ContextOutput  # (in mner.cli.ask_llm_output since #32)
    from mner.data import MnerInputError

    folder = tmp_path_factory.mktemp("sidecar")
    out, meta = folder / "c.tsv", folder / "c.tsv.meta.json"
    out.write_text("id\tcontext\n" + ("p0\tNamed entities:1. Obama (person)\n" if has_rows else ""), "utf-8")
    meta.write_bytes(sidecar if isinstance(sidecar, bytes) else sidecar.encode("utf-8"))
    try:
        output = ContextOutput(out)
    except MnerInputError as err:
        assert err.path == str(meta) and "not the sidecar of an 'mner ask-llm' output" in err.reason
        event("refused as damaged")
    else:
        try:
            run = output.start_run(FAKE_CLIENT, False)
        except MnerInputError as err:
            assert has_rows and "its rows came from another source" in err.reason
            event("refused as another source")
        else:
            output.finish_run(run, {"written": 0})
            written = json.loads(meta.read_text(encoding="utf-8"))
            assert written["runs"][-1]["model"] == "m" and written["runs"][-1]["written"] == 0
            event("read and written back")
        finally:
            output.close()
    assert leftovers(folder) == []


ANSWER = st.one_of(
    st.text(max_size=300),
    st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp", "L", "P"]), max_size=60).map(
        lambda s: f"Named entities:1. {s} (person)Reasoning:{s}"
    ),
    JSON.map(json.dumps),
    st.builds(
        lambda items, reasoning: json.dumps({"entities": items, "reasoning": reasoning}),
        st.lists(st.one_of(JSON, st.fixed_dictionaries({"name": JSON, "kind": JSON})), max_size=4),
        JSON,
    ),
)


def test_any_answer_is_a_readable_clean_line_or_that_posts_error():
    from mner.channels.llm import readable

    with canned() as (state, endpoint):
        client = ChatClient(endpoint, "m", retries=0)

        @settings(max_examples=200, deadline=None)
        @given(content=ANSWER)
        def check(content):
            state.answers["Obama in Berlin"] = content
            try:
                answer = client.ask("Obama in Berlin")
            except LLMError as err:
                assert str(err).startswith(("unusable answer: ", "malformed answer: ", "empty answer")), err
                event(str(err).split(":")[0])
            else:
                assert readable(answer.context) and clean(answer.context)
                assert answer.context == " ".join(answer.context.split())
                event("written")

        check()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contents=st.lists(ANSWER, min_size=3, max_size=3))
def test_any_answers_leave_every_post_written_or_named_never_a_crash(tmp_path_factory, contents):
    folder = tmp_path_factory.mktemp("answers")
    texts = ["Obama in Berlin", "Merkel in Paris", "Macron in Rome"]
    with canned() as (state, endpoint):
        state.answers = dict(zip(texts, contents))
        posts = texts_file(folder, texts)
        result = ask(endpoint, posts, folder / "c.tsv")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    written = set(rows(folder / "c.tsv")) if (folder / "c.tsv").exists() else set()
    failed = {f"p{i}" for i in range(3) if f"error: {posts}:{i + 1}: id 'p{i}': " in result.stderr}
    assert written | failed == {"p0", "p1", "p2"} and not written & failed
    assert result.exit_code == (1 if failed else 0)
