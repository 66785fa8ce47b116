"""The frozen text encoders' cost a post (``mner.inputs.frozen``): fp32 and int8 graphs of each encoder, side by
side on the same posts, and how close int8's features are to fp32's.

Usage: python benchmarks/bench_features.py [--posts 500] [--threads 2] [--encoders mpnet minilm]
       [--report FILE | --update]

Posts: the first N of Twitter-2015 test, as the model reads them (``@``/``#`` joined), sorted by length, as mner
runs them: 16 posts a run through the fp32 graph, one post a run through the int8 one; no feature cache. Each graph is loaded
and warmed on 16 posts first; the ms a post is wall time over the N posts. "cos" is the mean cosine between a
token's int8 and fp32 vectors (the mean of the last four layers, what ``feature_mix = "mean"`` reads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from runs import publish, report_option, report_path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "twitter2015"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoders", nargs="+", default=["mpnet", "minilm"])
    report_option(parser, "features.md")
    args = parser.parse_args()
    args.report = report_path(args, "features.md")
    if not (DATA / "test.txt").exists():
        sys.exit(f"Twitter-2015 not found under {DATA}")
    from mner.data import read_conll
    from mner.inputs.frozen import FROZEN_ENCODERS, FrozenFeatures
    from mner.inputs.markers import join

    posts = [join(p.tokens)[0] for p in read_conll(DATA / "test.txt")[: args.posts]]
    lines = [
        f"| encoder | graph | ms a post ({args.threads} threads) | posts/s | cos(int8, fp32) |",
        "|---|---|---|---|---|",
    ]
    for name in args.encoders:
        out = {}
        for graph in ("fp32", "int8"):
            source = FrozenFeatures(name, threads=args.threads, quantized=graph == "int8")
            source(posts[:16])  # load and warm
            start = time.perf_counter()
            out[graph] = source(posts)
            seconds = time.perf_counter() - start
            out[f"{graph}-ms"] = 1000 * seconds / len(posts)
        cosines = []
        for a, b in zip(out["fp32"], out["int8"], strict=True):
            a, b = a.astype(np.float32).mean(1), b.astype(np.float32).mean(1)
            cosines.extend((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1))
        for graph in ("fp32", "int8"):
            ms = out[f"{graph}-ms"]
            cos = f"{np.mean(cosines):.3f}" if graph == "int8" else "1"
            lines.append(f"| {FROZEN_ENCODERS[name].title} | {graph} | {ms:.1f} | {1000 / ms:.0f} | {cos} |")
    command = f"python benchmarks/bench_features.py --posts {args.posts} --threads {args.threads}"
    command += f" --encoders {' '.join(args.encoders)}"
    lines += ["", f"{len(posts)} posts of Twitter-2015 test; {os.cpu_count()} cores. Command: `{command}`"]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
