"""The forward–backward pass (marginals, entity probabilities) against brute-force enumeration of every tag
sequence on tiny inputs, in NumPy alone."""

import itertools

import numpy as np
import pytest

from mner.decoding import CrfScores, entity_probabilities, forward_backward, viterbi

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def random_scores(rng, num_tags: int) -> CrfScores:
    return CrfScores(
        *(
            rng.normal(size=shape).astype(np.float32)
            for shape in ((num_tags,), (num_tags,), (num_tags, num_tags))
        )
    )


def path_probabilities(emissions: np.ndarray, scores: CrfScores, length: int) -> dict[tuple, float]:
    """p(path) of every path of one row's first ``length`` tokens, by enumeration."""
    num_tags = emissions.shape[1]
    emissions = emissions.astype(np.float64)
    start, end, trans = (a.astype(np.float64) for a in (scores.start, scores.end, scores.transitions))
    logits = {}
    for path in itertools.product(range(num_tags), repeat=length):
        s = start[path[0]] + emissions[0, path[0]]
        for t in range(1, length):
            s += trans[path[t - 1], path[t]] + emissions[t, path[t]]
        logits[path] = float(s + end[path[-1]])
    top = max(logits.values())
    total = sum(np.exp(v - top) for v in logits.values())
    return {p: float(np.exp(v - top) / total) for p, v in logits.items()}


@pytest.mark.parametrize("num_tags,lengths", [(3, [4, 2, 1]), (4, [3, 3]), (5, [1, 5])])
def test_marginals_match_brute_force(num_tags, lengths):
    rng = np.random.default_rng(num_tags)
    scores = random_scores(rng, num_tags)
    emissions = rng.normal(size=(len(lengths), max(lengths), num_tags)).astype(np.float32)
    mask = np.arange(max(lengths))[None, :] < np.array(lengths)[:, None]
    marginals = forward_backward(emissions, mask, scores).marginals()
    for b, length in enumerate(lengths):
        expected = np.zeros((length, num_tags))
        for path, p in path_probabilities(emissions[b], scores, length).items():
            expected[np.arange(length), list(path)] += p
        np.testing.assert_allclose(marginals[b, :length], expected, atol=1e-9)
        np.testing.assert_allclose(marginals[b, :length].sum(axis=1), 1.0, atol=1e-9)


def test_entity_probabilities_match_brute_force_under_bio_constraints():
    rng = np.random.default_rng(7)
    scores = random_scores(rng, len(TAGS)).constrained(TAGS)
    lengths = [5, 3]
    emissions = (2 * rng.normal(size=(2, 5, len(TAGS)))).astype(np.float32)
    mask = np.arange(5)[None, :] < np.array(lengths)[:, None]
    paths = viterbi(emissions, mask, scores)
    found = entity_probabilities(forward_backward(emissions, mask, scores), paths, TAGS)
    assert any(found), "the random case decodes no entity: pick another seed"
    for b, length in enumerate(lengths):
        probabilities = path_probabilities(emissions[b], scores, length)
        for start, end, etype, p in found[b]:
            inside = (f"B-{etype}",) + (f"I-{etype}",) * (end - start - 1)
            # every path with exactly this entity: its tags, and the token after it not I- of its type
            expected = sum(
                q
                for path, q in probabilities.items()
                if tuple(TAGS[i] for i in path[start:end]) == inside
                and (end == length or TAGS[path[end]] != f"I-{etype}")
            )
            assert p == pytest.approx(expected, abs=1e-9)
            assert 0.0 < p <= 1.0


def test_a_certain_entity_has_probability_one_and_an_even_choice_one_half():
    scores = CrfScores(
        np.zeros(5, np.float32), np.zeros(5, np.float32), np.zeros((5, 5), np.float32)
    ).constrained(TAGS)
    emissions = np.full((1, 2, 5), -50.0, dtype=np.float32)
    emissions[0, 0, TAGS.index("B-PER")] = 50.0
    emissions[0, 1, TAGS.index("O")] = 50.0
    mask = np.ones((1, 2), dtype=bool)
    fb = forward_backward(emissions, mask, scores)
    assert entity_probabilities(fb, viterbi(emissions, mask, scores), TAGS) == [
        [(0, 1, "PER", pytest.approx(1.0))]
    ]
    emissions[0, 0, TAGS.index("B-LOC")] = 50.0  # PER or LOC, as likely
    fb = forward_backward(emissions, mask, scores)
    [[(_, _, _, p)]] = entity_probabilities(fb, viterbi(emissions, mask, scores), TAGS)
    assert p == pytest.approx(0.5)
