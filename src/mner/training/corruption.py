"""Training-time corruption of a post's parsed entity list, so that a model does not trust its context blindly.

A context model learns what its context says: trained on clean LLM lists only, it learns "context present,
token not named → O" and falls below a text model as soon as the list is thinner, differently worded or
about another post. ``corrupt`` weakens one post's list the ways a context gets weaker at tagging time:

- ``drop``: each entity is left out with this probability (an LLM that misses names);
- ``generic``: each kind is replaced by a word that names no type ("entity") with this probability;
- ``generic_post``: with this probability every kind of the post is replaced so (a list without kinds);
- ``wrong``: each kind is replaced by a kind of another type ("city" for a person) with this probability;
- ``spurious`` / ``spurious_names``: with probability ``spurious``, up to ``spurious_names`` names of another
  post's list are added (names that are not in this post, mostly);
- ``swap``: with this probability the whole list is another post's;
- ``none``: with this probability the post has no context at all (returns None).

A pure function over ``list[(name, kind)]`` with a ``random.Random``; no mner imports.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

Entities = list[tuple[str, "str | None"]]

GENERIC_KINDS = ("entity", "thing", "name", "term")
# a kind word of each type (mner.channels.context maps them to PER/LOC/ORG/OTHER), for "wrong" kinds
TYPE_KINDS = {
    "PER": ("person", "person/handle", "athlete", "singer"),
    "LOC": ("location", "city", "country", "place"),
    "ORG": ("organization", "company", "sports team", "brand"),
    "OTHER": ("event", "product", "tv show", "movie"),
}


@dataclass(frozen=True)
class CorruptionRates:
    """The rates of ``corrupt`` (all 0: the list is returned as it is)."""

    drop: float = 0.0
    generic: float = 0.0
    generic_post: float = 0.0
    wrong: float = 0.0
    spurious: float = 0.0
    spurious_names: int = 2
    swap: float = 0.0
    none: float = 0.0

    def __post_init__(self):
        for name in ("drop", "generic", "generic_post", "wrong", "spurious", "swap", "none"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"corruption rate {name}={value}: expected a probability in [0, 1]")
        if self.spurious_names < 1:
            raise ValueError(f"spurious_names={self.spurious_names}: expected at least 1")

    @property
    def active(self) -> bool:
        return any(
            (self.drop, self.generic, self.generic_post, self.wrong, self.spurious, self.swap, self.none)
        )


def corrupt(
    entities: Sequence[tuple[str, str | None]] | None,
    rates: CorruptionRates,
    rng: random.Random,
    other: Sequence[tuple[str, str | None]] | None = None,
    kind_type=None,
) -> Entities | None:
    """A corrupted copy of one post's list (None: the post is to be read without context).

    Args:
        entities: the post's parsed list; None for a post without context (returned as None).
        other: the list of another (random) training post: the source of swapped and spurious names.
        kind_type: maps a kind to its type (PER/LOC/ORG/OTHER or None), to pick a wrong type's kind; without
            it a wrong kind is any type's kind word.
    """
    if entities is None:
        return None
    if rates.none and rng.random() < rates.none:
        return None
    other = list(other or [])
    if rates.swap and rng.random() < rates.swap:
        return list(other) if other else None
    out: Entities = []
    all_generic = bool(rates.generic_post) and rng.random() < rates.generic_post
    for name, kind in entities:
        if rates.drop and rng.random() < rates.drop:
            continue
        if all_generic or (rates.generic and rng.random() < rates.generic):
            kind = rng.choice(GENERIC_KINDS)
        elif rates.wrong and rng.random() < rates.wrong:
            current = kind_type(kind) if (kind_type is not None and kind) else None
            types = [t for t in TYPE_KINDS if t != current]
            kind = rng.choice(TYPE_KINDS[rng.choice(types)])
        out.append((name, kind))
    if rates.spurious and other and rng.random() < rates.spurious:
        k = rng.randint(1, rates.spurious_names)
        names = {n for n, _ in out}
        extra = [e for e in other if e[0] not in names]
        rng.shuffle(extra)
        out.extend(extra[:k])
    return out
