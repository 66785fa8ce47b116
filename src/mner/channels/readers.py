"""How a model reads a channel beyond its words, declared once: ``READERS``, a registry of reading units.

A reading unit owns everything a model's reading of one channel needs, so that the rest of the package iterates
the registry instead of spelling the reading out:

- its **config block**, a typed dataclass held as ``ModelConfig.<name>`` — a ``[model.<name>]`` table in a TOML
  config, a ``"<name>": {...}`` object in a model folder's ``config.json`` — and the flat keys it had before
  (``flat_keys``, moved into the block by ``mner.config.migrate_keys``);
- the **arrays** it adds to a batch's text inputs (``arrays``: their names are part of the ONNX contract,
  ``mner.inputs.batching.batch_layout``) and how a batch of posts fills them (``fill``);
- its **token features**: a network module registered under the same name (``mner.model.features``), whose
  output is joined to the encoder's word features; ``old_weights`` names its weights as the encoder held them;
- its **card lines** and, for a model with paths (``mner.model.combine``), the **route** a post takes.

``ContextReader`` is the context channel's: the entity list an LLM wrote about a post, read once per post
(``mner.channels.reading.read_context``) and aligned to its tokens.

A new reader: its block and unit here, registered; its block as a ``ModelConfig`` field (``mner.config``); its
module in ``mner.model.features``; then ``tests/test_channel_conformance.py`` checks the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from mner.registry import Registry

if TYPE_CHECKING:
    from mner.data import Post
    from mner.labels import LabelSet

# the context channel's words: the whole text, or only its entity list (mner.channels.context.context_words)
CONTEXT_FORMS = ("full", "entities")


@dataclass(frozen=True)
class ContextReadingConfig:
    """The context channel's reading: ``[model.context]`` in a TOML config, ``"context"`` in ``config.json``."""

    form: str = "full"  # the context's words, where a model reads them: the whole text, or its entity list
    max_words: int = (
        160  # words of the context kept, where a model reads them (other channels: max_channel_words)
    )
    alignment: bool = False  # the context's named entities found in the post: a feature per token
    alignment_dim: int = 16  # width of that feature's embedding (and of the kind vectors' layer)
    # a context with no readable entity list: the post's capitalised words, handles and hashtags that its prose
    # names are aligned as entities of unknown type (mner.channels.context.post_entities); False: none
    prose_fallback: bool = False
    # a context none of whose listed names is found in the post is read as no context (feature 0), not as "context
    # present, nothing here named" (1)
    unaligned_as_none: bool = False
    # a listed kind that names no type at all (none given, "entity") is aligned as its own tag (B-/I-ANY), apart
    # from kinds that name something else than an entity type (UNK: "date", "hashtag")
    generic_tag: bool = False
    # the listed kind of the entity each token is in, read as words: the mean of the kind's word vectors (GloVe),
    # through a learned layer, beside the fixed kind → type map of the alignment (issue #24)
    kind_vectors: bool = False
    # the entity types a context's kinds are mapped onto (mner.labels.LabelSet: the model's own, so a model of a
    # user's label set reads contexts too); None: the benchmark's PER, LOC, ORG, OTHER (configs saved before it)
    types: list[str] | None = None

    def __post_init__(self):
        if self.form not in CONTEXT_FORMS:
            raise ValueError(f"context form {self.form!r}: expected one of {list(CONTEXT_FORMS)}")
        if self.kind_vectors and not self.alignment:
            raise ValueError("context kind_vectors reads the aligned context's kinds: set alignment = true")
        if self.max_words < 0 or self.alignment_dim < 1:
            raise ValueError("context max_words must be 0 or more, alignment_dim positive")

    @functools.cached_property
    def labels(self) -> LabelSet | None:
        """The label set a context's kinds map onto; None: the benchmark's (``types``)."""
        from mner.labels import LabelSet

        return None if self.types is None else LabelSet.of(self.types)


