"""Decoding a linear-chain CRF in NumPy: the one BIO rule, the one Viterbi and the one forward–backward pass (each
entity's probability) that every runtime uses.

A runtime's only own step is the emissions (PyTorch's network, or the ONNX graph on ONNX Runtime); the CRF's
scores (``CrfScores``: start, end and transition scores, read from the weights) and everything after them
live here, so PyTorch and ONNX Runtime tag alike by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import regex

from mner.data import spans_from_tags

FORBIDDEN = -10000.0  # what a transition BIO forbids adds to its score when decoding
# a token made of emoji only (pictographs, skin tones, flags, with their joiners and selectors): never an entity
_EMOJI_ONLY = regex.compile(
    r"(?=.*[\p{Extended_Pictographic}\p{Regional_Indicator}])"
    r"[\p{Extended_Pictographic}\p{Emoji_Modifier}\p{Regional_Indicator}\u200d\ufe0f\U000e0020-\U000e007f]+"
)


def is_emoji(token: str) -> bool:
    """Whether a token is emoji only (``😍``, ``🇫🇷``, ``👨‍👩‍👧``): ``never_entity`` keeps it out of every entity."""
    return bool(_EMOJI_ONLY.fullmatch(token))


def never_entity(emissions: np.ndarray, tokens: Sequence[Sequence[str]], tags: Sequence[str]) -> np.ndarray:
    """The emissions with every tag but ``O`` forbidden at emoji tokens (``is_emoji``), for Viterbi and the
    entity probabilities alike: "Paris 😍" is never the entity "Paris 😍". No gold entity of Twitter-2015 or
    Twitter-2017 holds an emoji token, but Twitter-2015's 4,000 training posts hold 8 of them: too few for a model
    to learn that an emoji after a name is not part of it.

    Args:
        emissions: (batch, seq_len, num_tags); tokens: each row's tokens (at most seq_len); tags: the model's.
    """
    if "O" not in tags:
        return emissions
    at = [(row, t) for row, words in enumerate(tokens) for t, word in enumerate(words) if is_emoji(word)]
    if not at:
        return emissions
    out = emissions.copy()
    others = [i for i, tag in enumerate(tags) if tag != "O"]
    rows, columns = zip(*at, strict=True)
    out[np.array(rows)[:, None], np.array(columns)[:, None], np.array(others)[None, :]] += FORBIDDEN
    return out


def bio_allowed(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(allowed[i, j] for tag i → tag j, allowed_start[j]) under BIO: ``I-X`` only after ``B-X`` or ``I-X``."""
    n = len(tags)
    allowed = np.ones((n, n), dtype=bool)
    start = np.ones(n, dtype=bool)
    for j, tag in enumerate(tags):
        if not tag.startswith("I-"):
            continue
        start[j] = False
        for i, prev in enumerate(tags):
            allowed[i, j] = prev in (f"B-{tag[2:]}", tag)
    return allowed, start


@dataclass(frozen=True)
class CrfScores:
    """A CRF's learned scores, as the weights hold them (no constraint added)."""

    start: np.ndarray  # shape: (num_tags,)
    end: np.ndarray  # shape: (num_tags,)
    transitions: np.ndarray  # shape: (num_tags, num_tags), from row tag to column tag

    def constrained(self, tags: Sequence[str]) -> CrfScores:
        """The scores with ``FORBIDDEN`` added where BIO forbids a start or a transition over ``tags``."""
        if len(tags) != len(self.start):
            raise ValueError(f"expected {len(self.start)} tags for these scores, got {len(tags)}")
        allowed, allowed_start = bio_allowed(tags)
        penalty = lambda ok: np.where(ok, 0.0, FORBIDDEN).astype(np.float32)  # float32 sums, as PyTorch's
        return CrfScores(
            self.start.astype(np.float32) + penalty(allowed_start),
            self.end.astype(np.float32),
            self.transitions.astype(np.float32) + penalty(allowed),
        )

    def check(self, source: str) -> None:
        """Refuse scores of the wrong shape or holding NaN or infinite values (a damaged model).

        Raises:
            ValueError: naming ``source``.
        """
        n = len(self.start)
        if self.start.shape != (n,) or self.end.shape != (n,) or self.transitions.shape != (n, n):
            raise ValueError(
                f"{source}: CRF scores of shapes {self.start.shape}, {self.end.shape}, {self.transitions.shape}; "
                f"expected ({n},), ({n},), ({n}, {n})"
            )
        if not all(np.isfinite(a).all() for a in (self.start, self.end, self.transitions)):
            raise ValueError(f"{source}: the CRF scores hold NaN or infinite values: a damaged model")


