"""Ray's overhead and scaling: ``mner tag --engine ray`` beside the local ``mner tag`` on the same posts.

Usage: python benchmarks/bench_ray.py [--posts 2000] [--report benchmarks/ray.md]

The posts are Twitter-2015 test texts each with its own 1200×675 JPEG (benchmarks/bench_tag.py makes them).
Runs, one after another on this machine: the local engine with ``--threads 2``; Ray with ``--workers 1`` and
``--workers 2`` (one thread each, a local Ray started by the command). Posts/s counts the whole command
(start-up and Ray's own start included) and, from the command's summary, the tagging itself.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench_tag import make_posts
from runs import publish

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def tag(posts: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """(posts/s of the whole command, posts/s of its tagging as its summary line says)."""
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
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    count = sum(1 for _ in out.open(encoding="utf-8"))
    loop = float(re.findall(r"([\d.]+) posts/s", done.stderr)[-1])
    print(done.stderr.strip().splitlines()[-1], flush=True)
    return count / wall, loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "twitter2015")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_ray")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "ray.md")
    args = parser.parse_args()
    posts = make_posts(args.work / "posts", args.posts, args.data)
    local = tag(posts, args.work / "local.jsonl", ["--threads", "2"])
    one = tag(posts, args.work / "ray1.jsonl", ["--engine", "ray", "--workers", "1", "--threads", "1"])
    two = tag(posts, args.work / "ray2.jsonl", ["--engine", "ray", "--workers", "2", "--threads", "1"])
    overhead = 1 - two[1] / local[1]
    per_worker = two[1] / 2
    lines = [
        "## `mner tag --engine ray`: overhead and scaling",
        "",
        (
            f"{args.posts} posts (Twitter-2015 test texts, each with its own 1200×675 JPEG), shipped default model, no KG; "
            f"{os.cpu_count()} CPU cores; one run each, one after another."
        ),
        "",
        "| engine | posts/s (whole command) | posts/s (tagging) |",
        "|---|---|---|",
        f"| local, `--threads 2` | {local[0]:.1f} | {local[1]:.1f} |",
        f"| Ray, `--workers 1` (1 thread) | {one[0]:.1f} | {one[1]:.1f} |",
        f"| Ray, `--workers 2` (1 thread each) | {two[0]:.1f} | {two[1]:.1f} |",
        "",
        (
            f"Ray's overhead against the local engine on the same 2 cores (tagging rates): {100 * overhead:.0f} %; "
            f"scaling 1 → 2 workers: {two[1] / one[1]:.2f}×."
        ),
        (
            f"A 16-worker cluster (one core each, the images where the workers read them) should tag about "
            f"16 × {per_worker:.1f} = {16 * per_worker:.0f} posts/s: the rate of one of this run's two workers "
            "(Ray's overhead is inside it) times 16, as long as the driver, which writes every record, keeps up."
        ),
        "",
        f"Command: `python benchmarks/bench_ray.py --posts {args.posts}`",
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
