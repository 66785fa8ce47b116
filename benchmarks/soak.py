"""Soak of ``mner serve``, kill -9 loops (``mner tag``, ``mner ask-llm --image``), the spaCy component; bounded.

Issues #16, #25 and #32; loopback (127.0.0.1) only, bounded in count and time, each leg stops by itself.

Usage: python benchmarks/soak.py [--minutes 3] [--clients 8] [--kill-posts 3000] [--kills 20] [--job-posts 5000]
[--job-kills 5] [--llm-posts 800] [--llm-kills 8] [--spacy-docs 1000] [--spacy-batch-sizes 1 7 32 128]
[--report FILE | --update]

Serve: starts ``mner serve`` (defaults) on a free 127.0.0.1 port, then for ``--minutes`` runs ``--clients``
client threads that each send, at random, valid posts (JSON, multipart with a JPEG) and hostile ones:
the three bodies that used to answer 500 (a lone surrogate, 2,000-deep nesting, a 5,000-digit integer),
malformed JSON, wrong types, a wrong Content-Type, an over-long text, a body announced at 100 MB, a
connection that sends half its headers and stalls, a chunked body that never ends. Then two bursts measured
on their own: 100 concurrent maximum-size (≈10 MB) image uploads, and a normal request's latency with 500
stalled sockets open against it with none. Prints requests, answers by class, p50/p99 of the valid
requests, and the server's RSS at start, peak and end (VmRSS, sampled every 50 ms).

Kill loop: ``mner tag`` on ``--kill-posts`` posts (a third with images, some hostile lines), killed with
SIGKILL 1-3 s after its start ``--kills`` times, then rerun until it completes; then checks every input line's id appears in the
output exactly once.

Job kill loops (issue #25): the same posts as a Parquet input into a Parquet output (local engine), and with
``--engine ray`` (JSONL, and Parquet in and out), each killed with SIGKILL (its whole process group: the driver
and the local Ray it started) 0-3 s after a run wrote its first records, ``--job-kills`` times, then left
to finish; then every
input post's id must appear in the output as often as in the input, in input order, with no temporary part
file left.

``ask-llm --image`` kill loop (issue #32): ``mner ask-llm --image`` on ``--llm-posts`` posts (two in three with
a photo inside the input's folder) against a fake OpenAI-compatible chat endpoint this script serves on 127.0.0.1
(answers after 20-200 ms naming the post's longest word, one request in 50 a 503), killed with SIGKILL
``--llm-kills`` times (in turn 0-2 s after a run wrote its first row, and 0.3-1.5 s after its start), then rerun
until a run exits 0; then every post's id must appear in the TSV exactly once, each row read back as the answer
given for its post, each request carry its post's photo byte for byte, the sidecar ``OUT.meta.json`` be valid
JSON, and no temporary file be left.

spaCy leg (issue #32): ``spacy.blank("en")`` with ``nlp.add_pipe("mner")`` tags ``--spacy-docs`` docs (a third with
``doc._.image`` a photo's path, one in 20 a bad image: bytes that are none, a text file, a missing file, a truncated
JPEG, a value of the wrong type) one at a time, then through ``nlp.pipe`` at each ``--spacy-batch-sizes`` with an
error handler (``nlp.set_error_handler``) that collects failures: each doc tagged (entities inside its text) or
handed to the handler, exactly once, in input order, with the same entities or error as alone.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from bench_serve import free_port, make_posts, start_server, wait_for_health
from runs import publish, report_option, report_path

HOSTILE = {
    "surrogate": b'{"text":"Obama \\udc80 Berlin"}',
    "deep": b'{"text":' + b"[" * 2000 + b"]" * 2000 + b"}",
    "long int": b'{"text":"Obama","n":' + b"9" * 5000 + b"}",
    "not json": b"{text: Obama",
    "wrong type": b'{"text": 42}',
    "unknown field": b'{"text": "Obama", "colour": "red"}',
    "long text": json.dumps({"text": "word " * 5000}).encode(),
}


class RssSampler(threading.Thread):
    """The server's resident memory (VmRSS), sampled every 50 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stopped = pid, [], threading.Event()

    def read(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # MB
        return float("nan")

    def run(self):
        while not self.stopped.wait(0.05):
            try:
                self.samples.append(self.read())
            except OSError:
                return


def raw(port: int, data: bytes, wait: float = 0.0, timeout: float = 60) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if wait:
            time.sleep(wait)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    head, _, body = answer.partition(b"\r\n\r\n")
                    length = next(
                        (
                            int(h.split(b":")[1])
                            for h in head.split(b"\r\n")
                            if h.lower().startswith(b"content-length:")
                        ),
                        None,
                    )
                    if length is not None and len(body) >= length:
                        break
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


def status_of(answer: bytes) -> str:
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"


def client(port: int, posts, deadline: float, stats: Counter, latencies: list, seed: int):
    import httpx

    rng = random.Random(seed)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=120) as http:
        while time.monotonic() < deadline:
            kind = rng.choices(
                ["json", "multipart", "hostile", "415", "huge", "stall", "chunked"], [30, 20, 30, 5, 5, 5, 5]
            )[0]
            start = time.perf_counter()
            try:
                if kind in ("json", "multipart"):
                    text, jpeg = posts[rng.randrange(len(posts))]
                    if kind == "json":
                        response = http.post("/v1/tag", json={"text": text})
                    else:
                        response = http.post(
                            "/v1/tag", data={"text": text}, files={"image": ("p.jpg", jpeg, "image/jpeg")}
                        )
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - start)
                    stats[f"{kind} {response.status_code}"] += 1
                elif kind == "hostile":
                    name = rng.choice(list(HOSTILE))
                    response = http.post(
                        "/v1/tag", content=HOSTILE[name], headers={"Content-Type": "application/json"}
                    )
                    stats[f"hostile ({name}) {response.status_code}"] += 1
                elif kind == "415":
                    response = http.post("/v1/tag", content=b"Obama", headers={"Content-Type": "text/plain"})
                    stats[f"wrong content type {response.status_code}"] += 1
                elif kind == "huge":
                    answer = raw(
                        port,
                        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100000000\r\n\r\n",
                    )
                    stats[f"100 MB announced {status_of(answer)}"] += 1
                elif kind == "stall":
                    answer = raw(port, b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Ty", timeout=60)
                    stats[f"half headers, stalled: {status_of(answer)}"] += 1
                else:
                    answer = raw(
                        port,
                        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"tex\r\n',
                        timeout=60,
                    )
                    stats[f"chunked body never ending: {status_of(answer)}"] += 1
            except httpx.HTTPError as err:
                stats[f"{kind} client error {type(err).__name__}"] += 1


def big_upload_burst(port: int, count: int = 100) -> Counter:
    """``count`` concurrent uploads of a ≈10 MB PNG (the default maximum image size)."""
    import httpx
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (1800, 1840, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(noise).save(png, "PNG", compress_level=0)
    data = png.getvalue()[: 10 * 1024 * 1024 - 1]  # just under the limit (truncated: decoding refuses it)
    body = json.dumps({"text": "Obama in Berlin", "image": base64.b64encode(data).decode()}).encode()
    stats: Counter = Counter()

    def send(_):
        try:
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/tag",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=300,
            )
            stats[r.status_code] += 1
        except httpx.HTTPError as err:
            stats[type(err).__name__] += 1

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats


def stalled_sockets_delay(port: int, count: int = 500, tries: int = 20) -> tuple[float, float]:
    """Median latency (ms) of a text post with no stalled sockets, and with ``count`` stalled ones open."""
    import httpx

    def median_latency() -> float:
        times = []
        with httpx.Client(timeout=30) as http:
            for _ in range(tries):
                start = time.perf_counter()
                http.post(f"http://127.0.0.1:{port}/v1/tag", json={"text": "Obama in Berlin"})
                times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    idle = median_latency()
    stalled = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\n")
        stalled.append(sock)
    try:
        loaded = median_latency()
    finally:
        for sock in stalled:
            sock.close()
    return idle, loaded


def soak(args) -> list[str]:
    port = free_port()
    server = start_server(port, None, None)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", server)
        sampler = RssSampler(server.pid)
        start_rss = sampler.read()
        sampler.start()
        posts = make_posts(40)
        stats: Counter = Counter()
        latencies: list[float] = []
        deadline = time.monotonic() + 60 * args.minutes
        threads = [
            threading.Thread(target=client, args=(port, posts, deadline, stats, latencies, i))
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        mixed_peak = max(sampler.samples)
        burst = big_upload_burst(port)
        idle_ms, stalled_ms = stalled_sockets_delay(port)
        time.sleep(1)
        end_rss = sampler.read()
        sampler.stopped.set()
        peak = max(sampler.samples)
        alive = server.poll() is None
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    total = sum(stats.values())
    p50, p99 = (1000 * statistics.quantiles(latencies, n=100)[k] for k in (49, 98))
    lines = [
        f"### `mner serve` soak: {args.minutes} min, {args.clients} clients, 127.0.0.1",
        "",
        (
            f"{total} requests ({len(latencies)} valid answered 200), server alive at the end: {alive}; "
            f"500s: {sum(n for k, n in stats.items() if k.endswith(' 500'))}."
        ),
        "",
        "| request | answers |",
        "|---|---|",
        *[f"| {k} | {n} |" for k, n in sorted(stats.items())],
        "",
        f"Valid requests: p50 {p50:.0f} ms, p99 {p99:.0f} ms (JSON text-only and multipart with a JPEG, mixed).",
        (
            f"Server RSS: start {start_rss:.0f} MB, peak during the mixed load {mixed_peak:.0f} MB, peak overall "
            f"{peak:.0f} MB, end {end_rss:.0f} MB."
        ),
        (
            f"100 concurrent ≈10 MB image uploads: answers {dict(sorted(burst.items(), key=str))} (503: refused before "
            "the body was read; 422: the truncated PNG refused by the decoder)."
        ),
        (
            f"A text post's median latency: {idle_ms:.1f} ms with no stalled socket, {stalled_ms:.1f} ms with 500 stalled "
            "sockets open (each sent half its headers)."
        ),
        "",
    ]
    return lines


def kill_loop(args) -> list[str]:
    """``mner tag`` killed with SIGKILL at random moments until it finishes; each id exactly once?"""
    import tempfile

    rng = random.Random(1)
    folder = Path(tempfile.mkdtemp(prefix="mner-kill-"))
    posts = make_posts(40)
    for i, (_, jpeg) in enumerate(posts):
        (folder / f"p{i}.jpg").write_bytes(jpeg)
    lines, ids = [], []
    for i in range(args.kill_posts):
        text = posts[i % len(posts)][0]
        if i % 50 == 7:
            lines.append('{"text":"Obama \\udc80 Berlin"}')  # an error record
            ids.append(f"posts-{len(lines)}")
            continue
        record = {"id": f"id{i // 3}", "text": text}  # every id three times: duplicates must survive a resume
        if i % 3 == 0:
            record["image"] = f"p{i % len(posts)}.jpg"
        lines.append(json.dumps(record))
        ids.append(record["id"])
    (folder / "posts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = folder / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "mner",
        "tag",
        "--in",
        str(folder / "posts.jsonl"),
        "--out",
        str(out),
        "--batch-size",
        "8",
        "--quiet",
    ]
    kills, runs = 0, 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while True:
        runs += 1
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:  # killed 1-3 s after its start (start-up is ~0.5 s) until --kills kills, then left to finish
            proc.wait(timeout=rng.uniform(1, 3) if kills < args.kills else None)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            kills += 1
            continue
        if proc.returncode != 0:
            raise SystemExit(f"mner tag failed: {proc.stderr.read().decode()}")
        break
    written = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]
    exact = Counter(written) == Counter(ids)
    return [
        "### Kill -9 loop on `mner tag`",
        "",
        (
            f"{args.kill_posts} input lines ({len(set(ids))} distinct ids, each id on up to three lines; a third with "
            f"images; {sum(i.startswith('posts-') for i in ids)} hostile lines): {runs} runs, {kills} killed with SIGKILL "
            f"mid-run, the last completed. Output: {len(written)} records for {len(ids)} input lines; every line's id "
            f"appears exactly as often as in the input: **{exact}**."
        ),
        "",
    ]


def job_input(folder: Path, count: int, parquet: bool) -> tuple[Path, list[str]]:
    """``count`` posts (every id on three lines, a third with an image, some hostile) as JSONL or Parquet, and the
    id of each post as a record gives it."""
    posts = make_posts(40)
    for i, (_, jpeg) in enumerate(posts):
        (folder / f"p{i}.jpg").write_bytes(jpeg)
    rows, ids = [], []
    for i in range(count):
        row: dict = {"id": f"id{i // 3}", "text": posts[i % len(posts)][0], "image": None}
        if i % 3 == 0:
            row["image"] = f"p{i % len(posts)}.jpg"
        if i % 50 == 7:  # an error record: an empty post (Parquet), a lone surrogate (JSONL); no id
            row = {"id": None, "text": "", "image": None}
            ids.append(f"posts-{i + 1}")
        else:
            ids.append(row["id"])
        rows.append(row)
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "posts.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=500)
    else:
        path = folder / "posts.jsonl"
        lines = [
            '{"text":"Obama \\udc80 Berlin"}'
            if r["id"] is None
            else json.dumps({k: v for k, v in r.items() if v})
            for r in rows
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, ids


def output_ids(out: Path) -> list[str]:
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        parts = sorted(out.glob("part-*.parquet"))
        return [i for part in parts for i in pq.read_table(part, columns=["id"]).column("id").to_pylist()]
    return [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]


def _group_lives(group: int, seconds: float) -> bool:
    """Whether a process of the process group is still there ``seconds`` after it was killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True


def records_written(out: Path) -> int:
    """Whole records in an output: complete lines of a JSONL file, rows of a Parquet folder's parts."""
    if not out.exists():
        return 0
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(part).metadata.num_rows for part in out.glob("part-*.parquet"))
    return out.read_bytes().count(b"\n")


def job_kill_loop(args, engine: str, parquet: bool, seed: int) -> list[str]:
    """``mner tag`` (``engine``; Parquet in and out with ``parquet``) killed with SIGKILL at random moments,
    then left to finish: each id as often as in the input, in input order?"""
    import tempfile

    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix=f"mner-kill-{engine}-"))
    path, ids = job_input(folder, args.job_posts, parquet)
    out = folder / ("out.parquet" if parquet else "out.jsonl")
    command = [sys.executable, "-m", "mner", "tag", "--in", str(path), "--out", str(out), "--batch-size", "8"]
    command += ["--quiet", "--threads", "1"]
    if engine == "ray":
        command += ["--engine", "ray", "--workers", "2"]
    kills, runs, start = 0, 0, time.perf_counter()
    progress: list[int] = []  # whole records in the output after each kill
    survivors = 0  # killed process groups with a process still alive 10 s later
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while True:
        runs += 1
        before = records_written(out)
        log = folder / f"run{runs}.log"  # a file, not a pipe: Ray's log lines cannot fill a pipe and block it
        with open(log, "wb") as stderr:
            proc = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True
            )
        if kills < args.job_kills:  # mid-run: once this run has written records, a random 0-3 s later
            while proc.poll() is None and records_written(out) <= before:
                time.sleep(0.2)
            time.sleep(rng.uniform(0, 3))
        if proc.poll() is None and kills < args.job_kills:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
            proc.wait()
            kills += 1
            progress.append(records_written(out))
            survivors += _group_lives(proc.pid, seconds=10)
            continue
        proc.wait(timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"mner tag ({engine}) failed: {log.read_text(errors='replace')}")
        break
    written = output_ids(out)
    exact = written == ids
    left = sorted(p.name for p in out.parent.glob(".part-*")) + (
        sorted(p.name for p in out.glob(".part-*")) if out.is_dir() else []
    )
    form = "Parquet in, Parquet out" if parquet else "JSONL in, JSONL out"
    return [
        f"### Kill -9 loop on `mner tag --engine {engine}` ({form})",
        "",
        (
            f"{args.job_posts} input posts ({len(set(ids))} distinct ids, each on up to three lines; a third with "
            f"images; {sum(i.startswith('posts-') for i in ids)} hostile): {runs} runs, {kills} killed with SIGKILL "
            "(the whole process group) 0-3 s after they wrote their first records, the last completed; "
            f"{time.perf_counter() - start:.0f} s in all; whole records in the output after each kill: "
            f"{progress}; killed process groups with a process left: {survivors}. Output: {len(written)} records "
            f"for {len(ids)} posts; every id exactly as often as in the input, in input order: **{exact}**; "
            f"temporary parts left: {len(left)}."
        ),
        "",
    ]


