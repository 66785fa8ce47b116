"""The tagging network and its config.

The paper's text baseline (BiLSTM-CRF): word = frozen GloVe + a tuned offset for frequent training words,
a char-CNN over the cased characters (GloVe is lower-case, so case comes from here and from a word-shape
embedding), a BiLSTM, and a BIO-constrained CRF. ``encoder = "minilm"`` puts a fine-tuned transformer
(mner.transformer) in place of GloVe and the BiLSTM; the char-CNN and shapes stay, for case.

Context channels (caption, knowledge) reach the tagger either through the paper's fusion (mner.fusion) or,
with ``context_as_text``, as more words after the post in the encoder's input: the post's tokens then read
them, but emissions, the CRF, the loss and decoding cover the post's own tokens only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from mner.config import build_strict
from mner.crf import CRF, bio_allowed_transitions
from mner.data import Post
from mner.embeddings import SHAPES, WordVectors, word_key, word_shape
from mner.transformer import ENCODERS

if TYPE_CHECKING:
    from mner.transformer import WordPieces

CHANNELS = ("text", "caption", "knowledge", "attributes", "image")
CONTEXT_CHANNELS = ("caption", "knowledge")  # word sequences a post carries besides its text
IMAGE_CHANNELS = ("attributes", "image")  # from the post's image features (mner.vision)
CAPTION_MODES = ("words", "attribute")
SEPARATOR = "[SEP]"  # between the post and each context channel's words, with context as text


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
    fusion: bool = False
    max_context_tokens: int = 40
    fusion_dim: int | None = None  # width of the fusion's memory and attention; None = 2·hidden
    caption_mode: str = "words"  # "words": each caption word is a memory item; "attribute": one item, as A
    image_backbone: str = "lite0"  # the mner.vision encoder whose features the image channels expect
    image_dim: int = 1280
    encoder: str = "bilstm"  # "bilstm" (GloVe + BiLSTM) or a fine-tuned transformer from mner.transformer.ENCODERS
    context_as_text: bool = False  # caption/knowledge words follow the post in the encoder input, not the fusion
    encoder_lstm: bool = False  # a transformer encoder: a BiLSTM (``hidden`` wide) over its states + char-CNN + shape

    def __post_init__(self):
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}: expected some of {list(CHANNELS)}")
        if "text" not in self.channels:
            raise ValueError("the 'text' channel cannot be switched off")
        if self.encoder != "bilstm" and self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}: expected one of {['bilstm', *ENCODERS]}")
        if self.context_as_text and not self.context_channels:
            raise ValueError(f"context_as_text needs a context channel: some of {list(CONTEXT_CHANNELS)}")
        needs_fusion = [c for c in self.channels if c != "text" and c not in self.text_context_channels]
        if needs_fusion and not self.fusion:
            raise ValueError(f"channel(s) {needs_fusion} need fusion = true"
                             + ("" if self.context_as_text else " (or context_as_text = true)"))
        if self.encoder_lstm and self.encoder == "bilstm":
            raise ValueError("encoder_lstm adds a BiLSTM over a transformer encoder: set encoder to one of "
                             f"{list(ENCODERS)}")
        if self.caption_mode not in CAPTION_MODES:
            raise ValueError(f"caption_mode {self.caption_mode!r}: expected one of {list(CAPTION_MODES)}")
        if self.max_post_tokens < 1 or self.max_word_chars < 1:
            raise ValueError("max_post_tokens and max_word_chars must be positive")
        if self.encoder in ENCODERS:
            # every token keeps at least its first piece, beside [CLS] and one [SEP] per segment
            limit = ENCODERS[self.encoder].max_pieces - 2 - len(self.text_context_channels)
            if self.max_post_tokens > limit:
                raise ValueError(f"max_post_tokens {self.max_post_tokens}: encoder {self.encoder!r} takes "
                                 f"at most {limit} tokens per window")

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Build from a dict; unknown keys raise at once."""
        return build_strict(cls, values, "model config")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def context_channels(self) -> list[str]:
        return [c for c in self.channels if c in CONTEXT_CHANNELS]

    @property
    def text_context_channels(self) -> list[str]:
        """Context channels whose words follow the post in the encoder input (context as text)."""
        return self.context_channels if self.context_as_text else []

    @property
    def memory_channels(self) -> list[str]:
        """Context channels whose words are memory items of the fusion."""
        return [] if self.context_as_text else self.context_channels

    def index(self, name: str) -> dict[str, int]:
        """``{item: id}`` for the vocabulary ``name`` ("words", "chars" or "tags"), built once."""
        cache = self.__dict__.setdefault("_indexes", {})
        if name not in cache:
            cache[name] = {item: i for i, item in enumerate(getattr(self, name))}
        return cache[name]


