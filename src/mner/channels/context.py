"""Per-post context text, read two ways: the entity list an LLM wrote, and that list aligned to the post.

Context is free text about a post from any source (``--context FILE.tsv``, a JSONL ``"context"`` field,
``mner ask-llm`` asking an LLM). The LLM knowledge of Twitter-2015 has a fixed shape::

    Named entities:1. Bears (sports team)2. Chicago (city)Reasoning: The sentence ...

``named_entities`` reads that list (any text without one gives none), ``entity_type`` maps the LLM's kind
("sports team", "person/handle", "city") to PER/LOC/ORG/OTHER (None for dates, topics and other
non-entities), ``compact`` renders the list short (the "entities" form a model may read instead of the whole
text), and ``align`` finds each named entity in the post's tokens (case, ``#``/``@`` and CamelCase hashtags
normalised) and gives a BIO tag per token with the mapped kind (``UNK`` where the kind maps to nothing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mner.data import split_handle

ALIGN_TYPES = ("PER", "LOC", "ORG", "OTHER", "UNK")
ALIGN_TAGS = ("O",) + tuple(f"{p}-{t}" for t in ALIGN_TYPES for p in ("B", "I"))
NO_CONTEXT = (
    0  # the feature id of every token of a post without context (the others are 1 + ALIGN_TAGS index)
)
_LIST = re.compile(r"Named entities\s*:\s*(.*?)(?:Reasoning\s*:|$)", re.DOTALL | re.IGNORECASE)
_ITEM = re.compile(r"(?:^|(?<=[\s).,;]))\d{1,3}\.\s*(.+?)\s*\(([^()]*)\)")
# The first word of an LLM's kind that names a type; "handle", "hashtag", "username" say nothing on their own.
_KIND_WORDS = {
    "PER": (
        "person",
        "people",
        "player",
        "athlete",
        "artist",
        "actor",
        "actress",
        "author",
        "politician",
        "celebrity",
        "singer",
        "rapper",
        "musician",
        "photographer",
        "journalist",
        "writer",
        "president",
        "footballer",
        "coach",
        "character",
        "comedian",
        "model",
        "dj",
        "reporter",
        "host",
        "user",
    ),
    "LOC": (
        "location",
        "country",
        "city",
        "place",
        "region",
        "state",
        "venue",
        "geographic",
        "geographical",
        "town",
        "village",
        "continent",
        "island",
        "river",
        "mountain",
        "street",
        "area",
        "neighborhood",
        "neighbourhood",
        "landmark",
        "building",
        "stadium",
        "airport",
        "park",
        "county",
        "province",
        "lake",
    ),
    "ORG": (
        "organization",
        "organisation",
        "company",
        "brand",
        "team",
        "band",
        "institution",
        "publication",
        "news",
        "media",
        "newspaper",
        "party",
        "group",
        "club",
        "university",
        "school",
        "agency",
        "network",
        "channel",
        "magazine",
        "outlet",
        "league",
        "government",
        "station",
        "restaurant",
        "store",
        "website",
        "label",
        "association",
        "business",
        "charity",
        "college",
        "department",
        "retailer",
        "shop",
    ),
    "OTHER": (
        "event",
        "product",
        "tv",
        "show",
        "movie",
        "film",
        "award",
        "song",
        "album",
        "book",
        "game",
        "series",
        "festival",
        "competition",
        "tournament",
        "holiday",
        "campaign",
        "app",
        "software",
        "device",
        "vehicle",
        "program",
        "programme",
        "franchise",
        "language",
        "nationality",
        "religion",
        "title",
        "video",
        "documentary",
        "play",
        "exhibition",
        "conference",
        "phone",
        "car",
    ),
}
_KIND_TYPE = {word: etype for etype, words in _KIND_WORDS.items() for word in words}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def named_entities(text: str | None) -> list[tuple[str, str]]:
    """(name, kind) of each item of the text's "Named entities:" list, in order; [] without a list."""
    if not text:
        return []
    found = _LIST.search(text)
    if found is None:
        return []
    return [(name.strip(), kind.strip()) for name, kind in _ITEM.findall(found.group(1)) if name.strip()]


def entity_type(kind: str) -> str | None:
    """PER, LOC, ORG or OTHER for an LLM's kind ("sports team" → ORG, "person/handle" → PER), or None."""
    for part in re.split(r"[/,;]| or ", kind.lower()):
        for word in _WORD.findall(part):
            etype = _KIND_TYPE.get(word) or _KIND_TYPE.get(word.rstrip("s"))
            if etype is not None:
                return etype
    return None


def compact(text: str | None) -> str | None:
    """The entity list alone, ``Bears ( sports team ) ; Chicago ( city )``; the whole text where it has none."""
    entities = named_entities(text)
    if not entities:
        return text
    return " ; ".join(f"{name} ( {kind} )" for name, kind in entities)


def _words(token: str) -> list[str]:
    """A token's normalised words: ``#NewYork`` → ``new york``, ``@KobeBryant`` → ``kobe bryant``."""
    if len(token) > 1 and token[0] in "#@＃＠":
        token = split_handle(token)
    return [w.lower() for w in _WORD.findall(token)]


def align(tokens: Sequence[str], entities: Sequence[tuple[str, str]]) -> list[str]:
    """A tag from ``ALIGN_TAGS`` per token: where a named entity's words occur in the post (whole tokens),
    ``B-``/``I-`` with its mapped type; longer names first, no overlaps."""
    words, owner, starts = [], [], set()
    for t, token in enumerate(tokens):
        starts.add(len(words))
        for w in _words(token):
            words.append(w)
            owner.append(t)
    ends = {i for i in range(1, len(words) + 1) if i == len(words) or owner[i] != owner[i - 1]}
    tags = ["O"] * len(tokens)
    # the LLM's order among names of one length: deterministic (a set's order would change with the process)
    named = sorted(
        dict.fromkeys((tuple(_words(name)), entity_type(kind) or "UNK") for name, kind in entities),
        key=lambda item: -len(item[0]),
    )
    for name, etype in named:
        n = len(name)
        if not n:
            continue
        for i in range(len(words) - n + 1):
            if i in starts and i + n in ends and tuple(words[i : i + n]) == name:
                first, last = owner[i], owner[i + n - 1]
                if all(tag == "O" for tag in tags[first : last + 1]):
                    tags[first] = f"B-{etype}"
                    for k in range(first + 1, last + 1):
                        tags[k] = f"I-{etype}"
    return tags


def alignment_ids(tokens: Sequence[str], context: str | None) -> list[int]:
    """The per-token feature a model reads: ``NO_CONTEXT`` for a post without context, else 1 + the index of
    the token's ``align`` tag in ``ALIGN_TAGS`` (1 is "O": the context names nothing here)."""
    if context is None:
        return [NO_CONTEXT] * len(tokens)
    return [1 + ALIGN_TAGS.index(tag) for tag in align(tokens, named_entities(context))]


def context_words(context: str | None, form: str) -> list[str]:
    """The words a model reads of a post's context: the whole text ("full") or its entity list ("entities")."""
    from mner.data import tokenize

    text = compact(context) if form == "entities" else context
    return tokenize(text) if text else []
