"""Entity-level precision, recall and F1, conlleval-compatible (seqeval's default mode)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from mner.data import ENTITY_TYPES, spans_from_tags


@dataclass(frozen=True)
class Scores:
    """Micro P/R/F1 over all entities and per type, as fractions in [0, 1]."""

    precision: float
    recall: float
    f1: float
    gold_entities: int
    predicted_entities: int
    per_type: dict[str, dict[str, float]]

    def to_json(self) -> dict:
        """Percentages with two decimals, the shape ``mner evaluate --json`` prints."""
        pct = lambda x: round(100 * x, 2)
        return {
            "precision": pct(self.precision),
            "recall": pct(self.recall),
            "f1": pct(self.f1),
            "gold_entities": self.gold_entities,
            "per_type": {
                t: {
                    "precision": pct(s["precision"]),
                    "recall": pct(s["recall"]),
                    "f1": pct(s["f1"]),
                    "support": int(s["support"]),
                }
                for t, s in self.per_type.items()
            },
        }


def _prf(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def entity_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], types: Sequence[str] = ENTITY_TYPES
) -> Scores:
    """Score predicted BIO tag sequences against gold ones, one sequence per post. Every type found in either
    is scored (a gold type never predicted has recall 0), ``types`` first in their order, then the rest sorted.

    Raises:
        ValueError: if the number of posts or of tags in a post differ.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"expected {len(gold)} predicted sequences, got {len(predicted)}")
    gold_n, pred_n, correct_n = Counter(), Counter(), Counter()
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"post {i}: expected {len(g)} predicted tags, got {len(p)}")
        g_spans = {(s.start, s.end, s.type) for s in spans_from_tags(g)}
        p_spans = {(s.start, s.end, s.type) for s in spans_from_tags(p)}
        gold_n.update(t for _, _, t in g_spans)
        pred_n.update(t for _, _, t in p_spans)
        correct_n.update(t for _, _, t in g_spans & p_spans)
    found = [t for t in types if gold_n[t] or pred_n[t]]
    found += sorted(t for t in set(gold_n) | set(pred_n) if t not in types)
    per_type = {}
    for t in found:
        p, r, f = _prf(correct_n[t], pred_n[t], gold_n[t])
        per_type[t] = {"precision": p, "recall": r, "f1": f, "support": gold_n[t]}
    p, r, f = _prf(sum(correct_n.values()), sum(pred_n.values()), sum(gold_n.values()))
    return Scores(p, r, f, sum(gold_n.values()), sum(pred_n.values()), per_type)


def format_scores(scores: Scores) -> str:
    """A small human-readable table of the scores (percentages)."""
    width = max([8, *(len(t) + 2 for t in scores.per_type)])  # WNUT's "creative-work" is 13 wide
    lines = [f"{'type':<{width}}{'P':>8}{'R':>8}{'F1':>8}{'support':>9}"]
    for t, s in scores.per_type.items():
        lines.append(
            f"{t:<{width}}{100 * s['precision']:>8.2f}{100 * s['recall']:>8.2f}{100 * s['f1']:>8.2f}"
            f"{int(s['support']):>9}"
        )
    lines.append(
        f"{'overall':<{width}}{100 * scores.precision:>8.2f}{100 * scores.recall:>8.2f}"
        f"{100 * scores.f1:>8.2f}{scores.gold_entities:>9}"
    )
    return "\n".join(lines)