class FakeChat:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 for the ``ask-llm --image`` kill loop: each answer, after a
    random 20-200 ms, names the post's longest word as a person (the schema's JSON when the request asks for it, an
    entity list as text otherwise); one request in 50 answers 503 (``Retry-After: 0``) to exercise the retries.
    It keeps, for each post's text, the SHA-256 of every image sent with it (None: sent without one)."""

    def __init__(self, seed: int):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.rng, self.lock = random.Random(seed), threading.Lock()
        self.requests, self.statuses = 0, Counter()
        self.images: dict[str, set] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                try:
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                except (OSError, ValueError):  # the client was killed while sending its request
                    with fake.lock:
                        fake.statuses["request cut"] += 1
                    return
                with fake.lock:
                    fake.requests += 1
                    delay, fail = fake.rng.uniform(0.02, 0.2), fake.rng.random() < 0.02
                time.sleep(delay)
                if self.path != "/v1/chat/completions" or fail:
                    self.answer(404 if self.path != "/v1/chat/completions" else 503, b"")
                    return
                text, sha = fake.read(body["messages"][-1]["content"])
                with fake.lock:
                    fake.images.setdefault(text, set()).add(sha)
                name = longest_word(text)
                if "response_format" in body:
                    content = json.dumps(
                        {
                            "entities": [{"name": name, "kind": "person"}],
                            "reasoning": f"The post names {name}.",
                        }
                    )
                else:
                    content = f"Named entities:1. {name} (person)Reasoning:The post names {name}."
                message = {"role": "assistant", "content": content}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self.answer(
                    200, json.dumps({"id": "x", "model": body["model"], "choices": [choice]}).encode()
                )

            def answer(self, status: int, raw: bytes):
                try:
                    self.send_response(status)
                    if status == 503:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the client was killed while its request was answered
                    status = "client gone"
                with fake.lock:
                    fake.statuses[status] += 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if isinstance(sys.exc_info()[1], OSError):  # a killed client's keep-alive connection reset
                    with fake.lock:
                        fake.statuses["connection reset"] += 1
                else:
                    super().handle_error(request, client_address)

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def read(content) -> tuple[str, str | None]:
        """The post's text (the user message's first line, after "Post: ") and its image's SHA-256, if sent."""
        import hashlib

        sha = None
        if isinstance(content, list):
            url = next((p["image_url"]["url"] for p in content if p["type"] == "image_url"), None)
            content = next(p["text"] for p in content if p["type"] == "text")
            if url is not None:
                sha = hashlib.sha256(base64.b64decode(url.partition(",")[2])).hexdigest()
        return content.split("\n")[0].removeprefix("Post: "), sha

    def __enter__(self):
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def longest_word(text: str) -> str:
    """The post's longest word of letters (the first of the longest): what the fake endpoint names."""
    import re

    return max(re.findall(r"[A-Za-z]+", text), key=len)


