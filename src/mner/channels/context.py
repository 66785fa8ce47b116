"""A post's context, read as one structured list whatever wrote it, and that list aligned to the post.

Context is free text about a post from any source (a context file, a JSONL or request ``"context"`` field,
``mner ask-llm``). ``post_entities`` reads its entity list (``mner.channels.entities.read_entities``: the
numbered list of the published LLM knowledge, JSON, one entity a line, ...; optionally names the post shares
with free prose); a context from which nothing can be read is a post without context. ``entity_type`` maps a
kind ("sports team", "person/handle", "city") to PER/LOC/ORG/OTHER (None for dates, topics and other
non-entities), ``compact`` renders the list short (the "entities" form a model may read instead of the whole
text), and ``align`` finds each listed name in the post's tokens (case, ``#``/``@`` and CamelCase hashtags
normalised) and gives a BIO tag per token with the mapped kind (``UNK`` where the kind maps to nothing).
The model reads the structured list, never the raw format.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from mner.channels.reading import align, align_kinds, is_generic, kind_word  # noqa: F401 - the alignment's API
from mner.labels import BENCHMARK_LABELS, LabelSet

ALIGN_TYPES = ("PER", "LOC", "ORG", "OTHER", "UNK")
ALIGN_TAGS = ("O",) + tuple(f"{p}-{t}" for t in ALIGN_TYPES for p in ("B", "I"))
# with the context reading's generic_tag: a kind that names no type at all (none given, "entity", "thing") is its own tag,
# apart from kinds that name something other than an entity type ("date", "topic", "hashtag": UNK)
ANY_TAGS = ("B-ANY", "I-ANY")
NO_CONTEXT = (
    0  # the feature id of every token of a post without context (the others are 1 + ALIGN_TAGS index)
)
_TAG_INDEX = {tag: i for i, tag in enumerate(ALIGN_TAGS + ANY_TAGS)}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def entity_type(kind: str | None, labels: LabelSet | None = None) -> str | None:
    """The type of a label set (the benchmark's PER, LOC, ORG, OTHER by default) an LLM's kind names ("sports
    team" → ORG, "airline" → ORG, "person/handle" → PER), or None (no kind, or one that names no type:
    "date", "hashtag"). See ``mner.labels.LabelSet.kind_type``."""
    return (labels or BENCHMARK_LABELS).kind_type(kind)


def compact(text: str | None) -> str | None:
    """The entity list alone, ``Bears ( sports team ) ; Chicago ( city )``; the whole text where it has none."""
    from mner.channels.entities import read_entities

    entities = read_entities(text)
    if not entities:
        return text
    return " ; ".join(f"{name} ( {kind} )" if kind else name for name, kind in entities)


def align_tags(labels: LabelSet | None = None) -> tuple[str, ...]:
    """The alignment's tags for a label set's types (``ALIGN_TAGS`` for the benchmark's), then ``ANY_TAGS``."""
    if labels is None or labels.types == BENCHMARK_LABELS.types:
        return ALIGN_TAGS + ANY_TAGS
    return ("O",) + tuple(f"{p}-{t}" for t in (*labels.types, "UNK") for p in ("B", "I")) + ANY_TAGS


def post_entities(
    tokens: Sequence[str], context: str | None, prose_fallback: bool = False
) -> list[tuple[str, str | None]] | None:
    """The (name, kind) list a model reads of a post's context (``mner.channels.reading.read_context``: a known
    form, or the post's names found in it whatever its markup); with ``prose_fallback``, where no list can be
    read, the post's names that the prose mentions (kind None). None: no context, or nothing readable in it."""
    from mner.channels.reading import read_context

    return list(read_context(tokens, context, prose_fallback).entities) or None


def aligned_kinds(
    tokens: Sequence[str],
    context: str | None,
    entities: Sequence[tuple[str, str | None]] | None = None,
    prose_fallback: bool = False,
    unaligned_as_none: bool = False,
    given: bool = False,
) -> list[str | None]:
    """The listed kind of the entity each token is in, as ``alignment_ids`` reads the list (None outside one, and
    for every token of a post read as without context)."""
    if not given:
        entities = post_entities(tokens, context, prose_fallback)
    if not entities:
        return [None] * len(tokens)
    found = align_kinds(tokens, [(name, kind or "") for name, kind in entities])
    if unaligned_as_none and all(tag == "O" for tag, _ in found):
        return [None] * len(tokens)
    return [kind for _, kind in found]


def alignment_ids(
    tokens: Sequence[str],
    context: str | None,
    entities: Sequence[tuple[str, str | None]] | None = None,
    prose_fallback: bool = False,
    unaligned_as_none: bool = False,
    given: bool = False,
    generic_tag: bool = False,
    labels: LabelSet | None = None,
) -> list[int]:
    """The per-token feature a model reads: ``NO_CONTEXT`` for a post without context (or whose context lists
    nothing readable), else 1 + the index of the token's ``align`` tag in ``ALIGN_TAGS`` (1 is "O": the context
    names nothing here). ``given``: ``entities`` is the list to read (None or empty: no context) in place of
    the one parsed from ``context`` (training-time corruption). ``unaligned_as_none``: a list none of whose
    names is in the post is read as no context. ``generic_tag``: see ``align`` (ids after ALIGN_TAGS's).
    ``labels``: the types kinds map onto (``align_tags``; the benchmark's by default)."""
    if not given:
        entities = post_entities(tokens, context, prose_fallback)
    if not entities:
        return [NO_CONTEXT] * len(tokens)
    tags = align(tokens, [(name, kind or "") for name, kind in entities], generic_tag, labels)
    if unaligned_as_none and all(tag == "O" for tag in tags):
        return [NO_CONTEXT] * len(tokens)
    index = _TAG_INDEX if labels is None else _tag_index(labels)
    return [1 + index[tag] for tag in tags]


@functools.lru_cache(maxsize=16)
def _tag_index(labels: LabelSet) -> dict[str, int]:
    return {tag: i for i, tag in enumerate(align_tags(labels))}


ROUTES = ("typed", "untyped", "none")


def context_route(
    tokens: Sequence[str], context: str | None, prose_fallback: bool = False, labels: LabelSet | None = None
) -> str:
    """What a post's context gives a model, as it reads the list: "typed" (a listed name found in the post with a
    kind that names one of the label set's types: PER, LOC, ORG, OTHER by default), "untyped" (names found, none
    with such a kind: "entity", "date", no kind) or "none" (no context, nothing readable, or no listed name in the
    post)."""
    entities = post_entities(tokens, context, prose_fallback)
    if not entities:
        return "none"
    tags = align(tokens, [(n, k or "") for n, k in entities], labels=labels)
    if all(tag == "O" for tag in tags):
        return "none"
    types = set((labels or BENCHMARK_LABELS).types)
    return "typed" if any(tag[2:] in types for tag in tags if tag != "O") else "untyped"


def context_words(context: str | None, form: str) -> list[str]:
    """The words a model reads of a post's context: the whole text ("full") or its entity list ("entities")."""
    from mner.data import tokenize

    text = compact(context) if form == "entities" else context
    return tokenize(text) if text else []
