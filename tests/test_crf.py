"""The CRF against brute-force enumeration of every tag sequence on tiny inputs."""

import itertools

import pytest
import torch

from mner.decoding import bio_allowed
from mner.model.crf import CRF


def brute_force(crf: CRF, emissions: torch.Tensor, length: int, constrained: bool = False):
    """(log Z, best score, best path) by enumerating all num_tags**length sequences of one post; with
    ``constrained``, the scores the decoder uses (BIO penalties added)."""
    if constrained:
        scores = crf.scores()
        start, trans = torch.from_numpy(scores.start), torch.from_numpy(scores.transitions)
    else:
        start, trans = crf.start_transitions, crf.transitions
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=length):
        s = start[path[0]] + emissions[0, path[0]]
        for t in range(1, length):
            s = s + trans[path[t - 1], path[t]] + emissions[t, path[t]]
        scores[path] = s + crf.end_transitions[path[-1]]
    stacked = torch.stack(list(scores.values()))
    best = max(scores, key=lambda p: scores[p].item())
    return torch.logsumexp(stacked, 0), scores, list(best)


@pytest.mark.parametrize("num_tags,lengths", [(3, [4, 2, 1]), (4, [3, 3]), (5, [1, 4])])
def test_log_likelihood_and_viterbi_match_brute_force(num_tags, lengths):
    crf = CRF(num_tags)
    batch, seq_len = len(lengths), max(lengths)
    emissions = torch.randn(batch, seq_len, num_tags)
    tags = torch.randint(num_tags, (batch, seq_len))
    mask = torch.arange(seq_len).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    llh = crf(emissions, tags, mask)
    paths = crf.decode(emissions, mask)
    for b, length in enumerate(lengths):
        log_z, scores, best = brute_force(crf, emissions[b], length)
        gold = tuple(tags[b, :length].tolist())
        assert llh[b].item() == pytest.approx((scores[gold] - log_z).item(), abs=1e-4)
        assert paths[b] == best


def test_batched_equals_one_at_a_time():
    crf = CRF(4)
    emissions = torch.randn(3, 5, 4)
    tags = torch.randint(4, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    batched = crf(emissions, tags, mask)
    decoded = crf.decode(emissions, mask)
    for b in range(3):
        n = int(mask[b].sum())
        one = crf(emissions[b : b + 1, :n], tags[b : b + 1, :n], mask[b : b + 1, :n])
        assert one.item() == pytest.approx(batched[b].item(), abs=1e-5)
        assert crf.decode(emissions[b : b + 1, :n], mask[b : b + 1, :n])[0] == decoded[b]


def test_probabilities_sum_to_one():
    crf = CRF(3)
    emissions = torch.randn(1, 3, 3)
    mask = torch.ones(1, 3, dtype=torch.bool)
    total = sum(
        crf(emissions, torch.tensor([p]), mask).exp().item() for p in itertools.product(range(3), repeat=3)
    )
    assert total == pytest.approx(1.0, abs=1e-5)


def test_constrained_decoding_never_emits_invalid_bio():
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    allowed, start = bio_allowed(tags)
    crf = CRF(len(tags), tags)
    emissions = torch.zeros(1, 2, len(tags))
    emissions[0, 0, 0] = 5.0  # strongly O, then
    emissions[0, 1, 2] = 5.0  # strongly I-PER: O → I-PER is forbidden
    path = crf.decode(emissions, torch.ones(1, 2, dtype=torch.bool))[0]
    assert [tags[i] for i in path] in (["B-PER", "I-PER"], ["O", "B-PER"], ["O", "O"])
    _, _, best = brute_force(crf, emissions[0], 2, constrained=True)
    assert path == best
    assert not allowed[tags.index("B-LOC"), tags.index("I-PER")]
    assert allowed[tags.index("B-PER"), tags.index("I-PER")] and not start[tags.index("I-LOC")]


def test_errors_name_expected_and_actual():
    crf = CRF(3)
    with pytest.raises(
        ValueError, match=r"expected emissions of shape \(batch, seq_len, 3\), got \(2, 4, 5\)"
    ):
        crf.decode(torch.randn(2, 4, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected a torch.bool mask, got torch.uint8"):
        crf.decode(torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="the first token of every sequence must be unmasked"):
        crf.decode(torch.randn(1, 2, 3), torch.tensor([[False, True]]))
    with pytest.raises(ValueError, match="num_tags must be positive, got 0"):
        CRF(0)
