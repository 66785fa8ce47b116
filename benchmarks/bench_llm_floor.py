"""The LLM's own entity list scored as a tagger on Twitter-2015 test: a floor that shows what a tagger adds.

Usage: python benchmarks/bench_llm_floor.py [--split test] [--report FILE | --update]

For each post, the "Named entities" list of ``llm_knowledge.tsv`` is aligned to the post's tokens
(``mner.channels.context.align``: exact whole-token matches, case, ``#``/``@`` and CamelCase hashtags normalised) and
its kinds mapped to PER/LOC/ORG/OTHER (``mner.channels.context.entity_type``); a kind that maps to nothing (a date, a
topic) tags nothing. Scored like every model here (entity-level, conlleval-compatible, 5,207 test entities).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mner.channels.context import align, post_entities
from mner.channels.sources import ChannelSources
from mner.data import read_conll
from mner.evaluate import entity_scores
from runs import publish, report_option, report_path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "twitter2015"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--data", type=Path, default=DATA)
    report_option(parser, "llm_floor.md")
    args = parser.parse_args()
    args.report = report_path(args, "llm_floor.md")
    filled = ChannelSources.open({"context": args.data / "llm_knowledge.tsv"}).fill(
        read_conll(args.data / f"{args.split}.txt"), ["text", "context"]
    )
    predicted = [
        [
            t if not t.endswith("-UNK") else "O"
            for t in align(p.tokens, post_entities(p.tokens, p.context) or [])
        ]
        for p in filled.posts
    ]
    scores = entity_scores([list(p.tags) for p in filled.posts], predicted).to_json()
    row = " | ".join(f"{scores['per_type'][t]['f1']:.2f}" for t in ("PER", "LOC", "ORG", "OTHER"))
    lines = [
        "## The LLM's entity list as a tagger (a floor)",
        "",
        f"Twitter-2015 {args.split}: {filled.report.summary()}.",
        "",
        "| system | channels | PER F1 | LOC F1 | ORG F1 | OTHER F1 | P | R | F1 |",
        "|---|---|---|---|---|---|---|---|---|",
        (
            f"| the LLM's entity list, aligned (no model) | context (LLM) | {row} | {scores['precision']:.2f} | "
            f"{scores['recall']:.2f} | {scores['f1']:.2f} |"
        ),
        "",
        f"Command: `python benchmarks/bench_llm_floor.py --split {args.split}`",
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
