"""What hostile input found (issue #16), each case kept out by a test: nothing lost, nothing crashes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.serving.outputs import OutputFile
from tests.conftest import TWITTER2015

runner = CliRunner()
HOSTILE_LINES = {  # valid JSON that used to crash `mner tag` (and make /v1/tag answer 500)
    "surrogate": '{"id":"s","text":"Obama \\udc80 Berlin"}',
    "deep": '{"id":"d","text":' + "[" * 2000 + "]" * 2000 + "}",
    "long int": '{"id":"n","text":"Obama","n":' + "9" * 5000 + "}",
}


def tag(*args: str):
    return runner.invoke(app, ["tag", *args])


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write(path, lines: list[str], newline_at_end: bool = True):
    path.write_text("\n".join(lines) + ("\n" if newline_at_end else ""), encoding="utf-8")
    return path


# ------------------------------------------------------------------ 1. the output is never the input


def test_an_output_that_is_the_input_is_refused_and_left_whole(tmp_path):
    posts = write(
        tmp_path / "same.jsonl",
        ['{"id":"a","text":"Obama in Berlin"}', '{"id":"b","text":"Paris"}'],
        newline_at_end=False,
    )
    before = posts.read_bytes()
    result = tag("--in", str(posts), "--out", str(posts))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {posts}: --out is the input file: give another --out (the input is never overwritten)\n"
    )
    link = tmp_path / "link.jsonl"
    link.hardlink_to(posts)  # the same file by another name
    assert tag("--in", str(posts), "--out", str(link)).exit_code == 2
    assert posts.read_bytes() == before


def test_posts_with_ids_are_not_taken_for_an_earlier_output(tmp_path):
    posts = write(tmp_path / "in.jsonl", ['{"text":"Obama in Berlin"}'])
    theirs = write(
        tmp_path / "theirs.jsonl", ['{"id":"a","text":"x"}', '{"id":"b","text":"y"}'], newline_at_end=False
    )
    before = theirs.read_bytes()
    result = tag("--in", str(posts), "--out", str(theirs))
    assert result.exit_code == 2 and "theirs.jsonl:1: not an mner tag record" in result.stderr
    assert theirs.read_bytes() == before


def test_a_file_whose_only_line_is_cut_is_not_truncated(tmp_path):
    posts = write(tmp_path / "in.jsonl", ['{"text":"Obama in Berlin"}'])
    theirs = tmp_path / "theirs.txt"
    theirs.write_text("half a line", encoding="utf-8")
    result = tag("--in", str(posts), "--out", str(theirs))
    assert result.exit_code == 2 and "its only line is not a record" in result.stderr
    assert theirs.read_text(encoding="utf-8") == "half a line"


# ------------------------------------------- 2. one line that parses cannot crash a run, or every rerun


@pytest.mark.parametrize("name", list(HOSTILE_LINES))
def test_a_hostile_line_becomes_its_error_record(tmp_path, name):
    posts = write(
        tmp_path / "posts.jsonl",
        ['{"id":"a","text":"Obama in Berlin"}', HOSTILE_LINES[name], '{"id":"c","text":"Paris"}'],
    )
    out = tmp_path / "out.jsonl"
    first = tag("--in", str(posts), "--out", str(out))
    assert first.exit_code == 0, first.output
    got = records(out)
    assert [r["id"] for r in got] == ["a", "posts-2", "c"]
    expected = {
        "surrogate": "not valid Unicode: a lone surrogate '\\udc80' in a string",
        "deep": "not usable JSON: nested too deeply",
        "long int": "not usable JSON: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 "
        "digits",
    }[name]
    assert got[1] == {"id": "posts-2", "line": 2, "error": f"{posts}:2: {expected}"}
    again = tag("--in", str(posts), "--out", str(out))
    assert (
        again.exit_code == 0
        and "nothing to do: all 3 posts of the input are in the output already" in again.stderr
    )


def test_an_over_long_line_is_an_error_not_a_memory_spike(tmp_path, monkeypatch):
    import mner.data

    monkeypatch.setattr(mner.data, "MAX_LINE_BYTES", 1000)
    posts = write(
        tmp_path / "posts.jsonl", ['{"id":"a","text":"' + "word " * 1000 + '"}', '{"id":"b","text":"Paris"}']
    )
    out = tmp_path / "out.jsonl"
    assert tag("--in", str(posts), "--out", str(out)).exit_code == 0
    assert records(out)[0] == {
        "id": "posts-1",
        "line": 1,
        "error": f"{posts}:1: line is over 1,000 bytes, the most a line may hold",
    }
    assert records(out)[1]["id"] == "b"


# ----------------------------------------------------- 4. duplicate ids, and two runs on one output


@pytest.mark.parametrize(
    "lines",
    [
        ['{"id":"a","text":"Obama in Berlin"}', '{"id":"a","text":"Merkel in Paris"}'],
        [
            '{"id":"posts-2","text":"Obama in Berlin"}',
            '{"text":"Merkel in Paris"}',
        ],  # explicit id = a default id
    ],
    ids=["same id twice", "explicit id equals a default id"],
)
def test_a_resume_loses_no_post_with_a_repeated_id(tmp_path, lines):
    posts = write(tmp_path / "posts.jsonl", lines)
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    assert tag("--in", str(posts), "--out", str(whole), "--batch-size", "1").exit_code == 0
    cut.write_text(
        whole.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8"
    )  # interrupted
    resumed = tag("--in", str(posts), "--out", str(cut), "--batch-size", "1")
    assert resumed.exit_code == 0 and "tagged 1, errors 0, skipped 1" in resumed.stderr
    assert records(cut) == records(whole) and len(records(cut)) == 2


def test_a_second_run_on_the_same_output_is_refused(tmp_path):
    posts = write(tmp_path / "posts.jsonl", ['{"id":"a","text":"Obama in Berlin"}'])
    out = tmp_path / "out.jsonl"
    held = OutputFile(out, posts)  # another job holds it
    try:
        result = tag("--in", str(posts), "--out", str(out))
        assert out.read_text(encoding="utf-8") == ""  # the refused run wrote nothing
    finally:
        held.close()
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: {out}: another mner job is writing to this file: wait for it or give another --out\n"
    )
    assert not out.exists()  # the job that made it wrote nothing: no empty file is left behind
    assert tag("--in", str(posts), "--out", str(out)).exit_code == 0 and len(records(out)) == 1


# ------------------------------------------------------------------------ 3, 7, 8, 9. the HTTP service


@pytest.fixture(scope="module")
def pipeline():
    from mner.serving.pipeline import Pipeline

    return Pipeline()


@pytest.fixture(scope="module")
def url(pipeline):
    from mner.serving.service import create_app
    from tests.serving import running_server

    with running_server(create_app(pipeline), read_timeout=1.0) as base:
        yield base


@pytest.mark.parametrize("name", list(HOSTILE_LINES))
def test_a_hostile_body_is_a_400_and_the_connection_lives_on(url, name):
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        bad = client.post(
            "/v1/tag", content=HOSTILE_LINES[name].encode(), headers={"Content-Type": "application/json"}
        )
        after = client.post("/v1/tag", json={"text": "Obama in Berlin"})  # the same keep-alive connection
    assert bad.status_code == 400 and bad.json()["error"].startswith("malformed JSON: not ")
    assert after.status_code == 200 and after.json()["entities"][0]["text"] == "Obama"


def test_a_request_is_refused_before_its_body_is_read_when_the_service_is_full(pipeline):
    import socket

    from mner.serving.service import Limits, create_app
    from tests.serving import running_server

    limits = Limits(max_buffered_bytes=1_000_000)
    with running_server(create_app(pipeline, limits)) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2000000\r\n\r\n"
            )  # announces 2 MB, sends none of it
            answer = b""
            while b"holding" not in answer and (chunk := sock.recv(65536)):  # the answer, before any body
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer.lower()
    assert b"holding at most 1,000,000 bytes of bodies" in answer


@pytest.mark.parametrize(
    "sent",
    [
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Ty",  # headers never finished
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",  # body
        b"",  # connected, said nothing
    ],
    ids=["headers", "body", "nothing"],
)
def test_a_stalled_client_is_cut_off(url, sent):
    import socket
    import time

    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(sent)
        start = time.monotonic()
        while sock.recv(65536):  # until the server closes the connection
            pass
        waited = time.monotonic() - start
    assert waited < 10  # the server's read deadline is 1 s here (30 s by default)


def test_stalled_clients_do_not_block_a_normal_request(url):
    import socket

    import httpx

    port = int(url.rsplit(":", 1)[1])
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(200)]
    try:
        for sock in stalled:
            sock.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\n")
        response = httpx.post(url + "/v1/tag", json={"text": "Obama in Berlin"}, timeout=10)
    finally:
        for sock in stalled:
            sock.close()
    assert response.status_code == 200


def test_base64_with_line_breaks_is_accepted(url):
    import base64

    import httpx

    from tests.serving import photo_jpeg

    photo = photo_jpeg("chelsea")
    wrapped = base64.encodebytes(photo).decode()  # 76 characters a line, as `base64` prints it
    assert "\n" in wrapped
    plain = httpx.post(
        url + "/v1/tag", json={"text": "Chelsea", "image": base64.b64encode(photo).decode()}, timeout=60
    )
    lines = httpx.post(url + "/v1/tag", json={"text": "Chelsea", "image": wrapped}, timeout=60)
    assert lines.status_code == 200 and lines.json() == plain.json()


def test_docs_work_offline_and_head_is_answered(url):
    import httpx

    docs = httpx.get(url + "/docs", timeout=10)
    assert (
        docs.status_code == 200
        and "cdn" not in docs.text.lower()
        and "/docs-assets/swagger-ui-bundle.js" in docs.text
    )
    assert httpx.get(url + "/docs-assets/swagger-ui-bundle.js", timeout=10).status_code == 200
    assert httpx.head(url + "/", timeout=10).status_code == 200


def test_serve_refuses_a_port_out_of_range_in_one_line():
    result = runner.invoke(app, ["serve", "--port", "99999"])
    assert result.exit_code == 2
    assert "Invalid value for '--port': Input should be less than or equal to 65535" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------- 5. silent corruption refused


def test_a_model_with_flipped_bits_or_nan_weights_is_refused(tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from mner.model.folder import DEFAULT_MODEL

    flipped = tmp_path / "flipped"
    shutil.copytree(DEFAULT_MODEL, flipped)
    data = bytearray((flipped / "model.safetensors").read_bytes())
    data[-100] ^= 0x10  # one bit of a weight
    (flipped / "model.safetensors").write_bytes(bytes(data))
    result = runner.invoke(
        app, ["evaluate", "--model", str(flipped), "--data", str(TWITTER2015 / "test.txt")]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {flipped / 'model.safetensors'}: the weights differ from the ones this model was saved with "
        "(their SHA-256 is not the one config.json records): a damaged or replaced file\n"
    )
    nan = tmp_path / "nan"
    shutil.copytree(DEFAULT_MODEL, nan)
    state = load_file(str(nan / "model.safetensors"))
    weight = next(name for name in state if name.endswith("emit.bias"))  # an ensemble's: members.0.emit.bias
    state[weight][0] = float("nan")
    save_file(state, str(nan / "model.safetensors"))
    record = json.loads((nan / "config.json").read_text(encoding="utf-8"))
    del record["weights_sha256"]  # a model from before hashes were recorded
    (nan / "config.json").write_text(json.dumps(record), encoding="utf-8")
    result = runner.invoke(app, ["predict", "--model", str(nan), "--text", "Obama in Berlin"])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: {nan / 'model.safetensors'}: weight '{weight}' holds NaN or infinite values: a damaged model\n"
    )


def test_a_model_config_with_a_mistyped_value_is_one_clear_error(tmp_path):
    import shutil

    from mner.model.folder import DEFAULT_MODEL

    shutil.copytree(DEFAULT_MODEL, tmp_path / "m")
    record = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    record["model"]["hidden"] = "150"
    (tmp_path / "m" / "config.json").write_text(json.dumps(record), encoding="utf-8")
    result = runner.invoke(app, ["predict", "--model", str(tmp_path / "m"), "--text", "Obama"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {tmp_path / 'm' / 'config.json'}: bad 'model' section: model config key 'hidden': expected int, got str '150'\n"
    )


def test_a_damaged_kg_is_refused_when_opened(tmp_path):
    from mner.knowledge import KGSources, build_kg

    (tmp_path / "labels.tsv").write_text("cfc\tChelsea F.C.\tfootball club\n", encoding="utf-8")
    build_kg(tmp_path / "kg.sqlite", KGSources(labels=[tmp_path / "labels.tsv"]))
    data = bytearray((tmp_path / "kg.sqlite").read_bytes())
    for offset in range(4096, len(data), 4096):  # the header of every page after the first
        data[offset : offset + 8] = b"\xff" * 8
    (tmp_path / "kg.sqlite").write_bytes(bytes(data))
    for args in (
        ["kg", "stats", "--kg", str(tmp_path / "kg.sqlite")],
        ["predict", "--text", "Chelsea won", "--kg", str(tmp_path / "kg.sqlite")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(
            f"error: {tmp_path / 'kg.sqlite'}: the KG file is damaged (SQLite's quick_check: "
        )
        assert "Traceback" not in result.output


def test_a_full_disk_names_the_file(tmp_path):
    import resource
    import signal
    import subprocess
    import sys

    posts = write(tmp_path / "posts.jsonl", ['{"text":"Obama in Berlin"}'] * 50)

    def small_files():  # writes past 2 KB fail with EFBIG ("File too large"), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    out = tmp_path / "out.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "mner", "tag", "--in", str(posts), "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        preexec_fn=small_files,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {out}: cannot write (File too large)"


def test_over_long_lines_in_conll_and_kg_sources_are_refused_in_bounded_reads(tmp_path, monkeypatch):
    import mner.data
    from mner.data import MnerInputError, read_conll
    from mner.knowledge.builder import ImportReport
    from mner.knowledge.importers import iter_lines

    monkeypatch.setattr(mner.data, "MAX_LINE_BYTES", 1000)
    (tmp_path / "data.txt").write_text("IMGID:1\n" + "x" * 5000 + "\tO\n", encoding="utf-8")
    with pytest.raises(MnerInputError) as err:
        read_conll(tmp_path / "data.txt")
    assert str(err.value) == "data.txt:2: line is over 1,000 bytes, the most a line may hold"
    (tmp_path / "triples.tsv").write_text("a\tb\tc\n" + "y" * 5000 + "\nd\te\tf\n", encoding="utf-8")
    report = ImportReport("tsv")
    assert [n for n, _ in iter_lines(tmp_path / "triples.tsv", report)] == [1, 3]
    assert report.skipped_lines() == ["triples.tsv:2: line is over 1,000 bytes, the most a line may hold"]


# ---------------------------------------------------------------- issue #25: the service, round two


def test_sockets_that_send_headers_and_stall_do_not_use_up_the_places(pipeline):
    """Issue #25 case 15: 64 sockets sending their headers, then nothing, made every request 503 for 30 s."""
    import socket

    import httpx

    from mner.serving.service import Limits, create_app
    from tests.serving import running_server

    with running_server(create_app(pipeline, Limits(max_pending=4)), read_timeout=20) as base:
        port = int(base.rsplit(":", 1)[1])
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(12)]
        try:
            for sock in stalled:  # whole headers, a body announced and never sent
                sock.sendall(
                    b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n"
                )
            with httpx.Client(base_url=base, timeout=10) as client:
                answers = [client.post("/v1/tag", json={"text": "Obama in Berlin"}) for _ in range(3)]
        finally:
            for sock in stalled:
                sock.close()
    assert [a.status_code for a in answers] == [200, 200, 200]


