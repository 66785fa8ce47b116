"""The text encoders: what turns a post's tokens into one vector each, behind one interface.

- ``GloveBiLstmEncoder``: frozen GloVe + a tuned offset for frequent training words, a char-CNN over the
  cased characters and a word-shape embedding (GloVe is lower-case: case comes from these), then a BiLSTM.
  With context as text, it reads the post joined with its context words (a learned SEPARATOR between).
- ``TransformerEncoder``: a fine-tuned pretrained transformer (each token takes its first word piece's
  state; the context follows the post as a second segment), joined with the same char-CNN and shapes,
  optionally followed by the same BiLSTM (``encoder_lstm``).

Every encoder has ``embed`` (word-char embeddings of any word sequences: the fusion's context words, the
image's attribute labels), ``forward`` (states of the post's own tokens), ``embed_dim`` and ``out_dim``, and
``pretrained_parameters`` (what is fine-tuned at the encoder's own learning rate). ``ENCODER_KINDS`` maps a
config's ``EncoderSpec.kind`` to the encoder; ``mner.inputs.batching.INPUT_BUILDERS`` to the inputs it reads.
"""

from __future__ import annotations

import torch
from torch import nn

from mner.config import ModelConfig
from mner.inputs.batching import (
    GloveInputs,
    PieceInputs,
    WordInputs,
)
from mner.inputs.embeddings import SHAPES
from mner.model.features import build_token_features
from mner.registry import Registry


class CharCNN(nn.Module):
    """Character embeddings → 1-D convolution (kernel 3) → max over the word's characters."""

    def __init__(self, num_chars: int, char_dim: int, filters: int, kernel: int):
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, kernel, padding=kernel // 2)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, seq_len, wlen = char_ids.shape
        x = self.embed(char_ids.view(-1, wlen)).transpose(1, 2)  # shape: (batch*seq_len, char_dim, wlen)
        h = self.conv(x)  # shape: (batch*seq_len, filters, wlen)
        h = h.masked_fill((char_ids.view(-1, wlen) == 0).unsqueeze(1), -1e4)
        h = h.max(dim=2).values.clamp(min=-1e3)  # shape: (batch*seq_len, filters); all-pad words → finite
        return h.view(batch, seq_len, -1)


class TextEncoder(nn.Module):
    """The interface the network sees; subclasses set ``embed_dim`` and ``out_dim``."""

    embed_dim: int  # width of ``embed``'s vectors
    out_dim: int  # width of ``forward``'s states

    def embed(self, inputs: WordInputs) -> torch.Tensor:
        """Word-char embeddings of word sequences, shape (batch, seq_len, embed_dim)."""
        raise NotImplementedError

    def _token_features(self, words: torch.Tensor, inputs: WordInputs) -> torch.Tensor:
        """``words`` (batch, seq_len, d) joined with the char-CNN, the word shape and each reading unit's token
        features (``mner.model.features``: the context aligned to the post; zeros for sequences that have none)."""
        parts = [words] if words is not None else []
        if self.chars is not None:
            parts.append(self.chars(inputs.char_ids))
        parts.append(self.shape(inputs.shape_ids))
        # each unit's shape: (batch, seq_len, unit.dim)
        parts += [unit(inputs) for unit in self.token_features.values()]
        return torch.cat(parts, dim=-1)

    def _add_token_features(self, config: ModelConfig) -> None:
        """The reading units' modules the config enables (``mner.model.features``); widen ``embed_dim``."""
        self.token_features = build_token_features(config)
        self.embed_dim += sum(unit.dim for unit in self.token_features.values())

    def forward(self, inputs: WordInputs, post_len: int) -> torch.Tensor:
        """States of the posts' own tokens, shape (batch, post_len, out_dim) (context positions dropped)."""
        raise NotImplementedError

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Weights fine-tuned from a pretrained model (their own learning rate); none by default."""
        return []

    def pretrained_depths(self) -> list[tuple[int, nn.Parameter]]:
        """(depth, weight) of each pretrained weight, for layer-wise learning rates; one depth by default."""
        return [(0, weight) for weight in self.pretrained_parameters()]

    def exportable(self) -> TextEncoder:
        """A copy of this encoder that computes the same function in operations the ONNX exporter traces: its
        BiLSTM (if any) runs unpacked, each sequence reversed within its own length (``UnpackedBiLstm``)."""
        import copy

        out = copy.deepcopy(self)
        if getattr(out, "lstm", None) is not None:
            out.unpacked = UnpackedBiLstm(out.lstm)
        return out

    def _bilstm(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The BiLSTM over dropped-out ``x`` (batch, seq_len, embed_dim), shape (batch, seq_len, 2·hidden)."""
        if getattr(self, "unpacked", None) is not None:
            return self.unpacked(self.dropout(x), mask)
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.dropout(x), lengths, batch_first=True, enforce_sorted=False
        )
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.size(1))
        return h