def ask_llm_kill_loop(args) -> list[str]:
    """``mner ask-llm --image`` against a fake endpoint on 127.0.0.1, killed with SIGKILL at random moments, then
    rerun until a run completes (exit 0): each post's id once in the output, each row a readable answer naming the
    post's word, each image sent as the file it is, the sidecar valid JSON, no temporary file left?"""
    import hashlib
    import tempfile

    from mner.channels.entities import read_entities

    rng = random.Random(5)
    folder = Path(tempfile.mkdtemp(prefix="mner-kill-ask-llm-"))
    photos = make_posts(20, seed=3)
    shas = {}
    (folder / "photos").mkdir()
    for i, (_, jpeg) in enumerate(photos):
        (folder / "photos" / f"p{i}.jpg").write_bytes(jpeg)
        shas[f"photos/p{i}.jpg"] = hashlib.sha256(jpeg).hexdigest()
    posts = []  # (id, text, image path or None)
    for i in range(args.llm_posts):
        text = f"{photos[i % len(photos)][0]} (post {i})"  # each text its own: the endpoint tells posts apart
        posts.append((f"q{i}", text, f"photos/p{i % len(photos)}.jpg" if i % 3 != 2 else None))
    lines = [json.dumps({"id": p, "text": t, **({"image": m} if m else {})}) for p, t, m in posts]
    (folder / "posts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = folder / "contexts.tsv"
    kills, runs, exits, start = 0, 0, Counter(), time.perf_counter()
    progress: list[int] = []  # rows in the output after each kill
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with FakeChat(seed=6) as fake:
        command = [
            sys.executable,
            "-m",
            "mner",
            "ask-llm",
            "--in",
            str(folder / "posts.jsonl"),
            "--out",
            str(out),
        ]
        command += [
            "--endpoint",
            fake.url,
            "--model",
            "fake-vision",
            "--image",
            "--concurrency",
            "4",
            "--quiet",
        ]
        while runs < args.llm_kills + 20:  # bounded: runs that never complete end the loop, said below
            runs += 1
            before = max(records_written(out), 1)  # the header is no row
            log = folder / f"run{runs}.log"
            with open(log, "wb") as stderr:
                proc = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True
                )
            if kills < args.llm_kills and kills % 2:  # every other kill: 0.3-1.5 s after the start (start-up)
                time.sleep(rng.uniform(0.3, 1.5))
            elif kills < args.llm_kills:  # the others: once this run has written a row, a random 0-2 s later
                while proc.poll() is None and records_written(out) <= before:
                    time.sleep(0.05)
                time.sleep(rng.uniform(0, 2))
            if proc.poll() is None and kills < args.llm_kills:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                progress.append(max(records_written(out) - 1, 0))  # rows, less the header
                continue
            proc.wait(timeout=600)
            exits[proc.returncode] += 1
            if proc.returncode == 0:
                break
    completed = exits[0] == 1
    tracebacks = sum("Traceback" in p.read_text(errors="replace") for p in folder.glob("run*.log"))
    rows = out.read_text(encoding="utf-8").splitlines()
    header_ok = rows[:1] == ["id\tcontext"]
    written = Counter(row.partition("\t")[0] for row in rows[1:])
    answers = dict(row.partition("\t")[::2] for row in rows[1:])
    once = written == Counter(p for p, _, _ in posts)
    readable = sum(
        [name for name, _ in read_entities(answers.get(p))] == [longest_word(t)] for p, t, _ in posts
    )
    images_right = sum(fake.images.get(t) == {shas[m] if m else None} for _, t, m in posts)
    try:
        meta = json.loads(out.with_name(out.name + ".meta.json").read_text(encoding="utf-8"))
        meta_ok = meta.get("written_by") == "mner ask-llm" and isinstance(meta.get("runs"), list)
        recorded, finished = len(meta["runs"]), sum(r.get("finished") is not None for r in meta["runs"])
    except (OSError, ValueError, KeyError) as err:
        meta_ok, recorded, finished = f"False ({err})", 0, 0
    left = sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith((".tmp", ".part"))
    )
    return [
        "### Kill -9 loop on `mner ask-llm --image` (a fake chat endpoint on 127.0.0.1)",
        "",
        (
            f"{args.llm_posts} posts (each id once; two in three with a photo, {len(photos)} distinct JPEGs of "
            "≈600×400 in the input's folder), `--concurrency 4`, against an endpoint that answers after 20-200 ms "
            "(one request in 50 answered 503 with Retry-After: 0): "
            f"{runs} runs, {kills} killed with SIGKILL (the process group; in turn 0-2 s after the run wrote its first "
            "row, and 0.3-1.5 s after its start), "
            f"run exits after that {dict(exits)}, a run completed: **{completed}**; "
            f"{time.perf_counter() - start:.0f} s in all; rows in the output after each kill: {progress}; "
            f"requests served {fake.requests} ({dict(sorted(fake.statuses.items(), key=str))}); tracebacks in the runs' "
            f"logs: {tracebacks}."
        ),
        (
            f"Output: the header {'right' if header_ok else 'WRONG'}, {sum(written.values())} rows for "
            f"{len(posts)} posts; every id exactly once: **{once}**; rows that read back as the entity list the "
            f"endpoint gave for that post: **{readable} of {len(posts)}**; posts whose every request carried "
            f"exactly their photo's bytes (or no image): **{images_right} of {len(posts)}**; the sidecar "
            f"`contexts.tsv.meta.json` valid JSON of mner's: **{meta_ok}** ({recorded} runs recorded, "
            f"{finished} of them finished); temporary files left: {len(left)}{' ' + str(left) if left else ''}."
        ),
        "",
    ]


