"""Start-up: wall time of ``mner predict --text ...`` for the shipped default model, as a user runs it.

Usage: python benchmarks/bench_startup.py [--runs 5] [--report FILE | --update]

Each run is a fresh process (``.venv/bin/mner predict --text "Barack Obama visits Paris"``); one untimed run
first warms the disk cache (and makes the word-vector index in mner's cache once). Reports the median and
range of ``--runs`` runs on ONNX Runtime (the default runtime for an exported model) and on PyTorch
(``--runtime torch``, the path every prediction took before the ONNX export), side by side.
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

TEXT = "Barack Obama visits Paris"


def timed(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, check=True, capture_output=True)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    report_option(parser, "startup.md")
    args = parser.parse_args()
    args.report = report_path(args, "startup.md")
    mner = str(Path(sys.executable).with_name("mner"))
    rows = []
    for runtime in ("onnx", "torch"):
        times = timed([mner, "predict", "--text", TEXT, "--runtime", runtime], args.runs)
        rows.append(f"| {runtime} | {statistics.median(times):.2f} | {min(times):.2f}–{max(times):.2f} |")
        print(rows[-1], flush=True)
    lines = [
        "## Start-up: `mner predict --text ...`, default model",
        "",
        f"{args.runs} runs each (after one warm-up run), wall seconds of the whole command; {os.cpu_count()} CPU cores.",
        "",
        "| runtime | median s | range s |",
        "|---|---|---|",
        *rows,
        "",
        f"Command: `python benchmarks/bench_startup.py --runs {args.runs}`",
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
