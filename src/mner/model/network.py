"""The tagging network: a text encoder → [the paper's fusion of the context and image channels] → emissions
→ a BIO-constrained CRF.

The paper's text baseline is the GloVe BiLSTM encoder with no fusion (a BiLSTM-CRF). Context channels
(caption, knowledge) reach the tagger either through the fusion (``mner.model.fusion``, Eq. 2–14: the words are
memory items) or, with ``words_after_post``, inside the encoder's input after the post; emissions, the CRF,
the loss and decoding cover the post's own tokens only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from mner.config import ModelConfig
from mner.inputs.batching import ImageInputs, TaggingBatch
from mner.model.crf import CRF
from mner.model.encoders import build_encoder


class TaggingNetwork(nn.Module):
    """Encoder → [fusion] → emissions → CRF.

    ``pretrained=False`` skips reading a transformer's pretrained weights (they are loaded after)."""

    def __init__(self, config: ModelConfig, pretrained: bool = True):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config, pretrained)
        in_dim, out_dim = self.encoder.embed_dim, self.encoder.out_dim
        self.dropout = nn.Dropout(config.dropout)
        inner = config.fusion_dim or 2 * config.hidden
        if config.fusion:
            from mner.model.fusion import ModalityFusion

            # Context words are embedded like the text, then projected to the fusion's width.
            self.context_proj = nn.Linear(in_dim, inner)
            self.fusion = ModalityFusion(out_dim, inner)
        if "attributes" in config.channels:
            # "a two-layer fully connected network" over the probability-weighted attribute embeddings
            self.attribute_fc = nn.Sequential(nn.Linear(in_dim, inner), nn.Tanh(), nn.Linear(inner, inner))
        if "caption" in config.memory_channels and config.caption_mode == "attribute":
            # the caption's words treated like attribute words: averaged, through their own two layers
            self.caption_fc = nn.Sequential(nn.Linear(in_dim, inner), nn.Tanh(), nn.Linear(inner, inner))
        if "image" in config.channels:
            self.region_proj = nn.Linear(config.image_dim, inner)
        self.emit = nn.Linear(out_dim, len(config.tags))
        self.crf = CRF(len(config.tags), config.tags)

    def emissions(self, batch: TaggingBatch) -> torch.Tensor:
        """Per-token tag scores of the post's own tokens, shape (batch, seq_len, num_tags)."""
        h = self.encoder(batch.text, batch.mask.size(1))  # shape: (batch, seq_len, out_dim)
        if self.config.fusion:
            h = self._fuse(h, batch)
        return self.emit(self.dropout(h))  # shape: (batch, seq_len, num_tags)

    def _fuse(self, h: torch.Tensor, batch: TaggingBatch) -> torch.Tensor:
        """Eq. 2–14 with the memory X ∪ context words (text queries h: (batch, seq_len, out_dim)).

        Memory items are ``inner`` = fusion_dim wide."""
        memory, masks = [self.fusion.query_down(h)], [batch.mask]
        for channel in self.config.memory_channels:
            ctx = batch.memory[channel]
            emb = self.dropout(self.encoder.embed(ctx))  # shape: (batch, ctx_len, in_dim)
            if channel == "caption" and self.config.caption_mode == "attribute":
                weights = ctx.mask.unsqueeze(-1).to(emb.dtype)
                mean = (emb * weights).sum(1) / weights.sum(1).clamp(min=1)  # shape: (batch, in_dim)
                memory.append(self.caption_fc(mean).unsqueeze(1))  # shape: (batch, 1, inner)
                masks.append(ctx.mask.any(1, keepdim=True))
            else:
                memory.append(self.context_proj(emb))  # shape: (batch, ctx_len, inner)
                masks.append(ctx.mask)
        regions = has_image = None
        if batch.image is not None:
            has_image = batch.image.has_image
            if "attributes" in self.config.channels:
                memory.append(self._attribute_vector(batch.image).unsqueeze(1))  # shape: (batch, 1, inner)
                masks.append(has_image.unsqueeze(1))
            if "image" in self.config.channels:
                regions = self.region_proj(self.dropout(batch.image.regions))  # shape: (batch, N, inner)
        return self.fusion(h, torch.cat(memory, dim=1), torch.cat(masks, dim=1), regions, has_image)

    def _attribute_vector(self, image: ImageInputs) -> torch.Tensor:
        """The probability-weighted average of the top-k attribute embeddings through two layers."""
        words = image.attribute_words
        emb = self.encoder.embed(words)  # shape: (batch*top_k, label_len, in_dim)
        mask = words.mask.unsqueeze(-1).to(emb.dtype)
        labels = (emb * mask).sum(1) / mask.sum(1).clamp(min=1)  # shape: (batch*top_k, in_dim)
        labels = labels.view(image.attribute_probs.size(0), image.attribute_probs.size(1), -1)
        weights = image.attribute_probs / image.attribute_probs.sum(1, keepdim=True).clamp(min=1e-6)
        return self.attribute_fc((weights.unsqueeze(-1) * labels).sum(1))  # shape: (batch, inner)

    def loss(self, batch: TaggingBatch) -> torch.Tensor:
        """Mean negative log-likelihood of the gold tags."""
        return -self.crf(self.emissions(batch), batch.tags, batch.mask).mean()

    def exportable(self) -> TaggingNetwork:
        """A copy whose encoder computes the same function in operations the ONNX exporter traces."""
        import copy

        out = copy.deepcopy(self)
        out.encoder = self.encoder.exportable()
        return out

    def configure_optimiser(
        self, lr: float, encoder_lr: float, weight_decay: float = 0.0, layer_decay: float = 1.0
    ) -> torch.optim.Adam:
        """Adam; a pretrained encoder's weights in their own group at ``encoder_lr``, the rest at ``lr``.

        ``layer_decay`` < 1 gives each transformer depth its own group: the top layer at ``encoder_lr``, each one
        below it ``layer_decay`` times the one above, the embeddings lowest (layer-wise learning rates).
        With a transformer, Adam's fused kernel: its step over 22M weights takes ~40 ms instead of ~300 ms on
        one CPU thread. The GloVe encoder keeps the default kernel, so its earlier results reproduce exactly."""
        pretrained = self.encoder.pretrained_parameters()
        ids = {id(p) for p in pretrained}
        groups = [{"params": [p for p in self.parameters() if id(p) not in ids], "lr": lr}]
        if pretrained and layer_decay != 1.0:
            depths = self.encoder.pretrained_depths()
            top = max(depth for depth, _ in depths)
            for depth in sorted({depth for depth, _ in depths}):
                weights = [w for d, w in depths if d == depth]
                groups.append({"params": weights, "lr": encoder_lr * layer_decay ** (top - depth)})
        elif pretrained:
            groups.append({"params": pretrained, "lr": encoder_lr})
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=True if pretrained else None)