BAD_IMAGES = ("bytes", "text file", "missing file", "truncated JPEG", "wrong type")


def spacy_leg(args) -> list[str]:
    """The spaCy component over many docs (a third with a photo's path, one in 20 with a bad image), through
    ``nlp.pipe`` at several batch sizes with an error handler that collects failures: each doc tagged (entities
    inside its text) or handed to the handler, exactly once, none lost, in input order; the same entities and
    errors as tagging each doc alone?"""
    import tempfile

    import spacy

    folder = Path(tempfile.mkdtemp(prefix="mner-spacy-"))
    photos = make_posts(20, seed=7)
    for i, (_, jpeg) in enumerate(photos):
        (folder / f"p{i}.jpg").write_bytes(jpeg)
    (folder / "notes.jpg").write_text("not a photo at all\n", encoding="utf-8")
    (folder / "cut.jpg").write_bytes(photos[0][1][:2000])
    bad_values = {
        "bytes": b"not an image",
        "text file": str(folder / "notes.jpg"),
        "missing file": str(folder / "gone.jpg"),
        "truncated JPEG": str(folder / "cut.jpg"),
        "wrong type": 12345,
    }
    texts = []  # (text, image)
    for i in range(args.spacy_docs):
        text, image = photos[i % len(photos)][0], None
        if i % 3 == 0:
            image = str(folder / f"p{i % len(photos)}.jpg")
        if i % 20 == 11:
            image = bad_values[BAD_IMAGES[(i // 20) % len(BAD_IMAGES)]]
        if i % 97 == 50:
            text = "   "  # only spaces: tagged, no entity
        texts.append((f"{text} {i}" if text.strip() else text, image))

    nlp = spacy.blank("en")
    nlp.add_pipe("mner", config={"threads": 1})
    failures: list[tuple[int, str]] = []
    nlp.set_error_handler(
        lambda name, component, docs, err: failures.extend((d.user_data["n"], str(err)) for d in docs)
    )

    def make(i: int):
        doc = nlp.make_doc(texts[i][0])
        doc._.image, doc.user_data["n"] = texts[i][1], i
        return doc

    def result(doc) -> tuple:
        return "ents", tuple((e.start_char, e.end_char, e.label_, e._.score) for e in doc.ents)

    def spans(value) -> tuple:  # what must be identical: the error, or each entity's offsets and label
        return value if value[0] != "ents" else ("ents", [entity[:3] for entity in value[1]])

    start = time.perf_counter()
    alone: dict[int, tuple] = {}
    for i in range(len(texts)):
        failures.clear()
        doc = nlp(make(i))
        alone[i] = ("error", failures[0][1]) if len(failures) == 1 else result(doc)
        if len(failures) > 1:
            alone[i] = ("handler called", len(failures))
    failed_alone = sum(value[0] != "ents" for value in alone.values())
    rows, all_ok = [], True
    for batch_size in args.spacy_batch_sizes:
        failures.clear()
        tagged = list(nlp.pipe((make(i) for i in range(len(texts))), batch_size=batch_size))
        order = [d.user_data["n"] for d in tagged]
        seen = Counter(order) + Counter(n for n, _ in failures)
        once = seen == Counter(range(len(texts)))
        in_order = order == sorted(order)
        inside = all(0 <= e.start_char < e.end_char <= len(d.text) for d in tagged for e in d.ents)
        got = {d.user_data["n"]: result(d) for d in tagged} | {n: ("error", m) for n, m in failures}
        same = sum(i in got and spans(got[i]) == spans(alone[i]) for i in range(len(texts)))
        diffs = [
            abs(a[3] - b[3])
            for i in range(len(texts))
            if alone[i][0] == "ents" and got.get(i, ("",))[0] == "ents"
            for a, b in zip(got[i][1], alone[i][1], strict=False)
        ]
        ok = once and in_order and inside and same == len(texts)
        all_ok &= ok
        rows.append(
            f"| {batch_size} | {len(tagged)} | {len(failures)} | {sum(n > 1 for n in seen.values())} | "
            f"{len(texts) - len(seen)} | {in_order} | {inside} | {same} of {len(texts)} | "
            f"{max(diffs, default=0.0):.1e} | **{ok}** |"
        )
    kinds = Counter(BAD_IMAGES[(i // 20) % len(BAD_IMAGES)] for i in range(len(texts)) if i % 20 == 11)
    entities = sum(len(v[1]) for v in alone.values() if v[0] == "ents")
    return [
        '### The spaCy component: `nlp.pipe` with an error handler (`spacy.blank("en")`, `nlp.add_pipe("mner")`)',
        "",
        (
            f"{len(texts)} docs (a third with `doc._.image` a photo's path; {sum(kinds.values())} with a bad image: "
            f"{dict(kinds)}; {sum(1 for t, _ in texts if not t.strip())} of only spaces), tagged one at a time "
            f"first ({entities} entities; {failed_alone} docs handed to the error handler), then through "
            f"`nlp.pipe` at each batch size; {time.perf_counter() - start:.0f} s in all. Same: the same "
            "entities (offsets and labels) or the same error as alone."
        ),
        "",
        (
            "| batch_size | tagged | to the handler | docs seen twice | docs lost | in input order | entities "
            "inside the text | same as alone | largest score difference | all hold |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Every batch size: **{all_ok}**.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kill-posts", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs before the last run may finish")
    parser.add_argument("--job-posts", type=int, default=5000, help="posts of the Parquet and Ray kill loops")
    parser.add_argument("--job-kills", type=int, default=5, help="SIGKILLs in each Parquet and Ray kill loop")
    parser.add_argument("--llm-posts", type=int, default=800, help="posts of the ask-llm --image kill loop")
    parser.add_argument("--llm-kills", type=int, default=8, help="SIGKILLs in the ask-llm --image kill loop")
    parser.add_argument("--spacy-docs", type=int, default=1000, help="docs of the spaCy component leg")
    parser.add_argument("--spacy-batch-sizes", type=int, nargs="+", default=[1, 7, 32, 128])
    legs = ("serve", "tag", "parquet", "ray", "ray-parquet", "ask-llm", "spacy")
    parser.add_argument("--legs", nargs="+", choices=legs, default=list(legs), help="the legs to run (all)")
    report_option(parser, "soak.md")
    args = parser.parse_args()
    args.report = report_path(args, "soak.md")
    lines = [
        "## Soak (issues #16, #25, #32)",
        "",
        (
            f"Command: `python benchmarks/soak.py --minutes {args.minutes:g} --clients "
            f"{args.clients} --kill-posts {args.kill_posts} --kills {args.kills} --job-posts {args.job_posts} "
            f"--job-kills {args.job_kills} --llm-posts {args.llm_posts} --llm-kills {args.llm_kills} --spacy-docs "
            f"{args.spacy_docs} --spacy-batch-sizes {' '.join(map(str, args.spacy_batch_sizes))}"
            f"{'' if len(args.legs) == len(legs) else ' --legs ' + ' '.join(args.legs)}`; "
            f"{os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(not set)')}."
        ),
        "",
    ]
    run = {
        "serve": lambda: soak(args),
        "tag": lambda: kill_loop(args),
        "parquet": lambda: job_kill_loop(args, "local", parquet=True, seed=2),
        "ray": lambda: job_kill_loop(args, "ray", parquet=False, seed=3),
        "ray-parquet": lambda: job_kill_loop(args, "ray", parquet=True, seed=4),
        "ask-llm": lambda: ask_llm_kill_loop(args),
        "spacy": lambda: spacy_leg(args),
    }
    for leg in legs:
        if leg in args.legs:
            lines += run[leg]()
    publish(lines, args.report)


if __name__ == "__main__":
    main()
