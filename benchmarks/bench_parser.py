"""Context parser scaling: seconds to read one context of 1 KB to 1 MB as a tagger does, ordinary and hostile.

Usage: python benchmarks/bench_parser.py [--sizes 1000 10000 100000 1000000] [--report FILE | --update]

Each context is one kind of text repeated to the size in UTF-8 bytes: the numbered list (the published
knowledge's shape), the list "1. a 1. a ..." that took 33.7 s at 100 KB before issue #25 (case 3), a JSON array,
one entity a line, a Markdown table, JSON opened and never closed, nested parentheses, and prose. Timed:
``mner.channels.context.post_entities`` (the entity list, whatever form) then ``align`` to a post's tokens: the
whole reading of a context. The best of ``--repeats`` runs per size, with the ratio to the size before (about 10
for each tenfold size is linear time; about 1 once the cap on the part that is read, ``MAX_CHARS``, is reached).
"""

from __future__ import annotations

import argparse
import time

from mner.channels.context import align, post_entities
from mner.channels.entities import MAX_CHARS
from runs import publish, report_option, report_path

TOKENS = ["RT", "@nytimes", ":", "Barack", "Obama", "meets", "Angela", "Merkel", "in", "Berlin", "#G7"]
KINDS = {
    "numbered list": ("Named entities:", "1. Barack Obama (person)2. Berlin (city)3. G7 (organization)"),
    "1. a 1. a ...": ("Named entities:", "1. a "),
    "JSON array": ("[", '{"name": "Barack Obama", "type": "person"}, '),
    "one a line": ("", "- Barack Obama - person\n"),
    "Markdown table": ("| name | type |\n|---|---|\n", "| Barack Obama | person |\n"),
    "unclosed JSON": ("", '{"entities": [{"name": "a", '),
    "nested parentheses": ("", "Obama (a (b "),
    "prose": ("", "The post is about Barack Obama meeting Angela Merkel in Berlin. "),
}


def context(kind: str, size: int) -> str:
    head, unit = KINDS[kind]
    count = max(1, (size - len(head.encode("utf-8"))) // len(unit.encode("utf-8")))
    return head + unit * count


def read(text: str) -> list[str]:
    return align(TOKENS, post_entities(TOKENS, text, prose_fallback=True) or [])


def best_time(text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    report_option(parser, "parser.md")
    args = parser.parse_args()
    args.report = report_path(args, "parser.md")
    lines = [
        (
            f"## Context parser scaling: one context of 1 KB to 1 MB (seconds, best of {args.repeats}; ×: over the "
            "size before)"
        ),
        "",
        (
            f"`post_entities` + `align` to an 11-token post; at most the first {MAX_CHARS:,} characters of a context "
            "are read (`mner.channels.entities.MAX_CHARS`)."
        ),
        "",
        "| context | " + " | ".join(f"{s:,} B" for s in args.sizes) + " |",
        "|---|" + "---|" * len(args.sizes),
    ]
    for kind in KINDS:
        cells, previous = [], None
        for size in args.sizes:
            seconds = best_time(context(kind, size), args.repeats)
            cells.append(f"{seconds:.4f}" + ("" if previous is None else f" (×{seconds / previous:.1f})"))
            previous = seconds
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    command = "python benchmarks/bench_parser.py --sizes " + " ".join(map(str, args.sizes))
    lines += ["", f"Command: `{command} --repeats {args.repeats}`", ""]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
