"""Candidate ranking in the KG: the name score alone vs. with a prior; prints figures.

Usage:
    python benchmarks/bench_kg_ranking.py [--kg KG.sqlite] [--shared ../shared]

Without ``--kg``, the KG of ``../shared/kg`` (FB15k-237 + DB15K + MMKG + CoDEx, as the paper-full model
card builds it) is built into a temporary folder first (a few seconds). Each gold entity span of the
Twitter-2015 test file is looked up as a mention (``SqliteKG.candidates``); the figure is the share of
mentions whose top candidate's coarse type (PER/LOC/ORG/OTHER, as ``mner kg build`` derives it; an
untyped entry or no candidate counts as wrong) is the gold type, ranked by name score alone (``prior=False``,
what the knowledge channel of the shipped models reads) and with the prior (``prior=True``, what ``mner kg
lookup`` shows: ``mner.knowledge.store.prior_order``).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(shared: Path, folder: Path) -> Path:
    from mner.knowledge import KGSources, build_kg

    kg = shared / "kg"
    out = folder / "kg.sqlite"
    start = time.perf_counter()
    build_kg(out, KGSources(kg / "fb15k237", kg / "db15k", kg / "mmkb", kg / "codex"))
    print(f"built {out} from {kg} in {time.perf_counter() - start:.1f} s")
    return out


def gold_mentions(shared: Path) -> list[tuple[str, str]]:
    from mner.data import read_conll, spans_from_tags

    posts = read_conll(shared / "data" / "twitter2015" / "test.txt")
    return [(s.text, s.type) for p in posts for s in spans_from_tags(p.tags, p.tokens)]


def top_types(kg, gold: list[tuple[str, str]], prior: bool) -> tuple[list[tuple[str | None, float]], float]:
    """The top candidate's (coarse type, name score) of each mention, and the seconds per mention."""
    from mner.knowledge.names import name_key

    start = time.perf_counter()
    tops = []
    for text, _ in gold:
        found = kg.candidates(text[:200], k=1, prior=prior) if name_key(text[:200]) else []
        tops.append((found[0].entity.type, found[0].score) if found else (None, 0.0))
    return tops, (time.perf_counter() - start) / len(gold)


def report(
    label: str, gold: list[tuple[str, str]], tops: list[tuple[str | None, float]], seconds: float
) -> None:
    n = len(gold)
    right = [t == g for (_, g), (t, _) in zip(gold, tops, strict=True)]
    strong = [r for r, (_, score) in zip(right, tops, strict=True) if score >= 90]
    untyped = sum(t is None and score > 0 for t, score in tops)
    per_type: dict[str, list[int]] = {}
    for (_, g), r in zip(gold, right, strict=True):
        row = per_type.setdefault(g, [0, 0])
        row[0] += 1
        row[1] += r
    print(
        f"{label}: top-1 coarse type = gold type for {sum(right) / n:.2%} of {n:,} gold mentions "
        f"({sum(right):,}); {sum(strong) / max(len(strong), 1):.2%} of the {len(strong):,} whose top name "
        f"scores >= 90 (the knowledge search's text threshold); top candidate untyped for {untyped:,}; "
        f"{seconds * 1000:.2f} ms per mention"
    )
    print("    per gold type: " + ", ".join(f"{t} {r[1] / r[0]:.1%}" for t, r in sorted(per_type.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kg", type=Path, help="a KG file built from ../shared/kg (default: build one)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    from mner.knowledge import SqliteKG

    print(f"machine: {platform.machine()}, {platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        path = args.kg or build(args.shared, Path(folder))
        gold = gold_mentions(args.shared)
        print(
            f"gold: {len(gold):,} entity spans of Twitter-2015 test, by type {dict(Counter(t for _, t in gold))}"
        )
        with SqliteKG(path) as kg:
            for label, prior in (("name score alone (before)", False), ("with the prior (after)", True)):
                tops, seconds = top_types(kg, gold, prior)
                report(label, gold, tops, seconds)
            for mention in ("Kobe", "Apple", "Chelsea", "Washington"):
                for prior in (False, True):
                    found = kg.candidates(mention, k=3, prior=prior)
                    print(
                        f"    {mention!r} {'prior' if prior else 'score'}: "
                        + "; ".join(f"{c.entity.label} [{c.entity.type or '-'}] {c.score:.0f}" for c in found)
                    )


if __name__ == "__main__":
    main()