@pytest.mark.parametrize(
    "content_type, body, message",
    [
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nObama \xff Berlin\r\n--xyz--\r\n',
            "form field 'text' is not UTF-8 (byte 0xff at offset 6): expected UTF-8 text",
        ),
        (
            "multipart/form-data; boundary=xyz",
            (
                b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nObama\r\n'
                b'--xyz\r\nContent-Disposition: form-data; name="caption"\r\n\r\ncaf\xe9\r\n--xyz--\r\n'
            ),
            "form field 'caption' is not UTF-8 (byte 0xe9 at offset 3): expected UTF-8 text",
        ),
        (
            "application/x-www-form-urlencoded",
            b"text=Obama+%FF+Berlin",
            "malformed form: not UTF-8 (byte 0xff): expected UTF-8 text",
        ),
        (
            "application/x-www-form-urlencoded",
            b"text=Obama+\xff+Berlin",
            "malformed form: not UTF-8 (byte 0xff): expected UTF-8 text",
        ),
    ],
    ids=["multipart text", "multipart caption", "urlencoded escape", "urlencoded raw byte"],
)
def test_form_text_that_is_not_utf8_is_a_400_as_in_json(url, content_type, body, message):
    """Issue #25 case 22 (its multipart half): a form's bytes were read as Latin-1 where JSON gets a 400."""
    import httpx

    response = httpx.post(url + "/v1/tag", content=body, headers={"Content-Type": content_type}, timeout=30)
    assert (response.status_code, response.json()) == (400, {"error": message})
    good = httpx.post(url + "/v1/tag", files={"text": (None, "Zürich in Crète".encode())}, timeout=30)
    assert good.status_code == 200 and good.json()["tokens"] == ["Zürich", "in", "Crète"]


