"""Latency and throughput of ``mner serve`` over HTTP on 127.0.0.1; writes runs/serve.md (benchmarks/serve.md with --update).

Usage: python benchmarks/bench_serve.py [--requests 2000] [--concurrency 8] [--model DIR] [--kg FILE]
                                        [--out benchmarks/serve.md]

Starts ``mner serve`` as a subprocess on a free port, waits for /health, sends a few warm-up posts (the
image encoder loads on the first image), then ``--requests`` posts from ``--concurrency`` clients at once
(an httpx async client in this process). Each post is a tweet-sized text with a ~600×400 JPEG (quality 85)
cut from scikit-image's bundled photos, sent as multipart/form-data, as the web demo sends it. Latency is
from sending a request to having its whole answer; a request that is not a 200 or fails is an error.
The client shares the machine's cores with the server: on a small machine its share is part of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
from photos import tweet_photos

PEOPLE = ("Barack Obama", "Angela Merkel", "Lionel Messi", "Taylor Swift", "Kobe Bryant", "Serena Williams")
PLACES = ("Berlin", "Paris", "New York", "Tokyo", "London", "Los Angeles", "Cape Town")
GROUPS = ("Google", "the United Nations", "NASA", "Real Madrid", "CNN", "Apple")
TEMPLATES = (
    "RT @{handle} : {person} meets the team from {group} in {place} today #news http://t.co/x1y2z3",
    "{person} spotted at the {group} event in {place} last night , what a crowd !",
    "Great photo of {person} arriving in {place} for the {group} summit via @{handle}",
    "Can't believe {group} just signed {person} . Fans in {place} are going crazy #breaking",
)


def make_posts(count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` distinct (text, ~600×400 JPEG) posts: random crops, flips and colour shifts of the photos."""
    rng = np.random.default_rng(seed + 1)
    posts = []
    for i, image in enumerate(tweet_photos(count, (600, 400), seed)):
        jpeg = io.BytesIO()
        image.save(jpeg, "JPEG", quality=85)
        text = TEMPLATES[i % len(TEMPLATES)].format(
            person=PEOPLE[rng.integers(len(PEOPLE))],
            place=PLACES[rng.integers(len(PLACES))],
            group=GROUPS[rng.integers(len(GROUPS))],
            handle=f"user{rng.integers(1000)}",
        )
        posts.append((text, jpeg.getvalue()))
    return posts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, model: Path | None, kg: Path | None, threads: int = 1) -> subprocess.Popen:
    """``mner serve`` on 127.0.0.1:port, from this Python's environment."""
    mner = Path(sys.executable).with_name("mner")
    command = [str(mner)] if mner.exists() else [sys.executable, "-c", "from mner.cli import main; main()"]
    command += [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--threads",
        str(threads),
    ]
    if model is not None:
        command += ["--model", str(model)]
    if kg is not None:
        command += ["--kg", str(kg)]
    return subprocess.Popen(command)


def wait_for_health(base: str, server: subprocess.Popen, timeout: float = 180) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise SystemExit(f"mner serve exited with status {server.returncode} before answering /health")
        if time.monotonic() > deadline:
            raise SystemExit(f"mner serve did not answer /health within {timeout:.0f} s")
        try:
            return httpx.get(base + "/health", timeout=2).json()
        except httpx.TransportError:
            time.sleep(0.2)


async def run_load(base: str, posts: list[tuple[str, bytes]], requests: int, concurrency: int):
    """Latencies (s) of the successful requests, the error messages, and the wall time of the run."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    next_index = iter(range(requests))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in next_index:  # the clients share one iterator: each request is sent once
            text, jpeg = posts[i % len(posts)]
            started = time.perf_counter()
            try:
                response = await client.post(
                    "/v1/tag", data={"text": text}, files={"image": (f"{i}.jpg", jpeg, "image/jpeg")}
                )
                if response.status_code == 200 and response.json().get("tokens"):
                    latencies.append(time.perf_counter() - started)
                else:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as err:
                errors.append(f"{type(err).__name__}: {err}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, errors, wall


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(
    args, health: dict, posts, latencies: list[float], errors: list[str], wall: float, load: float
) -> str:
    ms = np.array(latencies) * 1000
    p50, p95, p99 = (np.percentile(ms, q) for q in (50, 95, 99)) if len(ms) else (float("nan"),) * 3
    command = "python benchmarks/bench_serve.py " + " ".join(
        f"--{k.replace('_', '-')} {shlex.quote(str(v))}"
        for k, v in vars(args).items()
        if v is not None and v is not False and not (k == "out" and v.name == "serve.md")
    )
    import onnxruntime

    threads = f"server run with --threads {args.threads}, the runtime {health.get('runtime', 'auto')}"
    lines = [
        "# HTTP service (`mner serve`): latency and throughput",
        "",
        (
            "Script: `benchmarks/bench_serve.py` (its docstring says how it measures). Each request: multipart "
            f"POST /v1/tag with a tweet-sized text (mean {np.mean([len(t) for t, _ in posts]):.0f} characters) "
            f"and a 600×400 JPEG (mean {np.mean([len(j) for _, j in posts]) / 1024:.0f} KiB), "
            f"{len(posts)} distinct posts in turn; client and server on 127.0.0.1 of the same machine."
        ),
        "",
        f"Command: `{command}`",
        "",
        (
            f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}; "
            f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__} "
            f"({threads}); load average {load:.2f} at the start (other jobs on the machine count)."
        ),
        "",
        (
            f"Server: model {health.get('model')} (channels: {', '.join(health.get('channels', []))}), "
            f"image backbone {health.get('image_backbone')}, KG {health.get('kg') or 'none'}."
        ),
        "",
        "| requests | concurrency | errors | wall s | throughput req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|",
        (
            f"| {args.requests} | {args.concurrency} | {len(errors)} | {wall:.1f} | {len(latencies) / wall:.1f} "
            f"| {p50:.0f} | {p95:.0f} | {p99:.0f} | {ms.max() if len(ms) else float('nan'):.0f} |"
        ),
    ]
    if errors:
        lines += ["", "First errors:", ""] + [f"- `{e}`" for e in errors[:5]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="posts to send (after the warm-up)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--kg", type=Path, default=None, help="KG file for the server")
    parser.add_argument("--threads", type=int, default=1, help="the server's --threads")
    parser.add_argument(
        "--out", type=Path, default=None, help="Markdown file to write (default runs/serve.md)"
    )
    parser.add_argument("--update", action="store_true", help="rewrite the tracked benchmarks/serve.md")
    args = parser.parse_args()
    if args.out is None:
        args.out = HERE / "serve.md" if args.update else HERE.parent / "runs" / "serve.md"
        args.out.parent.mkdir(exist_ok=True)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")

    posts = make_posts(min(args.requests, 64))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    load = os.getloadavg()[0]
    server = start_server(port, args.model, args.kg, args.threads)
    try:
        health = wait_for_health(base, server)
        _, warm_errors, _ = asyncio.run(run_load(base, posts, min(8, args.requests), 1))
        if warm_errors:
            raise SystemExit(f"warm-up failed: {warm_errors[0]}")
        latencies, errors, wall = asyncio.run(run_load(base, posts, args.requests, args.concurrency))
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = report(args, health, posts, latencies, errors, wall, load)
    print(text)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
