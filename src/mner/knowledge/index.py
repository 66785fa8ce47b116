"""A name index: fuzzy candidates for a mention without scanning every name.

The score of a name for a mention is :func:`name_scores`: rapidfuzz's WRatio, except that a partial
match (one string at least 1.5 times longer than the other) must be of whole words: "kobe" in
"kobe bryant" scores 90, but "be" in "kobe" or "kobe" in "kobenhavn" only their plain ratio. (Plain
WRatio ranks every two-letter alias inside a mention level with the right entity.)

Keys are laid out by length (then popularity), so "names of length m..n" is a range of positions, in
every trigram posting list too. For a query key ``q`` of length L the index collects:
- **shorter names** (length ≤ L/1.5): ``q``'s runs of whole words ("bryant" in "kobe bryant"), by exact
  lookup in a sorted array of 64-bit key hashes (``q`` itself too);
- **similar lengths** (L/1.5 < m < 1.5 L; WRatio's ratio / token branch): count filtering over the
  trigram lists cut to that length range. A name sharing ``need = ceil(min_share * |G|)`` of the
  query's ``|G|`` trigrams is in one of the ``|G'| - need + 1`` rarest lists (``G'``: trigrams some name
  has); those lists (at most ``max_generate`` ids each, nearest length L first) give candidates, the
  ``verify`` best by partial count are counted against every list by binary search, and the ``pool``
  best by (shared trigrams, closeness of length) go on;
- **longer names** (m ≥ 1.5 L) that contain ``q``: they have every trigram of ``" q "``, so the rarest
  list, cut to that length range (shortest first, at most ``max_generate``), is intersected with the
  others; the ``max_longer`` most popular survive.
Everything collected is rescored with :func:`name_scores`; ties go to the more popular entity.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mner.knowledge.names import trigram_codes


def key_hashes(keys: Iterable[str]) -> np.ndarray:
    """Stable 64-bit hashes of keys (BLAKE2b), as int64."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
            for k in keys
        ),
        dtype=np.int64,
    )


def name_scores(query: str, names: list[str]) -> np.ndarray:
    """Scores 0–100 of names for a query key: WRatio, with partial matches only of whole words.

    Computed without WRatio's costly partial alignment: when one string is 1.5 times longer or more,
    WRatio of a whole-word match is exactly 100 times its partial scale (0.9, or 0.6 beyond 8 times
    longer: its ratio is below 80 and its partial-token term below 90); otherwise the plain ratio.
    """
    from rapidfuzz import fuzz, process

    if not names:
        return np.zeros(0, dtype=np.float32)
    scores = process.cdist([query], names, scorer=fuzz.ratio, dtype=np.float32, workers=1)[0]
    n = len(query)
    lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
    longer = np.maximum(lengths, n) / np.maximum(np.minimum(lengths, n), 1)
    alike = np.flatnonzero(longer < 1.5)
    if len(alike):  # WRatio's ratio / token branch
        scores[alike] = process.cdist(
            [query], [names[i] for i in alike.tolist()], scorer=fuzz.WRatio, dtype=np.float32, workers=1
        )[0]
    padded = f" {query} "
    partial = np.flatnonzero((longer >= 1.5) & (lengths > 0) & (n > 0))
    whole = np.fromiter(
        (
            f" {names[i]} " in padded if lengths[i] < n else padded in f" {names[i]} "
            for i in partial.tolist()
        ),
        dtype=bool,
        count=len(partial),
    )
    hits = partial[whole]
    scores[hits] = np.where(longer[hits] > 8, 60.0, 90.0)
    return scores


@dataclass(frozen=True)
class IndexArrays:
    """The arrays an index is made of; stored as blobs in the KG file. Positions: keys by length."""

    keys: bytes  # UTF-8 keys joined by "\n", in position order
    alias_ids: np.ndarray  # shape: (n_keys,) int64, the aliases table's row id of each key
    entities: np.ndarray  # shape: (n_keys,) int64, the entity of each key
    popularity: np.ndarray  # shape: (n_keys,) int64, the entity's degree
    length_starts: np.ndarray  # shape: (max_len + 2,) int64, first position of each key length
    hashes: np.ndarray  # shape: (n_keys,) int64, sorted key hashes
    hash_positions: np.ndarray  # shape: (n_keys,) int32, the position of each sorted hash
    grams: np.ndarray  # shape: (n_grams,) int64, sorted trigram codes
    offsets: np.ndarray  # shape: (n_grams + 1,) int64, postings[offsets[i]:offsets[i+1]] for grams[i]
    postings: np.ndarray  # shape: (n_pairs,) int32, positions, sorted within each gram

    BLOBS: ClassVar[tuple[str, ...]] = (
        "alias_ids",
        "entities",
        "popularity",
        "length_starts",
        "hashes",
        "hash_positions",
        "grams",
        "offsets",
        "postings",
    )