@pytest.mark.parametrize("host", ["", " "])
def test_serve_refuses_an_empty_host(host):
    """Issue #25 case 26: ``--host ""`` listened on every interface and printed http://:PORT/."""
    result = runner.invoke(app, ["serve", "--host", host, "--port", "8765"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: --host {host!r}: expected an address to listen on: 127.0.0.1 (this machine only), or 0.0.0.0 "
        "for every interface\n"
    )


def _with_small_files(limit: int):
    """A preexec_fn: writes past ``limit`` bytes fail with EFBIG ("File too large"), as on a full disk."""

    def apply():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize(
    "limit, what", [(100_000, "model"), (3_000_000, "image encoder"), (100_000, "text encoder")]
)
def test_a_full_disk_in_export_names_the_file_and_leaves_nothing_cut(tmp_path, limit, what):
    """Issue #25 case 20 (export): no file name, a truncated model.onnx; and a cut GloVe index left in the cache."""
    import shutil
    import subprocess
    import sys

    pytest.importorskip("torch", reason="exporting needs torch (pip install 'mner[train]')")
    from mner.model.folder import MODELS

    folder, cache = tmp_path / "m", tmp_path / "cache"
    # one GloVe network (fast's text path); the default's text path, which reads MPNet, for its weights' files
    shutil.copytree(
        MODELS["text" if what == "text encoder" else "fast"].folder
        / ("" if what == "text encoder" else "text"),
        folder,
    )
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = subprocess.run(
        [sys.executable, "-m", "mner", "export", "--model", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=_with_small_files(limit),
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "MNER_CACHE": str(cache)},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    expected = {
        "model": f"error: {folder / 'model.onnx'}: cannot write the ONNX export (File too large)",
        "image encoder": f"error: {cache / 'vision-lite0-grid7.onnx'}: cannot write the image encoder's ONNX file "
        "(File too large)",
        "text encoder": f"error: {cache / 'encoders'}/all-mpnet-base-v2-",
    }[what]
    last = result.stderr.strip().splitlines()[-1]
    if what == "text encoder":  # the first thing MPNet writes: its joined zip, in the cache
        assert last.startswith(expected) and last.endswith(
            "/joined.zip.partial: cannot unpack all-mpnet-base-v2's weights (File too large)"
        ), last
        assert not list((cache / "encoders").glob("*/joined.zip.partial"))
        return
    assert last == expected
    if what == "model":
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the old export, whole
    assert [p.name for p in cache.iterdir() if ".part" in p.name or p.name.count(".npz") > 1] == []


def test_kg_check_finds_what_the_quick_check_of_every_open_does_not(tmp_path):
    """Issue #25 case 23: a bit flipped in an index passes SQLite's quick_check; ``mner kg check`` runs the full
    integrity_check. Errors are one line (SQLite's report spans several)."""
    from mner.knowledge import KGSources, build_kg

    labels = "".join(f"e{i}\tChelsea Club {i}\tfootball club\n" for i in range(200))
    (tmp_path / "labels.tsv").write_text(labels, encoding="utf-8")
    build_kg(tmp_path / "kg.sqlite", KGSources(labels=[tmp_path / "labels.tsv"]))
    good = runner.invoke(app, ["kg", "check", "--kg", str(tmp_path / "kg.sqlite")])
    assert good.exit_code == 0 and good.stdout.startswith(
        f"{tmp_path / 'kg.sqlite'}: ok (SQLite's integrity_check: "
    )
    data = bytearray((tmp_path / "kg.sqlite").read_bytes())
    data[data.find(b"chelsea club 17")] ^= 0x20  # one bit: 'c' -> 'C' in the first copy of an alias key
    (tmp_path / "kg.sqlite").write_bytes(bytes(data))
    opened = runner.invoke(app, ["kg", "stats", "--kg", str(tmp_path / "kg.sqlite")])
    assert opened.exit_code == 0  # the quick check of every open does not see it
    checked = runner.invoke(app, ["kg", "check", "--kg", str(tmp_path / "kg.sqlite")])
    assert checked.exit_code == 2
    assert checked.stderr == (
        f"error: {tmp_path / 'kg.sqlite'}: the KG file is damaged (SQLite's integrity_check: row 18 missing from "
        "index aliases_key); rebuild it with 'mner kg build'\n"
    )


def test_a_damaged_kg_is_refused_in_one_line(tmp_path):
    from mner.knowledge import KGSources, build_kg

    (tmp_path / "labels.tsv").write_text("cfc\tChelsea F.C.\tfootball club\n", encoding="utf-8")
    build_kg(tmp_path / "kg.sqlite", KGSources(labels=[tmp_path / "labels.tsv"]))
    data = bytearray((tmp_path / "kg.sqlite").read_bytes())
    for offset in range(4096, len(data), 4096):
        data[offset : offset + 8] = b"\xff" * 8
    (tmp_path / "kg.sqlite").write_bytes(bytes(data))
    for command in ("stats", "check"):
        result = runner.invoke(app, ["kg", command, "--kg", str(tmp_path / "kg.sqlite")])
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert "*** in database main *** " in result.stderr


def test_a_config_too_large_for_its_weights_is_refused_on_torch(tmp_path):
    """Issue #25 case 24: ``"hidden": 100000000`` with --runtime torch asked for 176 GB: a traceback."""
    import shutil

    pytest.importorskip("torch", reason="--runtime torch needs torch")
    from mner.model.folder import MODELS

    shutil.copytree(MODELS["fast"].folder / "text", tmp_path / "m")  # one GloVe network
    record = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    record["model"]["hidden"] = 100_000_000
    (tmp_path / "m" / "config.json").write_text(json.dumps(record), encoding="utf-8")
    result = runner.invoke(
        app, ["predict", "--model", str(tmp_path / "m"), "--runtime", "torch", "--text", "Obama in Berlin"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == (
        f"error: {tmp_path / 'm' / 'config.json'}: the model config does not match its weights: "
        "'encoder.lstm.weight_ih_l0' is [600, 110] in model.safetensors, [400000000, 110] by the config (a changed "
        "or damaged config.json)\n"
    )


def test_demo_photos_never_overwrite_a_file_nor_make_parents(tmp_path):
    """Issue #25 case 25: ``mner demo --photos DIR`` overwrote an existing chelsea.jpg and made parents at any
    depth."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "chelsea.jpg").write_bytes(b"my own cat")
    result = runner.invoke(app, ["demo", "--photos", str(photos)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {photos / 'chelsea.jpg'}: exists and is not mner's sample photo: mner never overwrites a file; "
        "give another --photos folder\n"
    )
    assert sorted(p.name for p in photos.iterdir()) == ["chelsea.jpg"]
    assert (photos / "chelsea.jpg").read_bytes() == b"my own cat"
    deep = tmp_path / "a" / "b" / "photos"
    result = runner.invoke(app, ["demo", "--photos", str(deep)])
    assert (
        result.exit_code == 2
        and result.stderr == f"error: {deep}: folder {str(deep.parent)!r} does not exist\n"
    )
    assert not (tmp_path / "a").exists()
    fresh = tmp_path / "fresh"
    for _ in range(2):  # a rerun keeps the photos it wrote
        result = runner.invoke(app, ["demo", "--photos", str(fresh)])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in fresh.iterdir()) == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