class ContextReader:
    """The context channel's reading unit (see the module docstring)."""

    name = "context"  # its ModelConfig field, TOML table, and token-feature module
    channel = "context"  # the channel it reads
    config = ContextReadingConfig
    # the flat ModelConfig keys of before model folder format 4 → the block's
    flat_keys: ClassVar[dict[str, str]] = {
        "context_form": "form",
        "max_context_words": "max_words",
        "context_alignment": "alignment",
        "alignment_dim": "alignment_dim",
        "prose_fallback": "prose_fallback",
        "unaligned_as_none": "unaligned_as_none",
        "generic_tag": "generic_tag",
        "kind_vectors": "kind_vectors",
        "context_types": "types",
    }
    # its weights as the encoder held them before format 4 (``encoder.alignment.weight``): now in its module
    old_weights = ("alignment", "kinds")
    fixed_width = ("kind_vectors",)  # arrays whose last axis the config fixes (the ONNX export's static axes)
    # a block with every option off its default (tests/test_channel_conformance.py round-trips it)
    example = ContextReadingConfig(
        form="entities",
        max_words=40,
        alignment=True,
        alignment_dim=8,
        prose_fallback=True,
        unaligned_as_none=True,
        generic_tag=True,
        kind_vectors=True,
        types=["PER", "LOC", "ORG", "OTHER"],
    )

    def enabled(self, block: ContextReadingConfig) -> bool:
        """Whether a model of this block has the unit's arrays and token features (else only its words, if any)."""
        return block.alignment

    def arrays(self, block: ContextReadingConfig) -> list[str]:
        """The ``WordInputs`` arrays it adds to a batch's text (``mner.inputs.batching.batch_layout``); none if off."""
        return ["alignment_ids"] * block.alignment + ["kind_vectors"] * block.kind_vectors

    def entities(self, block: ContextReadingConfig, post: Post) -> list[tuple[str, str | None]] | None:
        """The post's entity list as the model reads it (read once per post: ``read_context``); None: none."""
        from mner.channels.context import post_entities

        return post_entities(post.tokens, post.context, block.prose_fallback)

    def fill(
        self,
        block: ContextReadingConfig,
        posts: Sequence[Post],
        entities: Sequence[Sequence[tuple[str, str | None]] | None] | None,
        shape: tuple[int, int],
        word_embeddings: str,
    ) -> dict[str, np.ndarray]:
        """Its arrays for a batch whose text is ``shape`` (batch, seq_len), each post's tokens first. ``entities``:
        each post's list to read in place of its context's (training-time corruption); None: read them."""
        from mner.channels.context import alignment_ids

        if entities is None:  # each post's list read once, for the alignment and the kinds alike
            entities = [self.entities(block, p) for p in posts]
        out = {}
        ids = np.zeros(shape, dtype=np.int64)  # shape: (batch, seq_len); the post comes first
        for b, post in enumerate(posts):
            ids[b, : len(post.tokens)] = alignment_ids(
                post.tokens,
                post.context,
                entities[b],
                unaligned_as_none=block.unaligned_as_none,
                given=True,
                generic_tag=block.generic_tag,
                labels=block.labels,
            )
        out["alignment_ids"] = ids
        if block.kind_vectors:
            out["kind_vectors"] = self._kind_vectors(block, posts, entities, shape, word_embeddings)
        return out

    def _kind_vectors(self, block, posts, entities, shape, word_embeddings: str) -> np.ndarray:
        """(batch, seq_len, word_dim): each token's listed kind as the mean word vector of its words."""
        from mner.channels.context import aligned_kinds
        from mner.inputs.embeddings import load_word_vectors

        out = np.zeros((*shape, load_word_vectors(word_embeddings).dim), dtype=np.float32)
        for b, post in enumerate(posts):
            kinds = aligned_kinds(
                post.tokens, post.context, entities[b], unaligned_as_none=block.unaligned_as_none, given=True
            )
            for t, kind in enumerate(kinds):
                if kind:
                    out[b, t] = mean_vector(kind, word_embeddings)
        return out

    def route(self, block: ContextReadingConfig, tokens: Sequence[str], context: str | None) -> str:
        """What a post's context gives a model with paths: "typed", "untyped" or "none" (``context_route``)."""
        from mner.channels.context import context_route

        return context_route(tokens, context, block.prose_fallback, block.labels)

    def card_lines(self, block: ContextReadingConfig, as_words: bool) -> list[str]:
        """The model card's lines on the reading; ``as_words``: the model also reads the context's words."""
        lines = []
        if as_words:
            form = "its entity list only" if block.form == "entities" else "the whole text"
            lines.append(f"- Context read as words: {form}.")
        if block.alignment:
            lines.append(
                "- Context aligned: the context's named entities found in the post's tokens give each token a "
                "feature (inside a named span or not, B/I, the named kind as PER/LOC/ORG/OTHER), "
                f"{block.alignment_dim} wide."
            )
        if block.kind_vectors:
            lines.append(
                '- Kind read as words: each token\'s named kind ("sports team", "city") also goes in as the mean '
                f"GloVe vector of its words through a learned layer, {block.alignment_dim} wide."
            )
        return lines


READERS: Registry[ContextReader] = Registry("reading unit")
READERS.register("context", ContextReader())


@functools.lru_cache(maxsize=4096)
def mean_vector(kind: str, table: str) -> np.ndarray:
    """The mean vector (of the word vectors ``table``) of a kind's words ("sports team"); zeros where none is known."""
    from mner.inputs.embeddings import load_word_vectors, word_key

    vectors = load_word_vectors(table)
    rows = [r for r in vectors.find([word_key(w) for w in kind_words(kind)]).tolist() if r >= 0]
    return vectors.vectors[rows].mean(0).astype(np.float32) if rows else np.zeros(vectors.dim, np.float32)


def kind_words(text: str) -> list[str]:
    """A kind's words: "person/handle" → person, handle."""
    return [w for w in text.replace("/", " ").replace("-", " ").split() if w]