@dataclass
class TokenFeatures:
    """Padded per-token inputs of a batch of word sequences."""

    word_vectors: torch.Tensor  # shape: (batch, seq_len, word_dim), frozen GloVe rows
    word_ids: torch.Tensor      # shape: (batch, seq_len), tuned-vocabulary ids
    char_ids: torch.Tensor      # shape: (batch, seq_len, max_word_chars)
    shape_ids: torch.Tensor     # shape: (batch, seq_len)
    mask: torch.Tensor          # shape: (batch, seq_len), bool; a post with no words has no True
    pieces: WordPieces | None = None     # transformer inputs (encoder != "bilstm"), context segment included
    separator: torch.Tensor | None = None  # shape: (batch, seq_len), bool; True at SEPARATOR positions


@dataclass
class TextBatch(TokenFeatures):
    """Model inputs for a batch of posts: the text, gold tags, and context word sequences by channel."""

    tags: torch.Tensor | None = None  # shape: (batch, seq_len), or None at prediction time
    context: dict[str, TokenFeatures] = field(default_factory=dict)  # the fusion's context channels
    image: ImageInputs | None = None
    joined: TokenFeatures | None = None  # BiLSTM context as text: post, SEPARATOR, words, ... (post first)


@dataclass
class ImageInputs:
    """A batch's image features; ``has_image`` is False for posts whose image is missing or unreadable."""

    has_image: torch.Tensor          # shape: (batch,), bool
    attribute_words: TokenFeatures   # (batch * top_k) label word sequences
    attribute_probs: torch.Tensor    # shape: (batch, top_k)
    regions: torch.Tensor            # shape: (batch, num_regions, image_dim); zeros where has_image is False


def encode_images(posts: Sequence[Post], images, config: ModelConfig, vectors: WordVectors | None) -> ImageInputs:
    """Look up each post's image features (``images[post.image]``, an ``ImageFeatures`` or None)."""
    found = [images.get(p.image) if (images is not None and p.image is not None) else None for p in posts]
    top_k = max([len(f.attributes) for f in found if f is not None], default=1)
    n_regions = max([f.regions.shape[0] for f in found if f is not None], default=1)
    labels: list[tuple[str, ...]] = []
    probs = torch.zeros(len(posts), top_k)
    regions = torch.zeros(len(posts), n_regions, config.image_dim)
    for b, feats in enumerate(found):
        attributes = list(feats.attributes) if feats is not None else []
        for k in range(top_k):
            label, prob = attributes[k] if k < len(attributes) else ("", 0.0)
            labels.append(tuple(label.split()))
            probs[b, k] = prob
        if feats is not None:
            if feats.regions.shape[1] != config.image_dim:
                raise ValueError(f"image {posts[b].image!r}: expected {config.image_dim}-d regions "
                                 f"({config.image_backbone}), got {feats.regions.shape[1]}")
            regions[b, : feats.regions.shape[0]] = torch.from_numpy(np.asarray(feats.regions, dtype=np.float32))
    has_image = torch.tensor([f is not None for f in found], dtype=torch.bool)
    return ImageInputs(has_image, encode_tokens(labels, config, vectors), probs, regions)


def encode_tokens(sequences: Sequence[Sequence[str]], config: ModelConfig, vectors: WordVectors | None,
                  contexts: Sequence[Sequence[Sequence[str]]] | None = None) -> TokenFeatures:
    """Padded GloVe rows, vocabulary, character and shape ids for word sequences (any may be empty), and
    their word pieces for a transformer encoder, followed by ``contexts[b]`` (word sequences) if given."""
    batch, seq_len, wlen = len(sequences), max(1, *(len(s) for s in sequences)), config.max_word_chars
    word_index, char_index = config.index("words"), config.index("chars")
    rows = np.zeros((batch, seq_len), dtype=np.int64)
    found = np.zeros((batch, seq_len), dtype=bool)
    word_ids = np.zeros((batch, seq_len), dtype=np.int64)
    char_ids = np.zeros((batch, seq_len, wlen), dtype=np.int64)
    shape_ids = np.zeros((batch, seq_len), dtype=np.int64)
    mask = np.zeros((batch, seq_len), dtype=bool)
    for b, tokens in enumerate(sequences):
        for t, token in enumerate(tokens):
            key = word_key(token)
            row = vectors.index.get(key) if vectors is not None else None
            if row is not None:
                rows[b, t], found[b, t] = row, True
            word_ids[b, t] = word_index.get(key, 1)
            char_ids[b, t, : min(len(token), wlen)] = [char_index.get(c, 1) for c in token[:wlen]]
            shape_ids[b, t] = word_shape(token)
            mask[b, t] = True
    # Gather only the rows used from the memory-mapped table; words GloVe lacks get zeros here and
    # rely on the tuned vocabulary and the char-CNN.
    # ``vectors`` is None for a transformer encoder, which reads word pieces instead: no GloVe columns.
    word_vectors = np.zeros((batch, seq_len, vectors.dim if vectors is not None else 0), dtype=np.float32)
    if vectors is not None:
        word_vectors[found] = vectors.vectors[rows[found]]
    pieces = None
    if config.encoder != "bilstm":
        from mner.transformer import encode_pieces

        pieces = encode_pieces(config.encoder, sequences, contexts)
    return TokenFeatures(torch.from_numpy(word_vectors), torch.from_numpy(word_ids), torch.from_numpy(char_ids),
                         torch.from_numpy(shape_ids), torch.from_numpy(mask), pieces)


