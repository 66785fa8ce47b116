"""Soak test of ``mner serve`` and a kill -9 loop on ``mner tag`` (issue #16), loopback only, bounded in time.

Usage: python benchmarks/soak.py [--minutes 3] [--clients 8] [--kill-posts 3000] [--kills 20] [--job-posts 3000]
[--job-kills 5] [--report FILE | --update]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kill-posts", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs before the last run may finish")
    parser.add_argument("--job-posts", type=int, default=5000, help="posts of the Parquet and Ray kill loops")
    parser.add_argument("--job-kills", type=int, default=5, help="SIGKILLs in each Parquet and Ray kill loop")
    report_option(parser, "soak.md")
    args = parser.parse_args()
    args.report = report_path(args, "soak.md")
    lines = [
        "## Soak (issue #16)",
        "",
        (
            f"Command: `python benchmarks/soak.py --minutes {args.minutes:g} --clients "
            f"{args.clients} --kill-posts {args.kill_posts} --kills {args.kills} --job-posts {args.job_posts} "
            f"--job-kills {args.job_kills}`; {os.cpu_count()} CPU cores."
        ),
        "",
    ]
    lines += soak(args)
    lines += kill_loop(args)
    lines += job_kill_loop(args, "local", parquet=True, seed=2)
    lines += job_kill_loop(args, "ray", parquet=False, seed=3)
    lines += job_kill_loop(args, "ray", parquet=True, seed=4)
    publish(lines, args.report)


if __name__ == "__main__":
    main()
