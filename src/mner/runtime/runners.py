"""Running a saved model: on ONNX Runtime (no torch) when its folder holds a current export, else on PyTorch.

``load_runner(folder, runtime="auto", threads=1)`` gives an ``OnnxRunner`` when ``model.onnx`` was exported
from the folder's weights by a mner that builds the same batch layout, else the PyTorch ``TorchModel``
(saying once on stderr why the export was not used). Both are ``mner.model.runner.Runner``s: the same batches,
the same BIO-constrained Viterbi; only the emissions come from the runtime. This is the loader the
``mner.serving.Pipeline`` uses: tag through the Pipeline, which fills each post's channels first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mner.data import MnerInputError, Post, Span
from mner.decoding import CrfScores
from mner.inputs.batching import (
    BATCH_LAYOUT,
    BatchBuilder,
    TaggingBatch,
    batch_layout,
    flat_arrays,
    input_builder,
)
from mner.model.folder import ModelFolder, check_weights_hash, file_sha256, open_model_folder
from mner.model.runner import Runner
from mner.runtime.ort import check_threads, onnx_session, torch_threads

if TYPE_CHECKING:
    from mner.vision import ImageFeatures

log = logging.getLogger("mner.runtime")

RUNTIMES = ("auto", "onnx", "torch")
ONNX_FORMAT = 2  # what mner.runtime.export writes (kept here too: reading an export needs no torch)
RENEW = "renew it with: mner export {folder}"
CRF_KEYS = ("crf.start_transitions", "crf.end_transitions", "crf.transitions")
_said: set[str] = set()  # the folders whose stale export was already explained on stderr


def onnx_export_state(folder: ModelFolder) -> str | None:
    """Why the folder's ONNX export cannot be used (missing, made from other weights, by a mner with another
    batch layout, damaged), or None when it can."""
    onnx, meta_path = folder.path / "model.onnx", folder.path / "onnx.json"
    renew = RENEW.format(folder=folder.path)
    if not (onnx.is_file() and meta_path.is_file()):
        return f"it has no ONNX export ({renew})"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"onnx.json is not valid JSON ({renew})"
    if not isinstance(meta, dict):
        return f"onnx.json is not a JSON object ({renew})"
    if meta.get("format") != ONNX_FORMAT or meta.get("layout") != BATCH_LAYOUT:
        return (
            f"its ONNX export has format {meta.get('format')}, batch layout {meta.get('layout')}; this mner reads "
            f"format {ONNX_FORMAT}, batch layout {BATCH_LAYOUT} ({renew})"
        )
    weights = folder.record.get("weights_sha256") or file_sha256(folder.weights)
    if meta.get("weights_sha256") != weights:
        return f"its ONNX export was made from other weights ({renew})"
    if meta.get("onnx_sha256") != file_sha256(onnx):
        return f"model.onnx differs from the one exported: a damaged or replaced file ({renew})"
    if meta.get("tags") != list(folder.config.tags):
        return f"onnx.json names other tags than config.json ({renew})"
    unknown = sorted(set(meta.get("inputs") or []) - set(batch_layout(folder.config)))
    if unknown or not meta.get("inputs"):
        return (
            f"its ONNX export reads inputs this mner does not build ({', '.join(unknown) or 'none'}; {renew})"
        )
    return None


def crf_scores_from_weights(folder: ModelFolder) -> CrfScores:
    """The CRF's scores from the folder's weights (read without torch), BIO-constrained over its tags.

    Raises:
        MnerInputError: the weights lack them, or they are not finite.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(folder.weights), framework="numpy") as weights:
            names = set(weights.keys())  # a safe_open handle has keys(), no membership test
            missing = [k for k in CRF_KEYS if k not in names]
            if missing:
                raise MnerInputError(f"the weights hold no {missing[0]!r}: not an mner model", folder.weights)
            scores = CrfScores(*(np.asarray(weights.get_tensor(k), dtype=np.float32) for k in CRF_KEYS))
    except (SafetensorError, OSError) as err:
        raise MnerInputError(f"corrupt safetensors file ({err})", folder.weights) from None
    try:
        scores.check(str(folder.weights))
    except ValueError as err:
        raise MnerInputError(str(err).removeprefix(f"{folder.weights}: "), folder.weights) from None
    return scores.constrained(folder.config.tags)


class OnnxRunner(Runner):
    """A model folder's ONNX export: emissions from ONNX Runtime; the CRF's scores from the weights."""

    runtime = "onnx"

    def __init__(self, folder: ModelFolder, threads: int = 1):
        self.folder, self.config, self.record = folder, folder.config, folder.record
        self.session = onnx_session(folder.path / "model.onnx", threads)
        self.names = [i.name for i in self.session.get_inputs()]
        layout = set(batch_layout(self.config))
        unknown = [name for name in self.names if name not in layout]
        if unknown:  # onnx.json said otherwise: a graph that is not the one exported
            raise MnerInputError(
                f"model.onnx reads {unknown[0]!r}, which this mner does not build (batch layout "
                f"{BATCH_LAYOUT}): {RENEW.format(folder=folder.path)}",
                folder.path / "model.onnx",
            )
        self.scores = crf_scores_from_weights(folder)
        self.batches = BatchBuilder(self.config, input_builder(self.config, threads))

    def emissions(self, batch: TaggingBatch) -> np.ndarray:
        arrays = flat_arrays(batch)
        return self.session.run(None, {name: arrays[name] for name in self.names})[0]

    def crf_scores(self) -> CrfScores:
        return self.scores


