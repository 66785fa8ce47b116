"""The tagging network and its config.

Today: the text-only baseline of the paper's Table 2 (BiLSTM-CRF), with word = frozen GloVe + a tuned
offset for frequent training words, a char-CNN over the cased characters (GloVe is lower-case, so case
comes from here and from a word-shape embedding), a BiLSTM, and a BIO-constrained CRF.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mner.crf import CRF, bio_allowed_transitions
from mner.data import Post
from mner.embeddings import SHAPES, WordVectors, word_key, word_shape

CHANNELS = ("text",)


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; saved as ``config.json`` beside the weights."""

    tags: list[str]
    words: list[str]
    chars: list[str]
    word_embeddings: str = "glove-6b-50d"
    word_dim: int = 50
    char_dim: int = 30
    char_filters: int = 50
    char_kernel: int = 3
    shape_dim: int = 10
    hidden: int = 150
    dropout: float = 0.5
    max_word_chars: int = 25
    max_post_tokens: int = 200
    channels: list[str] = field(default_factory=lambda: ["text"])

    def __post_init__(self):
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}: expected some of {list(CHANNELS)}")
        if self.max_post_tokens < 1 or self.max_word_chars < 1:
            raise ValueError("max_post_tokens and max_word_chars must be positive")

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Build from a dict; unknown keys raise at once."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s) {unknown}; expected some of {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def index(self, name: str) -> dict[str, int]:
        """``{item: id}`` for the vocabulary ``name`` ("words", "chars" or "tags"), built once."""
        cache = self.__dict__.setdefault("_indexes", {})
        if name not in cache:
            cache[name] = {item: i for i, item in enumerate(getattr(self, name))}
        return cache[name]


@dataclass
class TextBatch:
    """Padded model inputs for a batch of posts."""

    word_vectors: torch.Tensor  # shape: (batch, seq_len, word_dim), frozen GloVe rows
    word_ids: torch.Tensor      # shape: (batch, seq_len), tuned-vocabulary ids
    char_ids: torch.Tensor      # shape: (batch, seq_len, max_word_chars)
    shape_ids: torch.Tensor     # shape: (batch, seq_len)
    mask: torch.Tensor          # shape: (batch, seq_len), bool
    tags: torch.Tensor | None   # shape: (batch, seq_len), or None at prediction time


def encode_batch(posts: Sequence[Post], config: ModelConfig, vectors: WordVectors,
                 with_tags: bool = False) -> TextBatch:
    """Turn posts (each at most ``config.max_post_tokens`` long) into padded tensors."""
    batch, seq_len, wlen = len(posts), max(len(p.tokens) for p in posts), config.max_word_chars
    word_index, char_index, tag_index = config.index("words"), config.index("chars"), config.index("tags")
    rows = np.zeros((batch, seq_len), dtype=np.int64)
    found = np.zeros((batch, seq_len), dtype=bool)
    word_ids = np.zeros((batch, seq_len), dtype=np.int64)
    char_ids = np.zeros((batch, seq_len, wlen), dtype=np.int64)
    shape_ids = np.zeros((batch, seq_len), dtype=np.int64)
    mask = np.zeros((batch, seq_len), dtype=bool)
    tags = np.zeros((batch, seq_len), dtype=np.int64)
    for b, post in enumerate(posts):
        for t, token in enumerate(post.tokens):
            key = word_key(token)
            row = vectors.index.get(key)
            if row is not None:
                rows[b, t], found[b, t] = row, True
            word_ids[b, t] = word_index.get(key, 1)
            char_ids[b, t, : min(len(token), wlen)] = [char_index.get(c, 1) for c in token[:wlen]]
            shape_ids[b, t] = word_shape(token)
            mask[b, t] = True
            if with_tags:
                tags[b, t] = tag_index[post.tags[t]]
    # Gather only the rows used from the memory-mapped table; words GloVe lacks get zeros here and
    # rely on the tuned vocabulary and the char-CNN.
    word_vectors = np.zeros((batch, seq_len, vectors.dim), dtype=np.float32)
    word_vectors[found] = vectors.vectors[rows[found]]
    return TextBatch(torch.from_numpy(word_vectors), torch.from_numpy(word_ids), torch.from_numpy(char_ids),
                     torch.from_numpy(shape_ids), torch.from_numpy(mask),
                     torch.from_numpy(tags) if with_tags else None)


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


class BiLstmCrfTagger(nn.Module):
    """Word (GloVe + tuned offset) + char-CNN + shape → BiLSTM → emissions → CRF."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tuned = nn.Embedding(len(config.words), config.word_dim, padding_idx=0)
        nn.init.zeros_(self.tuned.weight)  # starts as plain GloVe
        self.chars = CharCNN(len(config.chars), config.char_dim, config.char_filters, config.char_kernel)
        self.shape = nn.Embedding(len(SHAPES), config.shape_dim, padding_idx=0)
        in_dim = config.word_dim + config.char_filters + config.shape_dim
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(in_dim, config.hidden, batch_first=True, bidirectional=True)
        self.emit = nn.Linear(2 * config.hidden, len(config.tags))
        allowed, allowed_start = bio_allowed_transitions(config.tags)
        self.crf = CRF(len(config.tags), allowed, allowed_start)

    def emissions(self, batch: TextBatch) -> torch.Tensor:
        """Per-token tag scores, shape (batch, seq_len, num_tags)."""
        words = batch.word_vectors + self.tuned(batch.word_ids)  # shape: (batch, seq_len, word_dim)
        x = torch.cat([words, self.chars(batch.char_ids), self.shape(batch.shape_ids)], dim=-1)
        lengths = batch.mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(x), lengths, batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.size(1))
        return self.emit(self.dropout(h))  # shape: (batch, seq_len, num_tags)

    def loss(self, batch: TextBatch) -> torch.Tensor:
        """Mean negative log-likelihood of the gold tags."""
        return -self.crf(self.emissions(batch), batch.tags, batch.mask).mean()

    def decode(self, batch: TextBatch) -> list[list[str]]:
        """Best BIO tag sequence per post."""
        paths = self.crf.decode(self.emissions(batch), batch.mask)
        return [[self.config.tags[i] for i in path] for path in paths]
