"""Decoding a linear-chain CRF in NumPy: the one BIO rule and the one Viterbi that every runtime uses.

A runtime's only own step is the emissions (PyTorch's network, or the ONNX graph on ONNX Runtime); the CRF's
scores (``CrfScores``: start, end and transition scores, read from the weights) and everything after them
live here, so PyTorch and ONNX Runtime tag alike by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FORBIDDEN = -10000.0  # what a transition BIO forbids adds to its score when decoding


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
