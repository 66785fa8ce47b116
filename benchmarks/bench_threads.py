"""Threads on a shared CPU: ``mner evaluate --model default`` on Twitter-2015 test, on an idle machine and with
two busy-loop processes running, for each runtime and thread count.

Usage: python benchmarks/bench_threads.py [--threads 1 2] [--runs 3] [--report FILE | --update]

A busy loop is ``python -c "while True: pass"`` (one core each: on this 2-core machine, two of them take the
whole CPU). Each cell is the median wall time of ``--runs`` runs of the whole command (start-up included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from runs import publish, report_option, report_path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "twitter2015" / "test.txt"


def run(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    report_option(parser, "threads.md")
    args = parser.parse_args()
    args.report = report_path(args, "threads.md")
    if not args.data.exists():
        sys.exit(f"Twitter-2015 test not found at {args.data}")
    mner = str(Path(sys.executable).with_name("mner"))
    base = [mner, "evaluate", "--model", "default", "--data", str(args.data)]
    subprocess.run(base, check=True, capture_output=True)  # warm the disk cache
    rows = []
    for runtime in ("onnx", "torch"):
        for threads in args.threads:
            command = [*base, "--runtime", runtime, "--threads", str(threads)]
            idle = run(command, args.runs)
            loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
            try:
                time.sleep(1)
                busy = run(command, args.runs)
            finally:
                for loop in loops:
                    loop.kill()
                    loop.wait()
            rows.append(f"| {runtime} | {threads} | {idle:.1f} | {busy:.1f} | {busy / idle:.1f}× |")
            print(rows[-1], flush=True)
    lines = [
        "## Threads on a shared CPU: `mner evaluate --model default` on Twitter-2015 test",
        "",
        (
            f"Median wall seconds of {args.runs} runs of the whole command; busy = with two `while True: pass` "
            f"processes running; {os.cpu_count()} CPU cores."
        ),
        "",
        "| runtime | --threads | idle s | busy s | busy / idle |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `python benchmarks/bench_threads.py --threads {' '.join(map(str, args.threads))} --runs {args.runs}`",
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