def _trigram_postings(keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted distinct trigram codes, offsets, postings) of ``keys``, vectorised with numpy."""
    padded = [f" {k} " for k in keys]
    lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    n_grams = np.maximum(lengths - 2, 0)
    key_of_gram = np.repeat(np.arange(len(keys), dtype=np.int64), n_grams)
    starts = np.cumsum(lengths) - lengths
    first_gram = np.cumsum(n_grams) - n_grams
    pos = np.arange(int(n_grams.sum()), dtype=np.int64) - np.repeat(first_gram - starts, n_grams)
    grams = (codes[pos] << 42) | (codes[pos + 1] << 21) | codes[pos + 2]
    del codes, pos
    order = np.argsort(grams, kind="stable")  # stable: each gram's keys stay in increasing order
    grams, postings = grams[order], key_of_gram[order]
    del order, key_of_gram
    fresh = np.ones(len(grams), dtype=bool)  # a key's repeated trigram ("banana": "ana" twice) once
    fresh[1:] = (grams[1:] != grams[:-1]) | (postings[1:] != postings[:-1])
    grams, postings = grams[fresh], postings[fresh].astype(np.int32)
    first = np.flatnonzero(np.concatenate([[True], grams[1:] != grams[:-1]])) if len(grams) else grams[:0]
    return grams[first], np.append(first, len(grams)).astype(np.int64), postings


def build_index(keys: list[str], alias_ids, entities, popularity) -> IndexArrays:
    """The index of ``keys``, which must be sorted by length (then by popularity)."""
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    assert np.all(lengths[1:] >= lengths[:-1]), "keys must be sorted by length"
    length_starts = np.searchsorted(lengths, np.arange((lengths.max() if len(keys) else 0) + 2))
    grams, offsets, postings = _trigram_postings(keys)
    hashes = key_hashes(keys)
    by_hash = np.argsort(hashes, kind="stable")
    return IndexArrays(
        "\n".join(keys).encode("utf-8"),
        np.asarray(alias_ids, dtype=np.int64),
        np.asarray(entities, dtype=np.int64),
        np.asarray(popularity, dtype=np.int64),
        length_starts.astype(np.int64),
        hashes[by_hash],
        by_hash.astype(np.int32),
        grams,
        offsets,
        postings,
    )


class NameIndex:
    """Fuzzy name search over an :class:`IndexArrays` (see the module docstring)."""

    def __init__(
        self,
        arrays: IndexArrays,
        min_share: float = 0.5,
        pool: int = 300,
        relaxed_share: float = 0.2,
        relaxed_pool: int = 400,
        relax_below: float = 88.0,
        max_generate: int = 3000,
        max_longer: int = 50,
        common: float = 0.2,
    ):
        self.arrays = arrays
        self.min_share, self.pool = min_share, pool
        self.max_generate, self.max_longer = max_generate, max_longer
        self.relaxed_share, self.relaxed_pool, self.relax_below = relaxed_share, relaxed_pool, relax_below
        self.common = common
        ends = np.flatnonzero(np.frombuffer(arrays.keys, dtype=np.uint8) == 10)
        n = len(arrays.alias_ids)
        # shape: (n_keys,) the length of the key at each position
        self._lengths = np.repeat(
            np.arange(len(arrays.length_starts) - 1, dtype=np.int64), np.diff(arrays.length_starts)
        )
        self._starts = np.concatenate([[0], ends + 1]).astype(np.int64)[:n]
        self._ends = np.concatenate([ends, [len(arrays.keys)]]).astype(np.int64)[:n]

    def __len__(self) -> int:
        return len(self.arrays.alias_ids)

    def key(self, position: int) -> str:
        """The name key at a position."""
        return self.arrays.keys[self._starts[position] : self._ends[position]].decode("utf-8")

    def _position_of_length(self, length: int) -> int:
        starts = self.arrays.length_starts
        return int(starts[min(max(length, 0), len(starts) - 1)])

    def exact(self, keys: list[str]) -> np.ndarray:
        """Positions of the names equal to any of ``keys``."""
        if not keys or not len(self):
            return np.zeros(0, dtype=np.int64)
        wanted = key_hashes(keys)
        lo = np.searchsorted(self.arrays.hashes, wanted, side="left").tolist()
        hi = np.searchsorted(self.arrays.hashes, wanted, side="right").tolist()
        keep = set(keys)
        found = [p for a, b in zip(lo, hi, strict=True) for p in self.arrays.hash_positions[a:b].tolist()]
        return np.array([p for p in found if self.key(p) in keep], dtype=np.int64)

    def shorter(self, key: str) -> np.ndarray:
        """Names equal to the key or to a run of its words (at least 1/8 of it: WRatio's floor for its
        0.9 partial scale)."""
        words = key.split()
        runs = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
        return self.exact([r for r in runs if len(r) * 8 >= len(key)])

    def _lists(self, key: str) -> tuple[list[np.ndarray], int]:
        """The posting lists of the key's trigrams that some name has (rarest first), and ``|G|``."""
        query = trigram_codes(key)
        grams = self.arrays.grams
        if not len(grams):
            return [], len(query)
        at = np.searchsorted(grams, query).clip(max=len(grams) - 1)
        present = at[grams[at] == query].tolist()
        offsets, postings = self.arrays.offsets, self.arrays.postings
        return sorted((postings[offsets[i] : offsets[i + 1]] for i in present), key=len), len(query)

    def similar(self, key: str, lists: list[np.ndarray], n_query: int) -> tuple[np.ndarray, np.ndarray]:
        """Names of similar length sharing trigrams with the key, each set best first by the Dice
        coefficient of the trigram sets: (strong: lengths within 1.5x and ``min_share`` of the trigrams;
        weak: within 2x and ``relaxed_share``). Counts are exact, except that a list covering more than
        ``common`` of the length band is not counted (and the thresholds drop by one for each)."""
        n = len(key)
        lo, hi = self._position_of_length(math.floor(n / 2) + 1), self._position_of_length(math.ceil(n * 2))
        empty = np.zeros(0, dtype=np.int64)
        if hi <= lo or not lists:
            return empty, empty
        parts, skipped = [], 0
        for plist in lists:
            a, b = plist.searchsorted(np.array([lo, hi], dtype=plist.dtype)).tolist()  # same dtype: no copy
            if b - a > self.common * (hi - lo) and parts:
                skipped += 1
            else:
                parts.append(plist[a:b])
        merged = np.sort(np.concatenate(parts))  # sorting the postings beats counting over the band
        if not len(merged):
            return empty, empty
        first = np.flatnonzero(np.concatenate([[True], merged[1:] != merged[:-1]]))
        shared = np.diff(np.append(first, len(merged)))
        enough = shared >= max(1, math.ceil(self.relaxed_share * n_query) - skipped)
        candidates, shared = merged[first[enough]].astype(np.int64), shared[enough]
        lengths = self._lengths[candidates]
        dice = shared / (n_query + lengths + 2)
        close = (lengths * 1.5 > n) & (lengths < n * 1.5)
        strong = close & (shared >= max(1, math.ceil(self.min_share * n_query) - skipped))
        weak = ~strong
        return self._best(candidates[strong], dice[strong], self.pool), self._best(
            candidates[weak], dice[weak], self.relaxed_pool
        )

    @staticmethod
    def _best(candidates: np.ndarray, rank: np.ndarray, limit: int) -> np.ndarray:
        if len(rank) > limit:
            top = np.argpartition(-rank, limit)[:limit]
            candidates, rank = candidates[top], rank[top]
        return candidates[np.lexsort((candidates, -rank))].astype(np.int64)

    def longer(self, key: str, lists: list[np.ndarray], n_query: int) -> np.ndarray:
        """The most popular names at least 1.5 times longer that have every trigram of the key."""
        if len(lists) < n_query or not lists:
            return np.zeros(0, dtype=np.int64)
        start = self._position_of_length(math.ceil(len(key) * 1.5))
        rarest = lists[0]
        a = int(rarest.searchsorted(rarest.dtype.type(start)))
        candidates = rarest[a : a + self.max_generate]
        for plist in lists[1:]:
            if not len(candidates):
                break
            at = plist.searchsorted(candidates).clip(max=len(plist) - 1)
            candidates = candidates[plist[at] == candidates]
        if len(candidates) > self.max_longer:
            popular = self.arrays.popularity[candidates]
            candidates = candidates[np.argpartition(-popular, self.max_longer)[: self.max_longer]]
        return candidates.astype(np.int64)

    def search(self, key: str, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores 0–100) of the candidate names, best first; ties: most popular first.

        The weak similar-length names are scored only when fewer than ``k`` entities score
        ``relax_below`` or more: they can only fill the top ``k`` behind the strong ones.
        """
        lists, n_query = self._lists(key)
        strong, weak = self.similar(key, lists, n_query)
        positions = np.unique(np.concatenate([self.shorter(key), strong, self.longer(key, lists, n_query)]))
        scores = self._scores(key, positions)
        good = self.arrays.entities[positions[scores >= self.relax_below]]
        if len(np.unique(good)) < k and len(weak):
            weak = np.setdiff1d(weak, positions, assume_unique=True)
            positions = np.concatenate([positions, weak])
            scores = np.concatenate([scores, self._scores(key, weak)])
        order = np.lexsort((positions, -self.arrays.popularity[positions], -scores))
        keep = order[scores[order] > 0]
        return positions[keep], scores[keep]

    def keys_at(self, positions: np.ndarray) -> list[str]:
        """The name keys at many positions."""
        blob = self.arrays.keys
        return [
            blob[a:b].decode("utf-8")
            for a, b in zip(self._starts[positions].tolist(), self._ends[positions].tolist(), strict=True)
        ]

    def _scores(self, key: str, positions: np.ndarray) -> np.ndarray:
        if not len(positions):
            return np.zeros(0, dtype=np.float32)
        return name_scores(key, self.keys_at(positions))