class UnpackedBiLstm(nn.Module):
    """A bidirectional ``nn.LSTM`` as two one-way LSTMs: the backward one reads each sequence reversed within
    its own length (what packing does), so padding never reaches a real position. The function of the packed
    BiLSTM, in operations ONNX has (``TextEncoder.exportable``)."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        size, hidden = lstm.input_size, lstm.hidden_size
        self.forward_lstm = nn.LSTM(size, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(size, hidden, batch_first=True)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(self.forward_lstm, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l0").data)
            getattr(self.backward_lstm, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l0_reverse").data)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1, keepdim=True)  # shape: (batch, 1)
        steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # shape: (1, seq_len)
        order = torch.where(steps < lengths, lengths - 1 - steps, steps)  # each sequence reversed in place
        index = order.unsqueeze(-1).expand(-1, -1, x.size(2))
        forward, _ = self.forward_lstm(x)  # shape: (batch, seq_len, hidden)
        backward, _ = self.backward_lstm(x.gather(1, index))
        backward = backward.gather(1, order.unsqueeze(-1).expand(-1, -1, backward.size(2)))
        return torch.cat([forward, backward], dim=-1) * mask.unsqueeze(-1).to(x.dtype)


class GloveBiLstmEncoder(TextEncoder):
    """GloVe + tuned offsets + char-CNN + shape [+ a frozen encoder's features] → BiLSTM."""

    def __init__(self, config: ModelConfig, pretrained: bool = True):
        super().__init__()
        self.tuned = None
        if config.glove:
            self.tuned = nn.Embedding(len(config.words), config.word_dim, padding_idx=0)
            nn.init.zeros_(self.tuned.weight)  # starts as plain GloVe
        self.chars = None
        if config.char_cnn:
            self.chars = CharCNN(len(config.chars), config.char_dim, config.char_filters, config.char_kernel)
        self.shape = nn.Embedding(len(SHAPES), config.shape_dim, padding_idx=0)
        self.embed_dim = (
            config.word_dim * config.glove + config.char_filters * config.char_cnn + config.shape_dim
        )
        self.features = None
        if config.features is not None:
            self.features = FrozenFeatureMix(config)
            self.embed_dim += self.features.dim
        self._add_token_features(config)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(self.embed_dim, config.hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * config.hidden
        if config.words_after_post:
            self.separator = nn.Parameter(0.1 * torch.randn(self.embed_dim))  # the SEPARATOR's embedding

    def embed(self, inputs: GloveInputs) -> torch.Tensor:
        words = None
        if self.tuned is not None:
            words = inputs.word_vectors + self.tuned(inputs.word_ids)  # shape: (batch, seq_len, word_dim)
        x = self._token_features(words, inputs)
        if self.features is not None:
            x = torch.cat([x, self.features(inputs.features, inputs.shape_ids)], dim=-1)
        if inputs.separator is not None:
            x = torch.where(inputs.separator.unsqueeze(-1), self.separator, x)
        return x

    def forward(self, inputs: GloveInputs, post_len: int) -> torch.Tensor:
        h = self._bilstm(self.embed(inputs), inputs.mask)
        return h[:, :post_len]  # the post comes first in a joined input: its positions only


class FrozenFeatureMix(nn.Module):
    """A frozen encoder's last four layers of each token (``mner.inputs.frozen``) → one vector: their mean, or
    a learned softmax-weighted sum times a learned scale (``feature_mix = "mix"``), through a learned linear
    layer ``feature_dim`` wide where the config has one; zeros where a sequence has none (a fusion's memory
    words, a context after the post)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        from mner.inputs.frozen import FROZEN_ENCODERS, LAYERS

        self.dim, self.layers = FROZEN_ENCODERS[config.features].dim, LAYERS
        self.mix = None
        if config.feature_mix == "mix":
            self.mix = nn.Parameter(torch.zeros(LAYERS))
            self.scale = nn.Parameter(torch.ones(()))
        self.project = None
        if config.feature_dim is not None:
            self.project = nn.Linear(self.dim, config.feature_dim)
            self.dim = config.feature_dim

    def forward(self, features: torch.Tensor | None, shape_ids: torch.Tensor) -> torch.Tensor:
        if features is None:
            return torch.zeros(*shape_ids.shape, self.dim, device=shape_ids.device)
        if self.mix is None:
            mixed = features.mean(2)
        else:
            mixed = self.scale * (features * torch.softmax(self.mix, 0).view(1, 1, -1, 1)).sum(2)
        return mixed if self.project is None else self.project(mixed)


class TransformerEncoder(TextEncoder):
    """A fine-tuned transformer's first-piece states + char-CNN + shape [→ BiLSTM]."""

    def __init__(self, config: ModelConfig, pretrained: bool = True):
        super().__init__()
        from mner.model.transformer import PretrainedTransformer

        self.transformer = PretrainedTransformer(config.encoder, pretrained)
        self.chars = CharCNN(len(config.chars), config.char_dim, config.char_filters, config.char_kernel)
        self.shape = nn.Embedding(len(SHAPES), config.shape_dim, padding_idx=0)
        self.embed_dim = self.transformer.dim + config.char_filters + config.shape_dim
        self._add_token_features(config)
        self.dropout = nn.Dropout(config.dropout)
        self.out_dim = self.embed_dim
        self.lstm = None
        if config.encoder_lstm:
            self.lstm = nn.LSTM(self.embed_dim, config.hidden, batch_first=True, bidirectional=True)
            self.out_dim = 2 * config.hidden

    def embed(self, inputs: PieceInputs) -> torch.Tensor:
        words = self.transformer(inputs.pieces)  # shape: (batch, seq_len, transformer dim)
        return self._token_features(words, inputs)

    def forward(self, inputs: PieceInputs, post_len: int) -> torch.Tensor:
        x = self.embed(inputs)  # the transformer has read the context segment, if any
        return x if self.lstm is None else self._bilstm(x, inputs.mask)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return list(self.transformer.parameters())

    def pretrained_depths(self) -> list[tuple[int, nn.Parameter]]:
        """(depth, weight) of each pretrained weight: 0 for the embeddings, i + 1 for layer i, the number of layers
        + 1 for what follows the last one; layer-wise learning rates scale by depth."""
        layers = self.transformer.model.config.num_hidden_layers
        out = []
        for name, weight in self.transformer.named_parameters():
            parts = name.split(".")
            if "embeddings" in parts:
                depth = 0
            elif "layer" in parts and parts[parts.index("layer") + 1].isdigit():
                depth = int(parts[parts.index("layer") + 1]) + 1
            else:
                depth = layers + 1
            out.append((depth, weight))
        return out


ENCODER_KINDS: Registry[type[TextEncoder]] = Registry("encoder kind")  # EncoderSpec.kind → its module
ENCODER_KINDS.register("glove", GloveBiLstmEncoder)
ENCODER_KINDS.register("transformer", TransformerEncoder)


def build_encoder(config: ModelConfig, pretrained: bool = True) -> TextEncoder:
    """The text encoder a config names; ``pretrained=False`` leaves a transformer's weights to be loaded."""
    return ENCODER_KINDS[config.encoder_spec.kind](config, pretrained)


def migrate_v1_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved by mner before format 2 (encoder parts at the top level) under today's names."""
    moved = ("tuned.", "chars.", "shape.", "lstm.")
    out = {}
    for key, value in state.items():
        if key.startswith("encoder."):  # the transformer itself
            key = "encoder.transformer." + key.removeprefix("encoder.")
        elif key.startswith(moved) or key == "separator":
            key = "encoder." + key
        out[key] = value
    return out
