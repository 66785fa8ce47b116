"""How far each entity's score (its probability under the model's CRF) can be trusted: expected calibration error
and the precision of the entities scored ≥ 0.9, on Twitter-2015 test.

Usage: python benchmarks/bench_calibration.py [--models default text] [--bins 10] [--threads 1]
       [--report FILE | --update]

An entity is correct when its span and type are a gold entity's (conlleval's rule). ECE: the predicted entities in
``--bins`` equal-width score bins, the mean over bins, weighted by their share of entities, of |precision of the
bin − mean score of the bin|. The ``default`` model reads the published LLM context (``llm_knowledge.tsv``), as
its card's F1 with context does; ``text`` reads the text alone. Runs on ONNX Runtime, like ``mner evaluate``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mner.channels.sources import ChannelSources
from mner.data import read_conll, spans_from_tags
from mner.runtime.runners import load_runner
from runs import publish, report_option, report_path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "twitter2015"
FILES = {"context": DATA / "llm_knowledge.tsv", "caption": DATA / "image_captions.tsv"}


def scored_entities(model: str, threads: int) -> tuple[list[tuple[float, bool]], int]:
    """(score, correct) of every entity the model finds in the test posts, and the number of gold entities."""
    runner = load_runner(model, "auto", threads)
    runner.use_features(threads, cached=True)  # a frozen encoder's features: computed once a post
    channels = runner.config.channels
    sources = ChannelSources.open({c: FILES[c] for c in channels if c in FILES})
    posts = sources.fill(read_conll(DATA / "test.txt"), channels).posts
    found, gold_total = [], 0
    for post, spans in zip(posts, runner.predict(posts), strict=True):
        gold = {(s.start, s.end, s.type) for s in spans_from_tags(post.tags)}
        gold_total += len(gold)
        found += [(s.score, (s.start, s.end, s.type) in gold) for s in spans]
    return found, gold_total


def reliability(
    found: list[tuple[float, bool]], bins: int
) -> tuple[float, list[tuple[str, int, float, float]]]:
    """ECE and each non-empty bin's (range, entities, mean score, precision)."""
    scores = np.array([s for s, _ in found])
    correct = np.array([c for _, c in found], dtype=float)
    which = np.minimum((scores * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        mean, precision = scores[inside].mean(), correct[inside].mean()
        ece += inside.mean() * abs(precision - mean)
        rows.append(
            (f"{b / bins:.1f}–{(b + 1) / bins:.1f}", int(inside.sum()), float(mean), float(precision))
        )
    return float(ece), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default", "text"])
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    report_option(parser, "calibration.md")
    args = parser.parse_args()
    args.report = report_path(args, "calibration.md")
    summary, details = [], []
    for model in args.models:
        found, gold = scored_entities(model, args.threads)
        ece, rows = reliability(found, args.bins)
        sure = [c for s, c in found if s >= 0.9]
        context = " + LLM context (`llm_knowledge.tsv`)" if model == "default" else ""
        summary.append(
            f"| `{model}`{context} | {len(found):,} | {100 * np.mean([c for _, c in found]):.2f} | {100 * ece:.2f} "
            f"| {len(sure):,} ({100 * len(sure) / len(found):.1f} %) | {100 * np.mean(sure):.2f} "
            f"| {100 * sum(sure) / gold:.2f} |"
        )
        print(summary[-1], flush=True)
        details += [
            f"`{model}`{context}:",
            "",
            "| score | entities | mean score | precision |",
            "|---|---|---|---|",
        ]
        details += [f"| {r} | {n:,} | {100 * m:.2f} | {100 * p:.2f} |" for r, n, m, p in rows] + [""]
    lines = [
        "## Confidence: how well each entity's score is calibrated (Twitter-2015 test, 5,207 gold entities)",
        "",
        (
            f"ECE over {args.bins} equal-width bins; an entity is correct when its span and type are gold's. "
            "Precision and recall in percent."
        ),
        "",
        "| model | entities found | precision | ECE | entities scored ≥ 0.9 | their precision | their recall |",
        "|---|---|---|---|---|---|---|",
        *summary,
        "",
        *details,
        f"Command: `python benchmarks/bench_calibration.py --models {' '.join(args.models)} --bins {args.bins}`",
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
