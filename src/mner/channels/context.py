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

from mner.data import split_handle
from mner.labels import BENCHMARK_LABELS, GENERIC_KIND_WORDS, LabelSet

ALIGN_TYPES = ("PER", "LOC", "ORG", "OTHER", "UNK")
ALIGN_TAGS = ("O",) + tuple(f"{p}-{t}" for t in ALIGN_TYPES for p in ("B", "I"))
# with ModelConfig.generic_tag: a kind that names no type at all (none given, "entity", "thing") is its own tag,
# apart from kinds that name something other than an entity type ("date", "topic", "hashtag": UNK)
ANY_TAGS = ("B-ANY", "I-ANY")
GENERIC_WORDS = GENERIC_KIND_WORDS
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


def kind_word(word: str) -> bool:
    """Whether a word names an entity type or says "entity" ("Person", "city", "entity")."""
    low = word.lower()
    return BENCHMARK_LABELS.names_type(low) or low in GENERIC_WORDS


def is_generic(kind: str | None) -> bool:
    """Whether a kind names no type at all: none given, or only words like "entity", "thing", "name"."""
    if not kind:
        return True
    words = [w.lower() for w in _WORD.findall(kind)]
    return all(w in GENERIC_WORDS for w in words)


def compact(text: str | None) -> str | None:
    """The entity list alone, ``Bears ( sports team ) ; Chicago ( city )``; the whole text where it has none."""
    from mner.channels.entities import read_entities

    entities = read_entities(text)
    if not entities:
        return text
    return " ; ".join(f"{name} ( {kind} )" if kind else name for name, kind in entities)


def _words(token: str) -> list[str]:
    """A token's normalised words: ``#NewYork`` → ``new york``, ``@KobeBryant`` → ``kobe bryant``."""
    if len(token) > 1 and token[0] in "#@＃＠":
        token = split_handle(token)
    return [w.lower() for w in _WORD.findall(token)]


def align(
    tokens: Sequence[str],
    entities: Sequence[tuple[str, str]],
    generic_tag: bool = False,
    labels: LabelSet | None = None,
) -> list[str]:
    """A tag from ``ALIGN_TAGS`` per token: where a named entity's words occur in the post (whole tokens),
    ``B-``/``I-`` with its mapped type; longer names first, no overlaps. ``generic_tag``: a kind that names no
    type at all (``is_generic``) gives ``B-ANY``/``I-ANY`` (``ANY_TAGS``) in place of UNK. ``labels``: the types
    kinds map onto (the benchmark's by default; ``align_tags``)."""
    return [tag for tag, _ in align_kinds(tokens, entities, generic_tag, labels)]


def align_tags(labels: LabelSet | None = None) -> tuple[str, ...]:
    """The alignment's tags for a label set's types (``ALIGN_TAGS`` for the benchmark's), then ``ANY_TAGS``."""
    if labels is None or labels.types == BENCHMARK_LABELS.types:
        return ALIGN_TAGS + ANY_TAGS
    return ("O",) + tuple(f"{p}-{t}" for t in (*labels.types, "UNK") for p in ("B", "I")) + ANY_TAGS


def align_kinds(
    tokens: Sequence[str],
    entities: Sequence[tuple[str, str | None]],
    generic_tag: bool = False,
    labels: LabelSet | None = None,
) -> list[tuple[str, str | None]]:
    """``align``'s tag of each token with the listed kind of the entity it is in (None outside one). Linear in the
    post's words and the names' occurrences: each name is looked for only where its first word stands."""
    words, owner, starts = [], [], set()
    for t, token in enumerate(tokens):
        starts.add(len(words))
        for w in _words(token):
            words.append(w)
            owner.append(t)
    ends = {i for i in range(1, len(words) + 1) if i == len(words) or owner[i] != owner[i - 1]}
    where: dict[str, list[int]] = {}
    for i, w in enumerate(words):
        if i in starts:
            where.setdefault(w, []).append(i)
    tags: list[tuple[str, str | None]] = [("O", None)] * len(tokens)
    # the LLM's order among names of one length: deterministic (a set's order would change with the process)
    named = sorted(
        dict.fromkeys(
            (
                tuple(_words(name)),
                entity_type(kind, labels) or ("ANY" if generic_tag and is_generic(kind) else "UNK"),
                kind or None,
            )
            for name, kind in entities
        ),
        key=lambda item: -len(item[0]),
    )
    for name, etype, kind in named:
        n = len(name)
        if not n:
            continue
        for i in where.get(name[0], ()):
            if i + n in ends and tuple(words[i : i + n]) == name:
                first, last = owner[i], owner[i + n - 1]
                if all(tag == "O" for tag, _ in tags[first : last + 1]):
                    tags[first] = (f"B-{etype}", kind)
                    for k in range(first + 1, last + 1):
                        tags[k] = (f"I-{etype}", kind)
    return tags


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
