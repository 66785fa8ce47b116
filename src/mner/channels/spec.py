"""Every channel a model can read, declared once: ``CHANNELS``, a registry of ``ChannelSpec``.

A spec says what the channel is, how the model reads it (the post's tokens, a sequence of words, the image's
features), which field of a post carries it (the ``Post`` attribute, the JSONL and Parquet column, the
service's request field and the web form's input), which file fills it in file jobs (``mner train``,
``evaluate`` and ``tag`` flags, what the file is keyed by), how ``mner predict`` is given it, the service's
limit on it, its sample values for the ONNX export, and how the model card says it is filled. Everything
else iterates this registry: the CLI's channel options are made from it (``mner.cli.options``), and
``tests/test_channel_conformance.py`` names any place a registered channel is missing.

Adding a channel: a spec here, its typed field on ``Post`` (``mner.data``), ``PostInput`` and ``TagResult``
(``mner.serving``), and its input in the web form (``mner/web/index.html``); then run the conformance test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mner.registry import Registry

if TYPE_CHECKING:
    from mner.channels.readers import ContextReadingConfig
    from mner.data import Post

READS = ("text", "words", "image")  # the post's tokens; a word sequence beside them; the image's features
SOURCES = ("tsv", "kg", "features")  # the kinds of file a file job can fill a channel from


@dataclass(frozen=True)
class ChannelSpec:
    """One channel (see the module docstring)."""

    name: str
    reads: str  # one of READS
    summary: str  # what the channel is, in a few words (help texts, the card)
    noun: str = ""  # how a report counts posts that have it: "3 posts, 2 with <noun>"
    field: str | None = None  # the post's field: Post attribute, JSONL/Parquet column, request/form field
    source: str | None = None  # one of SOURCES: what a file job reads it from
    file_flag: str | None = None  # the train/evaluate/tag option naming that file
    file_help: str = ""  # that option's help text
    file_noun: str = ""  # what that file is called in messages: "KG", "context file"
    keys: tuple[str, ...] = ()  # what a TSV source is keyed by (its header's first column)
    predict_flag: str | None = None  # how `mner predict` is given it
    predict_help: str = ""  # that option's help text, where `predict` has its own option for it
    max_chars: int | None = None  # the service's default limit on a text field
    # the two sample posts of the ONNX export: their values for ``field`` (a words channel's text)
    samples: tuple[str, str] | None = None
    from_attributes: bool = (
        False  # a post with an image and no value gets its image's attribute labels as words
    )
    fill: str = ""  # the model card's line: how it is filled when tagging, and what a post without it gets
    # a words channel: the words the model reads of a post (its field, split), given the model config's block of
    # the channel's reading unit (mner.channels.readers: the context's ``form``), None where it has none
    words: Callable[[Post, Any], tuple[str, ...]] | None = None
    # a channel a model may read as a structured list (the context's entity list): whether a value holds one
    readable: Callable[[str, Sequence[str]], bool] | None = None  # (its text, the post's tokens)

    def __post_init__(self):
        if self.reads not in READS:
            raise ValueError(f"channel {self.name!r}: reads {self.reads!r}, expected one of {READS}")
        if self.source is not None and (self.source not in SOURCES or self.file_flag is None):
            raise ValueError(f"channel {self.name!r}: a source must be one of {SOURCES} with a file_flag")
        if self.reads == "words" and self.words is None:
            raise ValueError(f"channel {self.name!r} reads words: give its words function")


def _caption_words(post: Post, reading: None) -> tuple[str, ...]:
    return tuple(post.caption.split()) if post.caption else ()


def _knowledge_words(post: Post, reading: None) -> tuple[str, ...]:
    return tuple(post.knowledge or ())


def _lists_entities(text: str, tokens: Sequence[str] = ()) -> bool:
    from mner.channels.reading import read_context

    return bool(read_context(tokens, text).entities)


def _context_words(post: Post, reading: ContextReadingConfig | None) -> tuple[str, ...]:
    from mner.channels.context import context_words

    return tuple(context_words(post.context, reading.form if reading is not None else "full"))


CHANNELS: Registry[ChannelSpec] = Registry("channel")
CHANNELS.register(
    "text",
    ChannelSpec(
        "text",
        "text",
        "the post's words",
        field="text",
        max_chars=5_000,
        fill="text: the post's tokens (always read)",
    ),
)
CHANNELS.register(
    "caption",
    ChannelSpec(
        "caption",
        "words",
        "a caption of the post's image",
        noun="a caption",
        field="caption",
        source="tsv",
        file_flag="--captions",
        file_noun="captions file",
        file_help="Captions TSV (image_id<TAB>caption) for models with a 'caption' channel.",
        keys=("image_id",),
        predict_flag="--caption",
        predict_help="A caption of the post's image (models with a 'caption' channel).",
        max_chars=1_000,
        samples=("a man on a plane", "a city"),
        from_attributes=True,
        fill="caption: the post's caption when given, else the captions file's (by image id); with an image and "
        "no caption, the image's top-5 ImageNet labels stand in for it; neither: masked out",
        words=_caption_words,
    ),
)
CHANNELS.register(
    "knowledge",
    ChannelSpec(
        "knowledge",
        "words",
        "isA triples of the KG entity found for the post",
        noun="knowledge",
        source="kg",
        file_flag="--kg",
        file_noun="KG",
        file_help="Knowledge-graph file (mner kg build) for models with a 'knowledge' channel.",
        predict_flag="--kg",
        fill="knowledge: isA triples of the KG entity found for the post (`--kg FILE`; image search with an "
        "image, text candidates without); no KG: masked out",
        words=_knowledge_words,
    ),
)
CHANNELS.register(
    "context",
    ChannelSpec(
        "context",
        "words",
        "free text about the post, e.g. an LLM's notes on it",
        noun="context",
        field="context",
        source="tsv",
        file_flag="--context-file",
        file_noun="context file",
        file_help="Context file: a TSV (image_id<TAB>text or id<TAB>text, with that header) of free text about each "
        "post, e.g. an LLM's notes (mner ask-llm writes one); for models with a 'context' channel.",
        keys=("image_id", "id"),
        predict_flag="--context",
        predict_help="Free text about the post, e.g. an LLM's notes on it (models with a 'context' channel).",
        max_chars=10_000,
        samples=(
            "Named entities:1. Kobe Bryant (person)2. Paris (city)Reasoning:Kobe Bryant is in Paris.",
            "Named entities:1. Kobe Bryant (person)2. Paris (city)Reasoning:Kobe Bryant is in Paris.",
        ),
        fill="context: the post's context text, else the context file's (by id or image id); none: the post is "
        "tagged as a post without context",
        words=_context_words,
        readable=_lists_entities,
    ),
)
CHANNELS.register(
    "attributes",
    ChannelSpec(
        "attributes",
        "image",
        "the top-5 ImageNet classes of the post's image",
        noun="image features",
        field="image",
        source="features",
        file_flag="--images-cache",
        file_noun="image feature cache",
        file_help="Image feature cache (mner images extract) for the 'attributes' and 'image' channels.",
        predict_flag="--image",
        fill="attributes: top-5 ImageNet classes of the post image (EfficientNet-Lite); no image: masked out",
    ),
)
CHANNELS.register(
    "image",
    ChannelSpec(
        "image",
        "image",
        "7x7 regional features of the post's image",
        noun="image features",
        field="image",
        source="features",
        file_flag="--images-cache",
        file_noun="image feature cache",
        file_help="Image feature cache (mner images extract) for the 'attributes' and 'image' channels.",
        predict_flag="--image",
        fill="image: 7x7 regions of the post image; no image: masked out (the gate is forced shut)",
    ),
)


def channel_names(reads: str | None = None) -> tuple[str, ...]:
    """The registered channels' names (those that read ``reads``, if given), in registration order."""
    return tuple(name for name, spec in CHANNELS.items() if reads is None or spec.reads == reads)


def text_fields() -> tuple[str, ...]:
    """The text fields a raw post may carry for its channels, besides its text: ``("caption", "context")``."""
    return tuple(
        dict.fromkeys(
            spec.field for spec in CHANNELS.values() if spec.reads == "words" and spec.field is not None
        )
    )


def file_sources() -> dict[str, list[ChannelSpec]]:
    """The file options of file jobs, each with the channels it fills: ``{"--captions": [caption spec], ...,
    "--images-cache": [attributes spec, image spec]}``."""
    out: dict[str, list[ChannelSpec]] = {}
    for spec in CHANNELS.values():
        if spec.file_flag is not None:
            out.setdefault(spec.file_flag, []).append(spec)
    return out