def encode_joined(posts: Sequence[Sequence[str]], contexts: Sequence[Sequence[Sequence[str]]],
                  config: ModelConfig, vectors: WordVectors | None) -> TokenFeatures:
    """The BiLSTM's context-as-text input: each post's tokens, then SEPARATOR + words per non-empty channel."""
    joined, separators = [], []
    for tokens, channels in zip(posts, contexts, strict=True):
        words, marks = list(tokens), [False] * len(tokens)
        for channel in channels:
            if channel:
                words += [SEPARATOR, *channel]
                marks += [True] + [False] * len(channel)
        joined.append(words)
        separators.append(marks)
    features = encode_tokens(joined, config, vectors)
    features.separator = torch.zeros(features.mask.shape, dtype=torch.bool)
    for b, marks in enumerate(separators):
        features.separator[b, : len(marks)] = torch.tensor(marks, dtype=torch.bool)
    return features


def context_tokens(post: Post, channel: str, limit: int) -> tuple[str, ...]:
    """The words a post carries for a context channel (its caption, its knowledge triples), at most ``limit``."""
    if channel == "caption":
        words = tuple(post.caption.split()) if post.caption else ()
    else:
        words = post.knowledge or ()
    return words[:limit]


def encode_batch(posts: Sequence[Post], config: ModelConfig, vectors: WordVectors | None,
                 with_tags: bool = False, images=None) -> TextBatch:
    """Turn posts (each at most ``config.max_post_tokens`` long) into padded tensors.

    ``images`` maps image ids to ``mner.vision.ImageFeatures`` (a dict or a ``FeatureCache``)."""
    as_text = None
    if config.context_as_text:
        as_text = [[context_tokens(p, c, config.max_context_tokens) for c in config.text_context_channels]
                   for p in posts]
    tokens = [p.tokens for p in posts]
    text = encode_tokens(tokens, config, vectors, as_text if config.encoder != "bilstm" else None)
    tags = None
    if with_tags:
        tag_index = config.index("tags")
        tags = torch.zeros(text.mask.shape, dtype=torch.long)
        for b, post in enumerate(posts):
            tags[b, : len(post.tags)] = torch.tensor([tag_index[t] for t in post.tags])
    context = {c: encode_tokens([context_tokens(p, c, config.max_context_tokens) for p in posts], config, vectors)
               for c in config.memory_channels}
    image = None
    if any(c in IMAGE_CHANNELS for c in config.channels):
        image = encode_images(posts, images, config, vectors)
    joined = None
    if as_text is not None and config.encoder == "bilstm":
        joined = encode_joined(tokens, as_text, config, vectors)
    return TextBatch(**vars(text), tags=tags, context=context, image=image, joined=joined)


def batch_to(batch, device: torch.device | str):
    """The batch with every tensor in it (nested inputs included) on ``device``; the same object on the CPU."""
    device = torch.device(device)
    if device.type == "cpu":
        return batch
    return _moved(batch, device)


def _moved(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _moved(getattr(value, f.name), device)
                                             for f in dataclasses.fields(value) if f.init})
    return value


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
    """Word (GloVe + tuned offset) + char-CNN + shape → BiLSTM → [fusion] → emissions → CRF; with a
    transformer encoder: its first-piece states + char-CNN + shape → [BiLSTM if ``encoder_lstm``] → [fusion]
    → emissions → CRF.

    ``pretrained=False`` skips reading the transformer's pretrained weights (they are loaded after)."""

    def __init__(self, config: ModelConfig, pretrained: bool = True):
        super().__init__()
        self.config = config
        self.encoder = None
        if config.encoder == "bilstm":
            self.tuned = nn.Embedding(len(config.words), config.word_dim, padding_idx=0)
            nn.init.zeros_(self.tuned.weight)  # starts as plain GloVe
            word_dim = config.word_dim
        else:
            from mner.transformer import PieceEncoder

            self.encoder = PieceEncoder(config.encoder, pretrained)
            word_dim = self.encoder.dim
        self.chars = CharCNN(len(config.chars), config.char_dim, config.char_filters, config.char_kernel)
        self.shape = nn.Embedding(len(SHAPES), config.shape_dim, padding_idx=0)
        in_dim = word_dim + config.char_filters + config.shape_dim
        self.dropout = nn.Dropout(config.dropout)
        out_dim = in_dim  # the width of each token's vector before the fusion and the emissions
        if self.encoder is None or config.encoder_lstm:
            self.lstm = nn.LSTM(in_dim, config.hidden, batch_first=True, bidirectional=True)
            out_dim = 2 * config.hidden
            if self.encoder is None and config.context_as_text:
                self.separator = nn.Parameter(0.1 * torch.randn(in_dim))  # the SEPARATOR's embedding
        inner = config.fusion_dim or 2 * config.hidden
        if config.fusion:
            from mner.fusion import ModalityFusion

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
        allowed, allowed_start = bio_allowed_transitions(config.tags)
        self.crf = CRF(len(config.tags), allowed, allowed_start)

    def embed(self, tokens: TokenFeatures) -> torch.Tensor:
        """Word-char embeddings, shape (batch, seq_len, word_dim + char_filters + shape_dim); the words are
        GloVe + tuned offsets, or the transformer's first-piece states (word_dim = its width)."""
        if self.encoder is None:
            words = tokens.word_vectors + self.tuned(tokens.word_ids)  # shape: (batch, seq_len, word_dim)
        else:
            assert tokens.pieces is not None, "a transformer encoder needs word pieces (encode_tokens)"
            words = self.encoder(tokens.pieces)  # shape: (batch, seq_len, encoder dim)
        x = torch.cat([words, self.chars(tokens.char_ids), self.shape(tokens.shape_ids)], dim=-1)
        if tokens.separator is not None:
            x = torch.where(tokens.separator.unsqueeze(-1), self.separator, x)
        return x

    def token_states(self, batch: TextBatch) -> torch.Tensor:
        """Each post token's vector in its sentence (and its context, as text), shape (batch, seq_len, out_dim)."""
        if self.encoder is not None and not self.config.encoder_lstm:
            return self.embed(batch)  # the transformer has read the context segment, if any
        # the BiLSTM reads the joined post + context (BiLSTM encoder), or the transformer's post states
        tokens = batch.joined if batch.joined is not None else batch
        x = self.embed(tokens)
        lengths = tokens.mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(x), lengths, batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.size(1))
        return h[:, : batch.mask.size(1)]  # the post comes first in the joined input: its positions only

    def emissions(self, batch: TextBatch) -> torch.Tensor:
        """Per-token tag scores of the post's own tokens, shape (batch, seq_len, num_tags)."""
        h = self.token_states(batch)
        if self.config.fusion:
            h = self._fuse(h, batch)
        return self.emit(self.dropout(h))  # shape: (batch, seq_len, num_tags)

    def _fuse(self, h: torch.Tensor, batch: TextBatch) -> torch.Tensor:
        """Eq. 2–14 with the memory X ∪ context words (text queries h: (batch, seq_len, out_dim)).

        Memory items are ``inner`` = fusion_dim wide."""
        memory, masks = [self.fusion.query_down(h)], [batch.mask]
        for channel in self.config.memory_channels:
            ctx = batch.context[channel]
            emb = self.dropout(self.embed(ctx))  # shape: (batch, ctx_len, in_dim)
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
        emb = self.embed(words)  # shape: (batch*top_k, label_len, in_dim)
        mask = words.mask.unsqueeze(-1).to(emb.dtype)
        labels = (emb * mask).sum(1) / mask.sum(1).clamp(min=1)  # shape: (batch*top_k, in_dim)
        labels = labels.view(image.attribute_probs.size(0), image.attribute_probs.size(1), -1)
        weights = image.attribute_probs / image.attribute_probs.sum(1, keepdim=True).clamp(min=1e-6)
        return self.attribute_fc((weights.unsqueeze(-1) * labels).sum(1))  # shape: (batch, inner)

    def loss(self, batch: TextBatch) -> torch.Tensor:
        """Mean negative log-likelihood of the gold tags."""
        return -self.crf(self.emissions(batch), batch.tags, batch.mask).mean()

    def decode(self, batch: TextBatch) -> list[list[str]]:
        """Best BIO tag sequence per post."""
        paths = self.crf.decode(self.emissions(batch), batch.mask)
        return [[self.config.tags[i] for i in path] for path in paths]
