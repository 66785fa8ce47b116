"""A linear-chain conditional random field (paper Eq. 15–17), batch-first, with bool masks.

Training reads the log-likelihood here (PyTorch); decoding is ``mner.decoding`` (NumPy): the one Viterbi and
the one BIO rule every runtime uses. Given its tags, the CRF decodes under BIO: transitions it forbids
(``O → I-X``, ``B-X → I-Y``) are never taken, so decoded tag sequences are always valid BIO. Training leaves
them unconstrained: gold data hold a few such sequences (Twitter-2015 test has 135 entities that begin with
``I-``), and a forbidden gold path would make its likelihood meaningless.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mner.decoding import CrfScores, viterbi


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags.

    ``forward`` returns the log-likelihood of gold tag sequences; ``decode`` the Viterbi best paths (BIO-valid
    when the CRF was given its ``tags``).
    """

    def __init__(self, num_tags: int, tags: Sequence[str] | None = None):
        super().__init__()
        if num_tags <= 0:
            raise ValueError(f"num_tags must be positive, got {num_tags}")
        if tags is not None and len(tags) != num_tags:
            raise ValueError(f"expected {num_tags} tags, got {len(tags)}")
        self.num_tags = num_tags
        self.tags = None if tags is None else tuple(tags)  # the constraints follow from the tags: not saved
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))

    def scores(self) -> CrfScores:
        """The learned scores as NumPy arrays, BIO-constrained when the CRF knows its tags."""
        params = (self.start_transitions, self.end_transitions, self.transitions)
        scores = CrfScores(*(p.detach().float().cpu().numpy() for p in params))
        return scores if self.tags is None else scores.constrained(self.tags)

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
        """Best tag sequence per post (``mner.decoding.viterbi``), each as long as its mask."""
        self._validate(emissions, mask)
        return viterbi(emissions.detach().float().cpu().numpy(), mask.cpu().numpy(), self.scores())

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
        start, trans = self.start_transitions, self.transitions
        batch = torch.arange(emissions.size(0), device=emissions.device)
        maskf = mask.float()  # shape: (batch, seq_len)
        score = start[tags[:, 0]] + emissions[batch, 0, tags[:, 0]]  # shape: (batch,)
        for t in range(1, emissions.size(1)):
            step = trans[tags[:, t - 1], tags[:, t]] + emissions[batch, t, tags[:, t]]
            score = score + step * maskf[:, t]
        last = tags[batch, mask.sum(1) - 1]  # shape: (batch,)
        return score + self.end_transitions[last]

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        start, trans = self.start_transitions, self.transitions
        alpha = start + emissions[:, 0]  # shape: (batch, num_tags)
        for t in range(1, emissions.size(1)):
            # shape: (batch, num_tags_prev, num_tags_next)
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + self.end_transitions, dim=1)  # shape: (batch,)
