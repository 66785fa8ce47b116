"""Names and mentions: the normalised name key, trigram codes, and candidate mentions in a post.

A *name key* is what the KG indexes and what a mention is looked up by: accents dropped, case folded,
``.`` and apostrophes removed (``U.S.`` → ``us``, ``Macy's`` → ``macys``), every other run of
punctuation a single space. A *mention* is a span of a post that may name an entity: a run of
capitalised tokens, a ``#hashtag`` or an ``@handle`` split at its camel case (``#NewYork`` → "New York").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mner.data import MnerInputError, split_handle

MAX_MENTION_CHARS = 200
MAX_MENTION_TOKENS = 6

_DROPPED = re.compile(r"[.'’`´]")
_SEPARATORS = re.compile(r"[\W_]+")


def name_key(text: str) -> str:
    """The normalised lookup key of a name: ``"Apple Inc."`` → ``"apple inc"``."""
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = _DROPPED.sub("", text.casefold())
    return " ".join(part for part in _SEPARATORS.split(text) if part)


def check_mention(text: str) -> str:
    """The key of a mention given by a user; raises MnerInputError for an empty or over-long one."""
    if not isinstance(text, str):
        raise MnerInputError(f"a mention must be a string, got {type(text).__name__}")
    if len(text) > MAX_MENTION_CHARS:
        raise MnerInputError(
            f"mention is {len(text):,} characters long; at most {MAX_MENTION_CHARS} are looked up"
        )
    key = name_key(text)
    if not key:
        raise MnerInputError(f"mention {text!r} is empty: it has no letters or digits")
    return key


def trigram_codes(key: str) -> np.ndarray:
    """The distinct character trigrams of ``" key "`` as int64 codes (21 bits per character)."""
    codes = np.frombuffer(f" {key} ".encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    grams = (codes[:-2] << 42) | (codes[1:-1] << 21) | codes[2:]  # shape: (len(key),)
    return np.unique(grams)


# ------------------------------------------------------------------------------------------ mentions


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that alone never name an entity, even capitalised at the start of a tweet ("Watch", "RT").
# Kept free of first names and places on purpose: a mention is dropped only if all its words are here.
COMMON_WORDS = _words("""
a about above after again against all almost also always am an and another any anyone anything are
around as at away back bad be because been before being below best better between big both but by
can cannot could did do does doing done down during each early either else enough even ever every
few first for from full get gets getting give go goes going gone good got great had has have having
he her here hers herself him himself his how however i if in into is it its itself just keep know
last late least less let like little look lol lot love made make many may me more most much must my
myself never new next no nor not now of off often oh ok okay old on once one only or other our ours
out over own please pls put rather really right rt said same say says see seen she should show since
so some someone something soon still such take than thank thanks that the their theirs them then there
these they thing things think this those though through thru to today together tomorrow tonight too
top under until up upon us very via want was watch watching way we well went were what when where
which while who whom whose why will with without would yes yet you your yours yourself
happy birthday day days night morning week weekend year years time times video photo photos pic pics
live breaking news update official vs omg wow yeah hey hi hello congrats congratulations follow
check join win won free get here's its it's im i'm dont don't cant can't wont won't via amp http https
""")

_CONNECTORS = _words("of the de del della di da du la le von van der den and & y e")


@dataclass(frozen=True)
class Mention:
    """Tokens ``start`` to ``end`` (exclusive) of a post that may name an entity; ``query`` is looked up."""

    start: int
    end: int
    text: str
    query: str


def _is_capitalised(token: str) -> bool:
    # a 10,000-character "word" is not part of a name
    return token[:1].isupper() and len(token) <= MAX_MENTION_CHARS // 4 and any(c.isalpha() for c in token)


def _droppable(token: str) -> bool:
    return token.lower() in COMMON_WORDS or token in _CONNECTORS  # "la" is a connector, "LA" a place


def _trim(tokens: Sequence[str], start: int, end: int) -> tuple[int, int]:
    """Drop common words and lower-case connectors from both ends of a run."""
    while start < end and _droppable(tokens[start]):
        start += 1
    while end > start and _droppable(tokens[end - 1]):
        end -= 1
    return start, end


def _capitalised_runs(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Maximal runs of capitalised tokens, with lower-case connectors ("of", "de") inside them."""
    runs, start = [], None
    for i, token in enumerate(tokens + ["."]):
        inside = (
            start is not None
            and token.lower() in _CONNECTORS
            and i + 1 < len(tokens)
            and _is_capitalised(tokens[i + 1])
        )
        if _is_capitalised(token) and token[0] not in "#@＃＠" or inside:
            if start is None:
                start = i
            if i + 1 - start >= MAX_MENTION_TOKENS:
                runs.append((start, i + 1))
                start = None
            continue
        if start is not None:
            runs.append((start, i))
            start = None
    return runs


def find_mentions(tokens: Sequence[str]) -> list[Mention]:
    """Candidate mentions of a post, in token order: capitalised runs, hashtags and @handles.

    A mention all of whose words are common words (``"Happy Birthday"``, ``"RT"``) is dropped; a
    one-character mention too, and one longer than ``MAX_MENTION_CHARS`` (a post is never an error).
    No KG is needed: mentions are looked up afterwards.
    """
    tokens = list(tokens)
    found: list[Mention] = []
    for start, end in _capitalised_runs(tokens):
        start, end = _trim(tokens, start, end)
        text = " ".join(tokens[start:end])
        if end > start and len(name_key(text)) > 1:
            found.append(Mention(start, end, text, text))
    for i, token in enumerate(tokens):
        if token[:1] in "#@＃＠" and len(token) > 2:
            query = split_handle(token)
            words = name_key(query).split()
            if words and not all(w in COMMON_WORDS for w in words) and len("".join(words)) > 1:
                found.append(Mention(i, i + 1, token, query))
    return sorted((m for m in found if len(m.query) <= MAX_MENTION_CHARS), key=lambda m: m.start)