def viterbi(emissions: np.ndarray, mask: np.ndarray, scores: CrfScores) -> list[list[int]]:
    """Best tag index sequence per row, as long as its mask.

    Args:
        emissions: (batch, seq_len, num_tags) scores; mask: (batch, seq_len) bool, first column all True;
        scores: the CRF's scores (``CrfScores.constrained`` for BIO-valid paths).
    """
    score = scores.start + emissions[:, 0]  # shape: (batch, num_tags)
    history = []
    for t in range(1, emissions.shape[1]):
        # shape: (batch, prev, next)
        cand = score[:, :, None] + scores.transitions + emissions[:, t][:, None, :]
        idx = cand.argmax(axis=1)  # shape: (batch, num_tags)
        best = np.take_along_axis(cand, idx[:, None, :], axis=1)[:, 0]
        score = np.where(mask[:, t][:, None], best, score)
        history.append(idx)
    score = score + scores.end
    paths = []
    for b, length in enumerate(mask.sum(axis=1).tolist()):
        tag = int(score[b].argmax())
        path = [tag]
        for t in range(length - 2, -1, -1):
            tag = int(history[t][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths


# ------------------------------------------------------------------------------- forward–backward


def _logsumexp(values: np.ndarray, axis: int) -> np.ndarray:
    top = values.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(values - top).sum(axis=axis, keepdims=True))).squeeze(axis)


@dataclass(frozen=True)
class ForwardBackward:
    """The CRF's forward and backward log-scores of a batch, in float64: ``alpha[b, t, k]`` sums (in log space)
    every path of row b's tokens 0..t that ends in tag k, emission at t included; ``beta[b, t, k]`` every path of
    its tokens t+1.. given tag k at t, the end score included; ``log_z[b]`` all paths."""

    emissions: np.ndarray  # shape: (batch, seq_len, num_tags), float64
    lengths: np.ndarray  # shape: (batch,)
    scores: CrfScores
    alpha: np.ndarray  # shape: (batch, seq_len, num_tags)
    beta: np.ndarray  # shape: (batch, seq_len, num_tags)
    log_z: np.ndarray  # shape: (batch,)

    def marginals(self) -> np.ndarray:
        """p(tag k at token t) per row, shape (batch, seq_len, num_tags); rows past a row's length are junk."""
        return np.exp(self.alpha + self.beta - self.log_z[:, None, None])

    def segment_probability(
        self, row: int, start: int, path: Sequence[int], not_after: Sequence[int]
    ) -> float:
        """p(tags ``path`` at tokens ``start``.. of ``row``, and the tag after them, if any, none of ``not_after``):
        for an entity, its tags and that the next token does not continue it."""
        trans = self.scores.transitions.astype(np.float64)
        emissions, end = self.emissions[row], start + len(path)
        score = self.alpha[row, start, path[0]]
        for t in range(1, len(path)):
            score += trans[path[t - 1], path[t]] + emissions[start + t, path[t]]
        if end == self.lengths[row]:
            score += float(self.scores.end[path[-1]])
        else:
            following = trans[path[-1]] + emissions[end] + self.beta[row, end]  # shape: (num_tags,)
            following[list(not_after)] = -np.inf
            score += _logsumexp(following, axis=0)
        return float(np.exp(score - self.log_z[row]))


def forward_backward(emissions: np.ndarray, mask: np.ndarray, scores: CrfScores) -> ForwardBackward:
    """The forward–backward pass of a batch (same arguments as ``viterbi``), in float64 so that emissions that
    differ by float32 rounding (PyTorch vs ONNX Runtime) give probabilities that differ by far less than 1e-4."""
    emissions = emissions.astype(np.float64)
    start, end = scores.start.astype(np.float64), scores.end.astype(np.float64)
    trans = scores.transitions.astype(np.float64)
    batch, seq_len = emissions.shape[:2]
    lengths = mask.sum(axis=1)
    alpha = np.empty_like(emissions)
    alpha[:, 0] = start + emissions[:, 0]
    for t in range(1, seq_len):
        # shape: (batch, prev, next)
        alpha[:, t] = _logsumexp(alpha[:, t - 1, :, None] + trans + emissions[:, t, None, :], axis=1)
    beta = np.empty_like(emissions)
    beta[:, seq_len - 1] = end
    for t in range(seq_len - 2, -1, -1):
        # shape: (batch, this, next)
        step = _logsumexp(trans + (emissions[:, t + 1] + beta[:, t + 1])[:, None, :], axis=2)
        beta[:, t] = np.where((lengths - 1 == t)[:, None], end, step)
    last = alpha[np.arange(batch), lengths - 1]  # shape: (batch, num_tags)
    log_z = _logsumexp(last + end, axis=1)
    return ForwardBackward(emissions, lengths, scores, alpha, beta, log_z)


def entity_probabilities(
    fb: ForwardBackward, paths: Sequence[Sequence[int]], tags: Sequence[str]
) -> list[list[tuple[int, int, str, float]]]:
    """Each decoded entity of each row as ``(start, end, type, probability)``: the spans of its path
    (conlleval's rules, ``mner.data.spans_from_tags``) and the CRF's probability of that entity — these tags at
    its tokens, and the token after it (if any) not continuing it (``I-`` of its type)."""
    out = []
    for row, path in enumerate(paths):
        spans = spans_from_tags([tags[i] for i in path])
        out.append(
            [
                (
                    s.start,
                    s.end,
                    s.type,
                    fb.segment_probability(
                        row,
                        s.start,
                        path[s.start : s.end],
                        [i for i, t in enumerate(tags) if t == f"I-{s.type}"],
                    ),
                )
                for s in spans
            ]
        )
    return out