class RoutedRunner(Runner):
    """A context model with its paths (``mner.model.combine``): each post goes to the model for what its context
    gives (the context reading's route, ``mner.channels.readers``) — a typed list naming something in the post:
    the context model; names but no kinds that name a type: the untyped path (a context model trained on lists
    with their kinds hidden), where there is one; nothing (no context, one that cannot be read, one about another
    post): the text path, a model of the text alone."""

    def __init__(self, context: Runner, text: Runner | None = None, untyped: Runner | None = None):
        self.paths = {"typed": context, "untyped": untyped or context, "none": text or context}
        self.context, self.text, self.untyped = context, text, untyped
        self.config, self.record, self.batches = context.config, context.record, context.batches
        self.runtime = context.runtime

    def runners(self) -> list[Runner]:
        return list({id(r): r for r in self.paths.values()}.values())

    def route(self, post: Post) -> str:
        from mner.channels.readers import READERS
        from mner.inputs.markers import join

        tokens = join(post.tokens)[0] if self.config.join_markers else post.tokens
        return READERS["context"].route(self.config.context, tokens, post.context)

    def uses_context(self, post: Post) -> bool:
        return self.paths[self.route(post)] is not self.text

    def _routed(self, posts: Sequence[Post], tag) -> list:
        """``tag(runner, posts)`` of each post's runner, in the posts' order."""
        routes = [self.paths[self.route(p)] for p in posts]
        done = {}
        for runner in {id(r): r for r in routes}.values():
            group = [p for p, r in zip(posts, routes, strict=True) if r is runner]
            done[id(runner)] = iter(tag(runner, group))
        return [next(done[id(r)]) for r in routes]

    def predict_tags(
        self,
        posts: Sequence[Post],
        batch_size: int = 64,
        images: Mapping[str, ImageFeatures] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[str]]:
        tags = self._routed(posts, lambda runner, group: runner.predict_tags(group, batch_size, images))
        if progress is not None:
            progress(len(posts), len(posts))
        return tags

    def predict(
        self, posts: Sequence[Post], batch_size: int = 64, images: Mapping[str, ImageFeatures] | None = None
    ) -> list[list[Span]]:
        return self._routed(posts, lambda runner, group: runner.predict(group, batch_size, images))


def load_runner(folder: str | Path | None = None, runtime: str = "auto", threads: int = 1) -> Runner:
    """A model folder (None: the shipped default; a packaged model's name) on the runtime asked for: "onnx",
    "torch", or "auto" (ONNX Runtime when the folder holds a usable export, else PyTorch, saying why once on
    stderr). ``threads``: ONNX Runtime's threads, or torch's (a process-wide setting in torch).

    Raises:
        MnerInputError: a bad folder; "onnx" asked for a folder without a usable export (the message says how
        to renew it); a PyTorch run without torch.
    """
    if runtime not in RUNTIMES:
        raise MnerInputError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    threads = check_threads(threads)
    model = open_model_folder(folder)
    paths = {key: model.record.get(f"{key}_path") for key in ("text", "untyped")}
    if not any(paths.values()):
        return _load_one(model, runtime, threads)
    loaded = {}
    for key, name in paths.items():  # a context model with its paths: all on the runtime asked for
        if name is None:
            continue
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise MnerInputError(
                f"'{key}_path' {name!r}: expected the name of a folder inside it", model.path
            )
        same = [loaded[k] for k, n in paths.items() if k in loaded and n == name]  # one folder for two paths
        loaded[key] = same[0] if same else load_runner(model.path / name, runtime, threads)
    return RoutedRunner(_load_one(model, runtime, threads), loaded.get("text"), loaded.get("untyped"))


def _load_one(model: ModelFolder, runtime: str, threads: int) -> Runner:
    problem = None
    if runtime != "torch":
        problem = onnx_export_state(model)
        if problem is None:
            check_weights_hash(model)
            return OnnxRunner(model, threads)
        if runtime == "onnx":
            raise MnerInputError(f"cannot run on ONNX Runtime: {problem}", model.path)
    try:
        from mner.model.torch_model import load_torch_model
    except ImportError:
        why = f"{problem}, and " if problem else ""
        raise MnerInputError(
            f"cannot run this model on PyTorch: {why}PyTorch is not installed (pip install 'mner[train]')",
            model.path,
        ) from None
    if problem is not None and str(model.path) not in _said:
        _said.add(str(model.path))
        log.warning("%s: runs on PyTorch: %s", model.path, problem)
    torch_model = load_torch_model(model.path)
    torch_threads(threads)
    return torch_model
