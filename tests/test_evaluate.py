"""Entity metrics: seqeval (default, conlleval-compatible mode) as the oracle, and the real test set."""

import random

import pytest

from mner.data import read_conll
from mner.evaluate import entity_scores, format_scores
from tests.conftest import TWITTER2015, needs_twitter2015

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-OTHER"]


def random_sequences(rng, n):
    return [[rng.choice(TAGS) for _ in range(rng.randint(1, 12))] for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_seqeval_on_random_tag_sequences(seed):
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = random.Random(seed)
    gold = random_sequences(rng, 200)
    pred = [[t if rng.random() < 0.6 else rng.choice(TAGS) for t in g] for g in gold]
    ours = entity_scores(gold, pred)
    assert ours.f1 == pytest.approx(seqeval.f1_score(gold, pred))
    assert ours.precision == pytest.approx(seqeval.precision_score(gold, pred))
    assert ours.recall == pytest.approx(seqeval.recall_score(gold, pred))
    report = seqeval.classification_report(gold, pred, output_dict=True)
    for etype, s in ours.per_type.items():
        assert s["f1"] == pytest.approx(report[etype]["f1-score"])
        assert s["support"] == report[etype]["support"]


def test_hand_worked_example():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-OTHER"]]
    s = entity_scores(gold, pred)
    # correct: PER, ORG(post 2) = 2 of 4 predicted and 3 gold
    assert (s.precision, s.recall) == (0.5, pytest.approx(2 / 3))
    assert s.per_type["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s.to_json()["f1"] == 57.14
    assert "overall" in format_scores(s)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="post 0: expected 2 predicted tags, got 1"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="expected 1 predicted sequences, got 0"):
        entity_scores([["O"]], [])


@pytest.mark.slow
@needs_twitter2015
def test_counts_5207_gold_entities_on_twitter2015_test():
    posts = read_conll(TWITTER2015 / "test.txt")
    gold = [list(p.tags) for p in posts]
    scores = entity_scores(gold, gold)
    assert scores.gold_entities == 5207
    assert {t: s["support"] for t, s in scores.per_type.items()} == {
        "PER": 1873,
        "LOC": 1720,
        "ORG": 860,
        "OTHER": 754,
    }
    begins_with_i = sum(
        1 for g in gold for i, t in enumerate(g) if t.startswith("I-") and (i == 0 or g[i - 1][2:] != t[2:])
    )
    assert begins_with_i == 135
    assert scores.f1 == 1.0
