"""A frozen text encoder's features of both Twitter sets, computed once into the feature cache and timed per split
(what training and ``mner evaluate`` then read; ``mner.inputs.frozen``).

Usage: python benchmarks/extract_features.py [--encoder mpnet] [--graph int8|fp32] [--threads 2]
       [--with-context] [--report FILE | --update]

Each split's posts as a model reads them (``@``/``#`` joined), through the graph named (int8: one post a run, as
training and tagging run it; fp32: 16 a run). Posts already in the cache are not computed again: the "computed"
column says how many were, and the seconds are for those. ``--with-context``: each post run with the set's LLM
knowledge (``llm_knowledge.tsv``) as the encoder's second segment, as a ``feature_context`` model reads it (PGIM's
way; a post without one: its text features).
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
    parser.add_argument(
        "--with-context",
        action="store_true",
        help="the LLM knowledge as the second segment (feature_context)",
    )
    report_option(parser, "extract_features.md")
    args = parser.parse_args()
    args.report = report_path(args, "extract_features.md")
    if not (DATA / "twitter2015" / "train.txt").exists():
        sys.exit(f"Twitter-2015 not found under {DATA}")
    from mner.data import read_conll, read_keyed_tsv
    from mner.inputs.frozen import FrozenFeatures, second_segment
    from mner.inputs.markers import join

    source = FrozenFeatures(args.encoder, args.threads, args.graph == "int8", cached=True)
    lines = ["| split | posts | computed | seconds | ms a computed post |", "|---|---|---|---|---|"]
    total_posts = total_computed = total_seconds = 0
    for name in ("twitter2015", "twitter2017"):
        for split in ("train", "valid", "test"):
            posts = read_conll(DATA / name / f"{split}.txt")
            sequences = [join(p.tokens)[0] for p in posts]
            seconds = None
            if args.with_context:
                contexts, _ = read_keyed_tsv(DATA / name / "llm_knowledge.tsv", ("image_id",), "knowledge")
                seconds = [second_segment(contexts.get(p.image)) for p in posts]
            before, start = source.computed, time.perf_counter()
            source(sequences, seconds, progress=True)
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
    command = f"python benchmarks/extract_features.py --encoder {args.encoder} --graph {args.graph}" + (
        " --with-context" if args.with_context else ""
    )
    lines += [
        "",
        f"{os.cpu_count()} cores, {args.threads} threads. Command: `{command} --threads {args.threads}`",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