class EnsembleNetwork(nn.Module):
    """``config.ensemble`` networks of one config (trained with different seeds) as one model: their mean emissions
    and a CRF holding their mean scores, so that Viterbi finds the best path of the members' mean log-potential.
    Made from trained members by ``mner.model.combine``; it tags, saves and exports like one network."""

    def __init__(self, config: ModelConfig, pretrained: bool = True):
        super().__init__()
        self.config = config
        single = dataclasses.replace(config, ensemble=1)
        self.members = nn.ModuleList(TaggingNetwork(single, pretrained) for _ in range(config.ensemble))
        self.crf = CRF(len(config.tags), config.tags)  # the members' mean scores (combine sets them)

    def emissions(self, batch: TaggingBatch) -> torch.Tensor:
        # shape: (batch, seq_len, num_tags), averaged over the members
        return torch.stack([member.emissions(batch) for member in self.members]).mean(0)

    def exportable(self) -> EnsembleNetwork:
        import copy

        out = copy.deepcopy(self)
        for member in out.members:
            member.encoder = member.encoder.exportable()
        return out


def build_network(config: ModelConfig, pretrained: bool = True) -> TaggingNetwork | EnsembleNetwork:
    """The network a config describes: one, or an ensemble of ``config.ensemble``."""
    return TaggingNetwork(config, pretrained) if config.ensemble == 1 else EnsembleNetwork(config, pretrained)


def as_tensors(batch, device: torch.device | str = "cpu"):
    """The batch (``mner.inputs.batching``) with every NumPy array in it, nested inputs included, as a torch tensor on
    ``device``; the arrays are not copied on the CPU."""
    device = torch.device(device)

    def convert(value):
        if isinstance(value, np.ndarray):
            tensor = torch.from_numpy(value)
            return tensor if device.type == "cpu" else tensor.to(device, non_blocking=True)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.replace(
                value,
                **{f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init},
            )
        return value

    return convert(batch)
