"""Ray's overhead and scaling: ``mner tag --engine ray`` beside the local ``mner tag`` on the same posts.

Usage: python benchmarks/bench_ray.py [--posts 2000] [--report FILE | --update]

The posts are Twitter-2015 test texts each with its own 1200×675 JPEG (benchmarks/bench_tag.py makes them).
Runs, one after another on this machine: the local engine with ``--threads 2``; Ray with ``--workers 1`` and
``--workers 2`` (one thread each, a local Ray started by the command). Posts/s counts the whole command
(start-up and Ray's own start included), the tagging as the command's summary says (the local engine's clock
starts after its model loads, Ray's before Ray starts), and the steady rate that matters for a large job: the
output file watched from outside while the command runs, posts written between 10 % and 90 % of the input
over the time between — the same measure for both engines, start-up excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench_tag import make_posts
from runs import publish, report_option, report_path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def tag(posts: Path, out: Path, extra: list[str], total: int) -> tuple[float, float, float]:
    """(posts/s of the whole command, posts/s of its tagging as its summary line says, steady posts/s: the
    records written between 10 % and 90 % of ``total`` over the seconds between, watching the output)."""
    if out.exists():
        out.unlink()
    command = [
        str(Path(sys.executable).with_name("mner")),
        "tag",
        "--in",
        str(posts),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks: dict[float, tuple[float, int]] = {}  # share of the input -> (first time seen, lines then)
    while process.poll() is None:
        time.sleep(0.05)
        lines, now = count_lines(out), time.perf_counter()
        for share in (0.1, 0.9):
            if share not in marks and lines >= share * total:
                marks[share] = (now, lines)
    _, stderr = process.communicate()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"mner tag failed ({process.returncode}):\n{stderr}")
    count = count_lines(out)
    loop = float(re.findall(r"([\d.]+) posts/s", stderr)[-1])
    print(stderr.strip().splitlines()[-1], flush=True)
    if 0.1 in marks and 0.9 in marks and marks[0.9][0] > marks[0.1][0]:
        steady = (marks[0.9][1] - marks[0.1][1]) / (marks[0.9][0] - marks[0.1][0])
    else:  # the output grew in one step: no steady rate to measure
        steady = float("nan")
    return count / wall, loop, steady


def driver_rate(records: Path, posts: Path, out: Path, chunk: int = 128) -> float:
    """Records/s the driver's own path can take: parse a chunk's records as they come from the workers (JSON
    strings) and append them to a JSONL output, as ``mner.serving.raytag`` does — without Ray or tagging, so it bounds
    what one driver can write however many workers feed it."""
    from mner.serving.outputs import open_output

    lines = records.read_text(encoding="utf-8").splitlines()
    if out.exists():
        out.unlink()
    output = open_output(out, posts)
    start = time.perf_counter()
    try:
        for i in range(0, len(lines), chunk):
            output.write([json.loads(line) for line in lines[i : i + chunk]])
    finally:
        output.close()
    return len(lines) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "twitter2015")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_ray")
    report_option(parser, "ray.md")
    args = parser.parse_args()
    args.report = report_path(args, "ray.md")
    posts = make_posts(args.work / "posts", args.posts, args.data)
    n = args.posts
    local = tag(posts, args.work / "local.jsonl", ["--threads", "2"], n)
    one = tag(posts, args.work / "ray1.jsonl", ["--engine", "ray", "--workers", "1", "--threads", "1"], n)
    two = tag(posts, args.work / "ray2.jsonl", ["--engine", "ray", "--workers", "2", "--threads", "1"], n)
    driver = driver_rate(args.work / "ray2.jsonl", posts, args.work / "driver.jsonl")
    overhead = 1 - two[2] / local[2]
    per_worker = two[2] / 2
    lines = [
        "## `mner tag --engine ray`: overhead and scaling",
        "",
        (
            f"{args.posts} posts (Twitter-2015 test texts, each with its own 1200×675 JPEG), shipped default model, no KG; "
            f"{os.cpu_count()} CPU cores; one run each, one after another."
        ),
        "",
        "| engine | posts/s (whole command) | posts/s (tagging, the command's summary) | posts/s steady (10 → 90 % of the output) |",
        "|---|---|---|---|",
        f"| local, `--threads 2` | {local[0]:.1f} | {local[1]:.1f} | {local[2]:.1f} |",
        f"| Ray, `--workers 1` (1 thread) | {one[0]:.1f} | {one[1]:.1f} | {one[2]:.1f} |",
        f"| Ray, `--workers 2` (1 thread each) | {two[0]:.1f} | {two[1]:.1f} | {two[2]:.1f} |",
        "",
        (
            f"Ray's overhead against the local engine on the same 2 cores, steady rates: {100 * overhead:.0f} %"
            f" (whole commands, start-ups included: {100 * (1 - two[0] / local[0]):.0f} %); "
            f"scaling 1 → 2 workers (steady): {two[2] / one[2]:.2f}×."
        ),
        (
            f"A 16-worker cluster (one core each, the images where the workers read them) should tag about "
            f"16 × {per_worker:.1f} = {16 * per_worker:.0f} posts/s: the rate of one of this run's two workers "
            "(Ray's overhead is inside it) times 16, as long as the driver, which writes every record, keeps up: "
            f"its own path (parse the workers' JSON records, append them to the output) takes {driver:,.0f} "
            "records/s here, measured alone."
        ),
        "",
        f"Command: `python benchmarks/bench_ray.py --posts {args.posts}`",
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
