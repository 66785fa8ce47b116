"""BIO-constrained Viterbi decoding in NumPy: what ``mner.model.crf.CRF.decode`` computes, for the ONNX runtime,
which has the emissions but no torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FORBIDDEN = -10000.0  # the penalty a forbidden transition gets (as in mner.model.crf)


def bio_penalties(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(start penalty (num_tags,), transition penalty (num_tags, num_tags)): FORBIDDEN where BIO forbids
    (``I-X`` only after ``B-X`` or ``I-X``), 0 elsewhere."""
    n = len(tags)
    start = np.zeros(n, dtype=np.float32)
    trans = np.zeros((n, n), dtype=np.float32)
    for j, tag in enumerate(tags):
        if tag.startswith("I-"):
            start[j] = FORBIDDEN
            for i, prev in enumerate(tags):
                if prev not in (f"B-{tag[2:]}", tag):
                    trans[i, j] = FORBIDDEN
    return start, trans


def viterbi(
    emissions: np.ndarray, mask: np.ndarray, start: np.ndarray, end: np.ndarray, transitions: np.ndarray
) -> list[list[int]]:
    """Best tag index sequence per row, as long as its mask.

    Args:
        emissions: (batch, seq_len, num_tags) scores; mask: (batch, seq_len) bool, first column all True;
        start, end: (num_tags,), transitions: (num_tags, num_tags) — constrained scores (penalties added).
    """
    score = start + emissions[:, 0]  # shape: (batch, num_tags)
    history = []
    for t in range(1, emissions.shape[1]):
        cand = score[:, :, None] + transitions + emissions[:, t][:, None, :]  # shape: (batch, prev, next)
        idx = cand.argmax(axis=1)  # shape: (batch, num_tags)
        best = np.take_along_axis(cand, idx[:, None, :], axis=1)[:, 0]
        score = np.where(mask[:, t][:, None], best, score)
        history.append(idx)
    score = score + end
    paths = []
    for b, length in enumerate(mask.sum(axis=1).tolist()):
        tag = int(score[b].argmax())
        path = [tag]
        for t in range(length - 2, -1, -1):
            tag = int(history[t][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths
