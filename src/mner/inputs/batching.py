"""Posts → padded tensors: what a batch of posts becomes before the network reads it.

Each text encoder kind has an input builder (``GloveInputBuilder``, ``PieceInputBuilder``) that turns word
sequences into its inputs; ``BatchBuilder`` uses one to make a ``TaggingBatch``: the post (with its context
words after it, for a model reading context as text), the post's mask and gold tags, the fusion's context
channels and the image channels. Nothing here has weights, and nothing here needs torch: a batch is NumPy
arrays (``mner.model.network.as_tensors`` makes torch tensors of them; the ONNX runtime reads them as they are).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mner.channels.readers import READERS
from mner.channels.spec import CHANNELS
from mner.config import ModelConfig
from mner.data import Post
from mner.inputs.embeddings import load_word_vectors, word_key, word_shape
from mner.registry import Registry

if TYPE_CHECKING:
    from mner.inputs.pieces import WordPieces
    from mner.vision import ImageFeatures

SEPARATOR = "[SEP]"  # between the post and each context channel's words, with context as text


@dataclass
class WordInputs:
    """Per-token inputs every encoder reads (case comes from these: characters and word shapes)."""

    char_ids: np.ndarray  # shape: (batch, seq_len, max_word_chars)
    shape_ids: np.ndarray  # shape: (batch, seq_len)
    mask: np.ndarray  # shape: (batch, seq_len), bool; a sequence with no words has no True
    # The arrays of the reading units (mner.channels.readers: each unit's ``arrays`` and ``fill``), fields here
    # because their paths are the ONNX contract (``batch_layout``). None: the model has no such unit.
    # shape: (batch, seq_len); the context's entities aligned to the post (mner.channels.context), 0 elsewhere
    alignment_ids: np.ndarray | None = None
    # shape: (batch, seq_len, word_dim); the mean word vector of the listed kind of the entity a token is in, 0
    # elsewhere (the context reading's kind_vectors)
    kind_vectors: np.ndarray | None = None


@dataclass
class GloveInputs(WordInputs):
    """Inputs of the GloVe encoder: frozen vectors and tuned-vocabulary ids besides characters and shapes."""

    word_vectors: np.ndarray = None  # shape: (batch, seq_len, word_dim), frozen GloVe rows
    word_ids: np.ndarray = None  # shape: (batch, seq_len), tuned-vocabulary ids
    separator: np.ndarray | None = None  # shape: (batch, seq_len), bool; True at SEPARATOR positions
    # shape: (batch, seq_len, 4, features dim); a frozen encoder's last four layers of each post token
    # (ModelConfig.features; mner.inputs.frozen), zeros after the post; None: unused
    features: np.ndarray | None = None


@dataclass
class PieceInputs(WordInputs):
    """Inputs of a transformer encoder: word pieces (with the context segment, if any) besides characters."""

    pieces: WordPieces = None


@dataclass
class ImageInputs:
    """A batch's image features; ``has_image`` is False for posts whose image is missing or unreadable."""

    has_image: np.ndarray  # shape: (batch,), bool
    attribute_words: WordInputs  # (batch * top_k) label word sequences
    attribute_probs: np.ndarray  # shape: (batch, top_k)
    regions: np.ndarray  # shape: (batch, num_regions, image_dim); zeros where has_image is False


@dataclass
class TaggingBatch:
    """Everything the network reads for a batch of posts."""

    text: WordInputs  # the post, followed by its context words when the model reads context as text
    mask: np.ndarray  # shape: (batch, seq_len), bool: the post's own tokens (what the CRF tags)
    tags: np.ndarray | None = None  # shape: (batch, seq_len); None at prediction time
    memory: dict[str, WordInputs] = field(default_factory=dict)  # the fusion's context channels
    image: ImageInputs | None = None


class InputBuilder(Protocol):
    """Turns word sequences into one encoder kind's inputs."""

    def words(self, sequences: Sequence[Sequence[str]]) -> WordInputs:
        """Inputs of word sequences (any may be empty), each on its own."""

    def post(
        self,
        tokens: Sequence[Sequence[str]],
        contexts: Sequence[Sequence[Sequence[str]]] | None,
        seconds: Sequence[Sequence[str] | None] | None = None,
    ) -> WordInputs:
        """Inputs of posts, each followed by its context channels' words (``contexts[b]``) if given; ``seconds``:
        each post's second segment of the frozen encoder (``ModelConfig.feature_context``), if given."""


def char_features(sequences: Sequence[Sequence[str]], config: ModelConfig) -> tuple[np.ndarray, ...]:
    """(char_ids, shape_ids, mask) of word sequences, padded to the longest."""
    batch, seq_len, wlen = len(sequences), max(1, *(len(s) for s in sequences)), config.max_word_chars
    char_index = config.index("chars")
    char_ids = np.zeros((batch, seq_len, wlen), dtype=np.int64)
    shape_ids = np.zeros((batch, seq_len), dtype=np.int64)
    mask = np.zeros((batch, seq_len), dtype=bool)
    for b, tokens in enumerate(sequences):
        for t, token in enumerate(tokens):
            char_ids[b, t, : min(len(token), wlen)] = [char_index.get(c, 1) for c in token[:wlen]]
            shape_ids[b, t] = word_shape(token)
            mask[b, t] = True
    return char_ids, shape_ids, mask


class GloveInputBuilder:
    """Inputs of the GloVe encoder; context as text is joined after the post: post, SEPARATOR, words, ...
    With ``features``, each post token's frozen-encoder features too (``mner.inputs.frozen``: ``threads`` for
    its ONNX session; ``use_features`` picks the fp32 graph and the feature cache, as training does)."""

    def __init__(self, config: ModelConfig, threads: int = 1):
        self.config = config
        self.vectors = load_word_vectors(config.word_embeddings)
        self.frozen = None
        if config.features is not None:
            self.use_features(threads)

    def use_features(self, threads: int = 1, quantized: bool | None = None, cached: bool = False) -> None:
        """Read the frozen encoder's features through the graph the model was trained on (``features_graph``;
        ``quantized`` True/False: int8/fp32 instead), kept in the feature cache or not (``cached``)."""
        from mner.inputs.frozen import check_record, feature_source

        if quantized is None:
            quantized = self.config.features_graph == "int8"
        self.frozen = feature_source(self.config.features, threads, quantized, cached)
        check_record(self.config.features_record, self.config.features)

    def features(
        self,
        tokens: Sequence[Sequence[str]],
        width: int,
        seconds: Sequence[Sequence[str] | None] | None = None,
    ) -> np.ndarray:
        """(batch, width, 4, dim) frozen-encoder features of the posts (each run with its second segment, where
        ``seconds`` gives one), zeros after each post's tokens."""
        from mner.inputs.frozen import LAYERS

        found = self.frozen(tokens, seconds)
        out = np.zeros((len(tokens), width, LAYERS, self.frozen.dim), dtype=np.float32)
        for b, array in enumerate(found):
            out[b, : len(array)] = array
        return out

    def words(self, sequences: Sequence[Sequence[str]]) -> GloveInputs:
        char_ids, shape_ids, mask = char_features(sequences, self.config)
        batch, seq_len = mask.shape
        word_index, vectors = self.config.index("words"), self.vectors
        rows = np.zeros((batch, seq_len), dtype=np.int64)
        found = np.zeros((batch, seq_len), dtype=bool)
        word_ids = np.zeros((batch, seq_len), dtype=np.int64)
        keys = [[word_key(token) for token in tokens] for tokens in sequences]
        looked_up = iter(vectors.find([k for row in keys for k in row]).tolist())
        for b, row_keys in enumerate(keys):
            for t, key in enumerate(row_keys):
                row = next(looked_up)
                if row >= 0:
                    rows[b, t], found[b, t] = row, True
                word_ids[b, t] = word_index.get(key, 1)
        # Gather only the rows used from the memory-mapped table; words GloVe lacks get zeros here and
        # rely on the tuned vocabulary and the char-CNN.
        word_vectors = np.zeros((batch, seq_len, vectors.dim), dtype=np.float32)
        word_vectors[found] = vectors.vectors[rows[found]]
        return GloveInputs(
            char_ids,
            shape_ids,
            mask,
            word_vectors=word_vectors,
            word_ids=word_ids,
        )

    def post(
        self,
        tokens: Sequence[Sequence[str]],
        contexts: Sequence[Sequence[Sequence[str]]] | None,
        seconds: Sequence[Sequence[str] | None] | None = None,
    ) -> GloveInputs:
        if contexts is None:
            inputs = self.words(tokens)
            if self.frozen is not None:
                inputs.features = self.features(tokens, inputs.mask.shape[1], seconds)
            return inputs
        joined, separators = [], []
        for words, channels in zip(tokens, contexts, strict=True):
            sequence, marks = list(words), [False] * len(words)
            for channel in channels:
                if channel:
                    sequence += [SEPARATOR, *channel]
                    marks += [True] + [False] * len(channel)
            joined.append(sequence)
            separators.append(marks)
        inputs = self.words(joined)
        inputs.separator = np.zeros(inputs.mask.shape, dtype=bool)
        for b, marks in enumerate(separators):
            inputs.separator[b, : len(marks)] = marks
        if self.frozen is not None:
            inputs.features = self.features(tokens, inputs.mask.shape[1], seconds)
        return inputs


class PieceInputBuilder:
    """Inputs of a transformer encoder: ``[CLS] post [SEP] (context [SEP])*`` word pieces, and characters."""

    def __init__(self, config: ModelConfig, threads: int = 1):
        self.config = config

    def words(self, sequences: Sequence[Sequence[str]]) -> PieceInputs:
        return self.post(sequences, None)

    def post(
        self,
        tokens: Sequence[Sequence[str]],
        contexts: Sequence[Sequence[Sequence[str]]] | None,
        seconds: Sequence[Sequence[str] | None] | None = None,
    ) -> PieceInputs:
        """``seconds`` is unused: a transformer encoder reads no frozen features (``ModelConfig`` refuses them)."""
        from mner.inputs.pieces import encode_pieces

        char_ids, shape_ids, mask = char_features(tokens, self.config)
        pieces = encode_pieces(self.config.encoder, tokens, contexts)
        return PieceInputs(char_ids, shape_ids, mask, pieces=pieces)


def channel_words(post: Post, channel: str, config: ModelConfig) -> tuple[str, ...]:
    """The words a post carries for a word channel (``ChannelSpec.words``: its caption, its knowledge triples,
    its context in its reading's ``form``), at most the config's limit for the channel."""
    return CHANNELS[channel].words(post, config.reading(channel))[: config.word_limit(channel)]


class BatchBuilder:
    """Posts (each at most ``config.max_post_tokens`` long) → a ``TaggingBatch`` for a model config."""

    def __init__(self, config: ModelConfig, inputs: InputBuilder):
        self.config = config
        self.inputs = inputs

    def build(
        self,
        posts: Sequence[Post],
        with_tags: bool = False,
        images: Mapping[str, ImageFeatures] | None = None,
        entities: Sequence[Sequence[tuple[str, str | None]] | None] | None = None,
    ) -> TaggingBatch:
        """``images`` maps ``Post.image`` to its features (a dict or a ``FeatureCache``); ``entities``, where
        given, is each post's entity list to align in place of the one read from its context (None: none)."""
        config = self.config
        tokens = [p.tokens for p in posts]
        as_text = None
        if config.words_after_post:
            as_text = [[channel_words(p, c, config) for c in config.channels_after_post] for p in posts]
        seconds = None
        if config.feature_context:  # each post's context as the frozen encoder's second segment (PGIM's way)
            from mner.inputs.frozen import second_segment

            seconds = [second_segment(p.context) for p in posts]
        text = self.inputs.post(tokens, as_text, seconds)
        for name, unit in READERS.items():  # the reading units' arrays (the context's alignment, its kinds)
            block = getattr(config, name)
            if unit.enabled(block):
                given = entities if unit.channel == "context" else None  # lists given are the context's
                arrays = unit.fill(block, posts, given, text.mask.shape, config.word_embeddings)
                for key, array in arrays.items():
                    setattr(text, key, array)
        mask = np.zeros((len(posts), max(1, *(len(t) for t in tokens))), dtype=bool)
        for b, post_tokens in enumerate(tokens):
            mask[b, : len(post_tokens)] = True
        tags = None
        if with_tags:
            tag_index = config.index("tags")
            tags = np.zeros(mask.shape, dtype=np.int64)
            for b, post in enumerate(posts):
                tags[b, : len(post.tags)] = [tag_index[t] for t in post.tags]
        memory = {
            c: self.inputs.words([channel_words(p, c, config) for p in posts]) for c in config.memory_channels
        }
        image = self.image_inputs(posts, images) if config.image_channels else None
        return TaggingBatch(text, mask, tags, memory, image)

    def image_inputs(self, posts: Sequence[Post], images: Mapping[str, ImageFeatures] | None) -> ImageInputs:
        """Each post's image features (``images[post.image]``; missing ones masked)."""
        config = self.config
        found = [images.get(p.image) if (images is not None and p.image is not None) else None for p in posts]
        top_k = max([len(f.attributes) for f in found if f is not None], default=1)
        n_regions = max([f.regions.shape[0] for f in found if f is not None], default=1)
        labels: list[tuple[str, ...]] = []
        probs = np.zeros((len(posts), top_k), dtype=np.float32)
        regions = np.zeros((len(posts), n_regions, config.image_dim), dtype=np.float32)
        for b, feats in enumerate(found):
            attributes = list(feats.attributes) if feats is not None else []
            for k in range(top_k):
                label, prob = attributes[k] if k < len(attributes) else ("", 0.0)
                labels.append(tuple(label.split()))
                probs[b, k] = prob
            if feats is not None:
                if feats.regions.shape[1] != config.image_dim:
                    raise ValueError(
                        f"image {posts[b].image!r}: expected {config.image_dim}-d regions "
                        f"({config.image_backbone}), got {feats.regions.shape[1]}"
                    )
                regions[b, : feats.regions.shape[0]] = np.asarray(feats.regions, dtype=np.float32)
        has_image = np.array([f is not None for f in found], dtype=bool)
        return ImageInputs(has_image, self.inputs.words(labels), probs, regions)


INPUT_BUILDERS: Registry[type] = Registry("encoder kind")  # EncoderSpec.kind → the input builder it reads
INPUT_BUILDERS.register("glove", GloveInputBuilder)
INPUT_BUILDERS.register("transformer", PieceInputBuilder)


def input_builder(config: ModelConfig, threads: int = 1) -> InputBuilder:
    """The input builder for the config's encoder (``threads``: a frozen encoder's ONNX session's)."""
    return INPUT_BUILDERS[config.encoder_spec.kind](config, threads)


def flat_arrays(value, path: str = "") -> dict[str, np.ndarray]:
    """Every array inside a batch by its dotted path (``text.char_ids``, ``memory.caption.mask``, ...)."""
    if isinstance(value, np.ndarray):
        return {path: value}
    out: dict[str, np.ndarray] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flat_arrays(item, f"{path}.{key}" if path else str(key)))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            out.update(flat_arrays(getattr(value, f.name), f"{path}.{f.name}" if path else f.name))
    return out


def with_arrays(template, values: dict, path: str = ""):
    """``template`` (a batch) with the arrays at the paths of ``values`` replaced by those values."""
    if path in values:
        return values[path]
    if isinstance(template, dict):
        return {k: with_arrays(v, values, f"{path}.{k}" if path else str(k)) for k, v in template.items()}
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        return dataclasses.replace(
            template,
            **{
                f.name: with_arrays(getattr(template, f.name), values, f"{path}.{f.name}" if path else f.name)
                for f in dataclasses.fields(template)
                if f.init
            },
        )
    return template


# ------------------------------------------------------------------------------------- the ONNX contract

# The batch layout: the names (``flat_arrays`` paths) and meaning of the arrays a model's exported graph reads.
# An export records the version it was made with (onnx.json "layout") and is refused by a mner that builds
# another one, with a message that says how to renew it. Bump it whenever ``batch_layout`` changes: a renamed,
# added or removed array, or one whose meaning changed (tests/test_runtime.py pins the current names).
BATCH_LAYOUT = 2


def _words_arrays(config: ModelConfig) -> list[str]:
    """The arrays ``InputBuilder.words`` gives for the config's encoder kind."""
    common = ["char_ids", "shape_ids", "mask"]
    if config.encoder_spec.kind == "glove":
        return [*common, "word_vectors", "word_ids"]
    return [
        *common,
        *(f"pieces.{name}" for name in ("input_ids", "attention_mask", "token_type_ids", "first")),
    ]


def batch_layout(config: ModelConfig) -> list[str]:
    """The names of the arrays a prediction batch of ``config`` holds (``flat_arrays`` of ``BatchBuilder.build``)."""
    words = _words_arrays(config)
    text = list(words)
    for name, unit in READERS.items():  # the reading units' arrays (none where a unit is off)
        text += unit.arrays(getattr(config, name))
    if config.words_after_post and config.encoder_spec.kind == "glove":
        text.append("separator")
    if config.features is not None:
        text.append("features")
    names = [f"text.{name}" for name in text] + ["mask"]
    names += [f"memory.{channel}.{name}" for channel in config.memory_channels for name in words]
    if config.image_channels:
        names += ["image.has_image", *(f"image.attribute_words.{name}" for name in words)]
        names += ["image.attribute_probs", "image.regions"]
    return names
