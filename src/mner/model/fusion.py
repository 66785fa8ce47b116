"""The paper's modality fusion (§3.4, Eq. 2–14), as layers over already-embedded inputs.

Shapes: ``d`` is the model width; the text X (B, T, d) are the query tokens; the memory W = X ∪ K ∪ A
(B, L, d) holds the text, the knowledge words, the attribute vector (and, as an image-derived text
channel, caption words); the image I (B, N, d) holds the projected regions.

Choices where the paper is vague (written here so they can be measured against the alternatives):

- The queries are BiLSTM states, not raw word-char embeddings: the paper's own text-only row is a
  BiLSTM-CRF, and contextual queries make the alignment scores depend on the sentence.
- Eq. 7 asks for a visual attention per (query, memory item, region), O(T·L·N·d) memory — about 1 GB a
  batch here. We guide the visual attention by one vector per query instead: the alignment scores a_s
  pooled over the memory with their own feature-wise softmax (Eq. 4–5 applied to a_s). Eq. 10–11 then
  gate each a_s(q, i) with that query's visual context C_v(q).
- A post without an image gets C_v = 0 *and* its gate G forced to 0, so F_r = a_s exactly: the model is
  told "no image" by a mask, it never sees a zero vector passed off as an image.
"""

from __future__ import annotations

import torch
from torch import nn

_NEG = -1e4  # masked logits: exp() underflows to 0 in float32, no NaN when a row is fully masked


def masked_feature_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over ``dim`` for every feature separately (Eq. 4), masked positions get probability 0.

    Args:
        scores: (..., L, d) feature-wise scores.
        mask: bool, broadcastable to scores without its last dimension, True where an item is real.
    """
    logits = scores.masked_fill(~mask.unsqueeze(-1), _NEG)
    return torch.softmax(logits, dim=dim) * mask.unsqueeze(-1)


class FeatureWiseAlignment(nn.Module):
    """Eq. 3 / Eq. 6: h'(w_i, q) = W_t σ(w_i W_x + q W_q), a d-vector per (query, item) pair."""

    def __init__(self, d: int):
        super().__init__()
        self.w_x = nn.Linear(d, d, bias=False)
        self.w_q = nn.Linear(d, d)
        self.w_t = nn.Linear(d, d, bias=False)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        # queries: (B, T, d), memory: (B, L, d)
        mixed = self.w_x(memory).unsqueeze(1) + self.w_q(queries).unsqueeze(2)  # shape: (B, T, L, d)
        return self.w_t(torch.tanh(mixed))  # shape: (B, T, L, d)


class GuidedVisualAttention(nn.Module):
    """Eq. 7–9: a_v(g, I_j) = W_v σ(g W_s + I_j W_i), softmax over regions, C_v = Σ_j P_j ⊙ I_j."""

    def __init__(self, d: int):
        super().__init__()
        self.w_s = nn.Linear(d, d)
        self.w_i = nn.Linear(d, d, bias=False)
        self.w_v = nn.Linear(d, d, bias=False)

    def forward(self, guide: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        # guide: (B, T, d), regions: (B, N, d)
        a_v = self.w_v(
            torch.tanh(self.w_s(guide).unsqueeze(2) + self.w_i(regions).unsqueeze(1))
        )  # (B, T, N, d)
        p = torch.softmax(a_v, dim=2)  # Eq. 8, over the N regions, per feature
        return (p * regions.unsqueeze(1)).sum(dim=2)  # shape: (B, T, inner), Eq. 9


class Gate(nn.Module):
    """Eq. 10–11 and 13–14: G = σ(W_1 a + W_2 b + bias), out = G ⊙ a + (1 − G) ⊙ b."""

    def __init__(self, d: int):
        super().__init__()
        self.w_1 = nn.Linear(d, d)
        self.w_2 = nn.Linear(d, d, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor, allow: torch.Tensor | None = None) -> torch.Tensor:
        """``allow`` (bool, broadcastable to G) forces G = 0 where False, so the output is exactly ``b``."""
        g = torch.sigmoid(self.w_1(a) + self.w_2(b))
        if allow is not None:
            g = g * allow.to(g.dtype)
        return g * a + (1 - g) * b


class ModalityFusion(nn.Module):
    """Text queries × memory (text, knowledge, attributes, caption) × image regions → fused token vectors.

    ``d`` is the width of the queries and of the output; ``inner`` (default ``d``) the width of the memory,
    the regions and the attention. With ``inner < d`` the queries are projected down for Eq. 6 and the
    context C(q) back up for Eq. 13–14: the (B, T, L, ·) tensors of Eq. 6–12, which dominate the cost,
    shrink by d / inner.
    """

    def __init__(self, d: int, inner: int | None = None):
        super().__init__()
        inner = inner or d
        self.query_down = nn.Linear(d, inner) if inner != d else nn.Identity()
        self.context_up = nn.Linear(inner, d) if inner != d else nn.Identity()
        self.align = FeatureWiseAlignment(inner)
        self.visual = GuidedVisualAttention(inner)
        self.visual_gate = Gate(inner)
        self.output_gate = Gate(d)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        regions: torch.Tensor | None = None,
        has_image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fused representation O (B, T, d) for every text token (Eq. 14).

        Args:
            x: (B, T, d) text token vectors (the queries).
            memory: (B, L, inner) items the queries attend to; memory_mask (B, L) bool.
            regions: (B, N, inner) projected image regions, or None when the image channel is off.
            has_image: (B,) bool; posts without an image get no visual context.
        """
        a_s = self.align(self.query_down(x), memory)  # shape: (B, T, L, inner), Eq. 6
        mask = memory_mask.unsqueeze(1)  # shape: (B, 1, L)
        if regions is not None:
            if has_image is None:
                raise ValueError("expected has_image (B,) with regions")
            p_s = masked_feature_softmax(a_s, mask, dim=2)
            guide = (p_s * a_s).sum(dim=2)  # shape: (B, T, inner): a_s pooled by its own attention
            c_v = self.visual(guide, regions)  # shape: (B, T, inner)
            c_v = c_v * has_image.view(-1, 1, 1).to(c_v.dtype)
            allow = has_image.view(-1, 1, 1, 1)
            f_r = self.visual_gate(c_v.unsqueeze(2).expand_as(a_s), a_s, allow)  # shape: (B, T, L, d), Eq. 11
        else:
            f_r = a_s
        p = masked_feature_softmax(f_r, mask, dim=2)  # Eq. 4 over the memory items
        context = (p * memory.unsqueeze(1)).sum(dim=2)  # shape: (B, T, inner), Eq. 12
        return self.output_gate(self.context_up(context), x)  # shape: (B, T, d), Eq. 13–14
