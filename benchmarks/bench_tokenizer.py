"""Tokenizer scaling: seconds of ``mner.tokenize_with_offsets`` on one line of 1 KB to 1 MB, ordinary and adversarial.

Usage: python benchmarks/bench_tokenizer.py [--sizes 1000 10000 100000 1000000] [--report FILE | --update]
       [--baseline REF]

Each line is one kind of text repeated to the size in UTF-8 bytes, with no spaces where the kind has none:
tweet-like text, flags (regional-indicator pairs: quadratic before issue #25), combining marks on one letter
(alternating classes, which CPython's NFC reorders in quadratic time), decomposed accents (NFD, every cluster
normalised), emoji ZWJ sequences, zero-width and control characters. The best of ``--repeats`` runs is printed
per size, with the ratio to the size before: about 10 for each tenfold size is linear time. ``--baseline REF``
also times ``mner.data.tokenize`` as it was at git ref REF (e.g. ``main``), on the sizes that finish within
``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mner.tokenizer import tokenize_with_offsets
from runs import publish, report_option, report_path

KINDS = {
    "tweet": "RT @nytimes: Barack Obama meets Angela Merkel in Berlin #G7 http://t.co/x 🙌🏽 ",
    "flags": "🇩🇪🇫🇷🇺🇸",
    "combining marks": "\u0301\u0323",  # after one "e": one cluster of ever more marks
    "decomposed accents": "e\u0301n\u0303u\u0308",
    "ZWJ sequences": "👩\u200d👩\u200d👧\u200d",
    "zero-width and controls": "a\u200b\x00\u200e\u200db\ufeff\x01",
}


def line(kind: str, size: int) -> str:
    """``size`` UTF-8 bytes (or just under) of ``kind``."""
    unit = KINDS[kind]
    prefix = "e" if kind == "combining marks" else ""
    count = max(1, (size - len(prefix)) // len(unit.encode("utf-8")))
    return prefix + unit * count


def best_time(function, text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(text)
        times.append(time.perf_counter() - start)
    return min(times)


def old_tokenizer(ref: str):
    """``tokenize`` from ``src/mner/data.py`` at git ref ``ref`` (it was there before the tokenizer module)."""
    source = subprocess.run(
        ["git", "show", f"{ref}:src/mner/data.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_data.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_data", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_data"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.tokenize


def rows_for(function, sizes: list[int], repeats: int, budget: float) -> list[str]:
    rows = []
    for kind in KINDS:
        cells, previous = [], None
        for size in sizes:
            if previous is not None and previous * (size / sizes[sizes.index(size) - 1]) ** 2 > budget:
                cells.append("(skipped)")  # quadratic growth would take longer than the budget
                continue
            seconds = best_time(function, line(kind, size), repeats)
            ratio = "" if previous is None else f" (×{seconds / previous:.0f})"
            cells.append(f"{seconds:.4f}{ratio}")
            previous = seconds
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="a git ref whose tokenizer is timed too (e.g. main)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds one baseline size may take")
    report_option(parser, "tokenizer.md")
    args = parser.parse_args()
    args.report = report_path(args, "tokenizer.md")
    header = "| text | " + " | ".join(f"{s:,} B" for s in args.sizes) + " |"
    rule = "|---|" + "---|" * len(args.sizes)
    lines = [
        (
            "## Tokenizer scaling: one line of 1 KB to 1 MB (seconds, best of "
            f"{args.repeats}; ×: over the size before)"
        ),
        "",
        "`mner.tokenize_with_offsets` (tokens and their character offsets):",
        "",
        header,
        rule,
        *rows_for(tokenize_with_offsets, args.sizes, args.repeats, float("inf")),
        "",
    ]
    if args.baseline:
        lines += [
            (
                f"`mner.data.tokenize` at `{args.baseline}` (sizes whose quadratic growth would pass "
                f"{args.budget:.0f} s skipped):"
            ),
            "",
            header,
            rule,
            *rows_for(old_tokenizer(args.baseline), args.sizes, 1, args.budget),
            "",
        ]
    command = "python benchmarks/bench_tokenizer.py --sizes " + " ".join(map(str, args.sizes))
    command += f" --repeats {args.repeats}" + (f" --baseline {args.baseline}" if args.baseline else "")
    lines += [f"Command: `{command}`", ""]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
