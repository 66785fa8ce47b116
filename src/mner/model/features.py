"""Token-feature units: the network modules of the reading units (``mner.channels.readers``), one per unit, each
turning the arrays its unit adds to a batch into a feature per token that the encoder joins to its word
features (as flair stacks embeddings).

A unit's module is built from its config block and the model config, has ``dim`` (its features' width) and
``forward(inputs) -> (batch, seq_len, dim)``; it reads word sequences without its arrays (the fusion's memory
words, the image's attribute labels) as zeros. ``TOKEN_FEATURES`` maps a unit's name to its module class.
"""

from __future__ import annotations

import torch
from torch import nn

from mner.channels.context import ANY_TAGS, NO_CONTEXT, align_tags
from mner.channels.readers import READERS, ContextReadingConfig
from mner.config import ModelConfig
from mner.inputs.batching import WordInputs
from mner.registry import Registry


class ContextFeatures(nn.Module):
    """The context's entity list aligned to the post: an embedding of each token's alignment tag (in a listed
    name or not, B/I, the kind's type) and, with ``kind_vectors``, its listed kind's mean word vector through a
    learned layer (tanh)."""

    def __init__(self, block: ContextReadingConfig, config: ModelConfig):
        super().__init__()
        size = 1 + len(align_tags(block.labels)) - (0 if block.generic_tag else len(ANY_TAGS))
        self.alignment = nn.Embedding(size, block.alignment_dim, padding_idx=NO_CONTEXT)
        self.kinds = nn.Linear(config.word_dim, block.alignment_dim) if block.kind_vectors else None
        self.dim = block.alignment_dim * (2 if block.kind_vectors else 1)

    def forward(self, inputs: WordInputs) -> torch.Tensor:
        ids = inputs.alignment_ids  # shape: (batch, seq_len); NO_CONTEXT where none
        parts = [self.alignment(ids if ids is not None else torch.zeros_like(inputs.shape_ids))]
        if self.kinds is not None:
            kinds = inputs.kind_vectors  # shape: (batch, seq_len, word_dim); zeros where no kind
            if kinds is None:
                kinds = torch.zeros(
                    *inputs.shape_ids.shape, self.kinds.in_features, device=inputs.shape_ids.device
                )
            parts.append(torch.tanh(self.kinds(kinds)))
        return torch.cat(parts, dim=-1)  # shape: (batch, seq_len, dim)


TOKEN_FEATURES: Registry[type[nn.Module]] = Registry(
    "token-feature unit"
)  # a reading unit's name → its module
TOKEN_FEATURES.register("context", ContextFeatures)


def build_token_features(config: ModelConfig) -> nn.ModuleDict:
    """The modules of the reading units the config enables, by unit name (registration order)."""
    return nn.ModuleDict(
        {
            name: TOKEN_FEATURES[name](getattr(config, name), config)
            for name, unit in READERS.items()
            if unit.enabled(getattr(config, name))
        }
    )


def migrate_feature_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved before model folder format 4 (a unit's weights held by the encoder itself:
    ``encoder.alignment.weight``) under today's names (``encoder.token_features.context.alignment.weight``)."""
    moved = {
        f"encoder.{old}.": f"encoder.token_features.{name}.{old}."
        for name, unit in READERS.items()
        for old in unit.old_weights
    }
    out = {}
    for key, value in state.items():
        for old, new in moved.items():
            at = key.find(old)
            if at == 0 or (at > 0 and key[at - 1] == "."):  # "members.0.encoder.alignment.weight" too
                key = key[:at] + new + key[at + len(old) :]
                break
        out[key] = value
    return out
