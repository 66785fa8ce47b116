"""A linear-chain conditional random field (paper Eq. 15–17), batch-first, with bool masks.

Optionally constrained: transitions that BIO forbids (``O → I-X``, ``B-X → I-Y``) can be given as a
bool matrix; decoding then never takes them, so decoded tag sequences are always valid BIO. Training
leaves them unconstrained: gold data hold a few such sequences (Twitter-2015 test has 135 entities that
begin with ``I-``), and a forbidden gold path would make its likelihood meaningless.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_FORBIDDEN = -10000.0


def bio_allowed_transitions(tags: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(allowed[i, j] for tag i → tag j, allowed_start[j]) under BIO: ``I-X`` only after ``B-X`` or ``I-X``."""
    n = len(tags)
    allowed = torch.ones(n, n, dtype=torch.bool)
    start = torch.ones(n, dtype=torch.bool)
    for j, tag in enumerate(tags):
        if not tag.startswith("I-"):
            continue
        start[j] = False
        for i, prev in enumerate(tags):
            allowed[i, j] = prev in (f"B-{tag[2:]}", tag)
    return allowed, start


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags.

    ``forward`` returns the log-likelihood of gold tag sequences; ``decode`` the Viterbi best paths.
    """

    def __init__(
        self, num_tags: int, allowed: torch.Tensor | None = None, allowed_start: torch.Tensor | None = None
    ):
        super().__init__()
        if num_tags <= 0:
            raise ValueError(f"num_tags must be positive, got {num_tags}")
        self.num_tags = num_tags
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        allowed = torch.ones(num_tags, num_tags, dtype=torch.bool) if allowed is None else allowed
        allowed_start = torch.ones(num_tags, dtype=torch.bool) if allowed_start is None else allowed_start
        if allowed.shape != (num_tags, num_tags) or allowed_start.shape != (num_tags,):
            raise ValueError(
                f"expected allowed of shape ({num_tags}, {num_tags}) and allowed_start of shape "
                f"({num_tags},), got {tuple(allowed.shape)} and {tuple(allowed_start.shape)}"
            )
        # Constraints are derived from the tag set, so they are rebuilt at load time, not saved.
        self.register_buffer("_penalty", (~allowed).float() * _FORBIDDEN, persistent=False)
        self.register_buffer("_start_penalty", (~allowed_start).float() * _FORBIDDEN, persistent=False)

    def _scores(self, constrained: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if not constrained:
            return self.start_transitions, self.transitions
        return self.start_transitions + self._start_penalty, self.transitions + self._penalty

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of ``tags`` per sequence.

        Args:
            emissions: (batch, seq_len, num_tags) scores.
            tags: (batch, seq_len) gold tag indices.
            mask: (batch, seq_len) bool, True for real tokens; every sequence's first token must be real.
        Returns:
            (batch,) log p(tags | emissions).
        """
        self._validate(emissions, mask, tags)
        return self._path_score(emissions, tags, mask) - self._log_partition(emissions, mask)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Best tag sequence per post (Viterbi), each as long as its mask."""
        self._validate(emissions, mask)
        return self._viterbi(emissions, mask)

    def _validate(
        self, emissions: torch.Tensor, mask: torch.Tensor, tags: torch.Tensor | None = None
    ) -> None:
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(
                f"expected emissions of shape (batch, seq_len, {self.num_tags}), got {tuple(emissions.shape)}"
            )
        if mask.dtype != torch.bool:
            raise ValueError(f"expected a torch.bool mask, got {mask.dtype}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"expected mask of shape {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}")
        if tags is not None and tags.shape != emissions.shape[:2]:
            raise ValueError(f"expected tags of shape {tuple(emissions.shape[:2])}, got {tuple(tags.shape)}")
        if not bool(mask[:, 0].all()):
            raise ValueError("the first token of every sequence must be unmasked")

    def _path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        start, trans = self._scores()
        batch = torch.arange(emissions.size(0), device=emissions.device)
        maskf = mask.float()  # shape: (batch, seq_len)
        score = start[tags[:, 0]] + emissions[batch, 0, tags[:, 0]]  # shape: (batch,)
        for t in range(1, emissions.size(1)):
            step = trans[tags[:, t - 1], tags[:, t]] + emissions[batch, t, tags[:, t]]
            score = score + step * maskf[:, t]
        last = tags[batch, mask.sum(1) - 1]  # shape: (batch,)
        return score + self.end_transitions[last]

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        start, trans = self._scores()
        alpha = start + emissions[:, 0]  # shape: (batch, num_tags)
        for t in range(1, emissions.size(1)):
            # shape: (batch, num_tags_prev, num_tags_next)
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + self.end_transitions, dim=1)  # shape: (batch,)

    def _viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        start, trans = self._scores(constrained=True)
        score = start + emissions[:, 0]  # shape: (batch, num_tags)
        history = []
        for t in range(1, emissions.size(1)):
            # shape: (batch, num_tags_prev, num_tags_next)
            cand = score.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1)
            best, idx = cand.max(dim=1)  # shape: (batch, num_tags)
            score = torch.where(mask[:, t].unsqueeze(1), best, score)
            history.append(idx)
        score = (score + self.end_transitions).cpu()
        lengths = mask.sum(1).tolist()
        # back-tracking reads single entries: on the host, not one device round trip each
        history = [h.cpu() for h in history] if score.device != emissions.device else history
        paths = []
        for b, length in enumerate(lengths):
            tag = int(score[b].argmax())
            path = [tag]
            for t in range(length - 2, -1, -1):
                tag = int(history[t][b, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths
