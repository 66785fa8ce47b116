"""A frozen text encoder's features of both Twitter sets, computed once into the feature cache and timed per split
(what training and ``mner evaluate`` then read; ``mner.inputs.frozen``).

Usage: python benchmarks/extract_features.py [--encoder mpnet] [--graph int8|fp32] [--threads 2]
       [--report FILE | --update]

Each split's posts as a model reads them (``@``/``#`` joined), through the graph named (int8: one post a run, as
training and tagging run it; fp32: 16 a run). Posts already in the cache are not computed again: the "computed"
column says how many were, and the seconds are for those.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from runs import publish, report_option, report_path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="mpnet")
    parser.add_argument("--graph", default="int8", choices=["int8", "fp32"])
    parser.add_argument("--threads", type=int, default=2)
    report_option(parser, "extract_features.md")
    args = parser.parse_args()
    args.report = report_path(args, "extract_features.md")
    if not (DATA / "twitter2015" / "train.txt").exists():
        sys.exit(f"Twitter-2015 not found under {DATA}")
    from mner.data import read_conll
    from mner.inputs.frozen import FrozenFeatures
    from mner.inputs.markers import join

    source = FrozenFeatures(args.encoder, args.threads, args.graph == "int8", cached=True)
    lines = ["| split | posts | computed | seconds | ms a computed post |", "|---|---|---|---|---|"]
    total_posts = total_computed = total_seconds = 0
    for name in ("twitter2015", "twitter2017"):
        for split in ("train", "valid", "test"):
            sequences = [join(p.tokens)[0] for p in read_conll(DATA / name / f"{split}.txt")]
            before, start = source.computed, time.perf_counter()
            source(sequences, progress=True)
            seconds, computed = time.perf_counter() - start, source.computed - before
            per_post = f"{1000 * seconds / computed:.1f}" if computed else "–"
            lines.append(
                f"| {name} {split} | {len(sequences):,} | {computed:,} | {seconds:.1f} | {per_post} |"
            )
            total_posts, total_computed, total_seconds = (
                total_posts + len(sequences),
                total_computed + computed,
                total_seconds + seconds,
            )
    lines.append(f"| all | {total_posts:,} | {total_computed:,} | {total_seconds:.1f} | |")
    command = f"python benchmarks/extract_features.py --encoder {args.encoder} --graph {args.graph}"
    lines += [
        "",
        f"{os.cpu_count()} cores, {args.threads} threads. Command: `{command} --threads {args.threads}`",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
