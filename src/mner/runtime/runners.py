"""Running a model: on ONNX Runtime (no torch) when its folder holds a current export, else on PyTorch.

``load_tagger(folder, runtime="auto")`` gives an ``OnnxTagger`` when ``model.onnx`` was exported from the
folder's weights (``mner export``, ``mner train``), else the PyTorch ``Tagger``; both tag the same way
(``mner.model.runner.TaggerBase``): the same batches (``mner.inputs.batching``, NumPy), the emissions from the runtime,
BIO-constrained Viterbi. ``load_image_encoder`` likewise gives the image encoder on ONNX Runtime.

Threads: ``mner.runtime.ort.set_threads(n)`` is the one setting for torch, ONNX Runtime and the image decoder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mner.data import MnerInputError, Post
from mner.decoding import viterbi
from mner.inputs.batching import BatchBuilder, flat_arrays, input_builder
from mner.model.folder import ModelFolder, file_sha256, open_model_folder
from mner.model.runner import TaggerBase
from mner.runtime.ort import image_encoder_path, onnx_session, set_threads, threads
from mner.vision.encoder import PixelEncoder

if TYPE_CHECKING:
    from mner.vision import EncoderConfig, ImageFeatures

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx", "torch")


def onnx_export_state(folder: ModelFolder) -> str | None:
    """Why the folder's ONNX export cannot be used (missing, stale, damaged), or None when it can."""
    onnx, meta_path = folder.path / "model.onnx", folder.path / "onnx.json"
    if not (onnx.is_file() and meta_path.is_file()):
        return "no ONNX export (mner export MODEL makes one)"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "onnx.json is not valid JSON"
    weights = folder.record.get("weights_sha256") or file_sha256(folder.weights)
    if meta.get("weights_sha256") != weights:
        return "the ONNX export was made from other weights (mner export MODEL renews it)"
    if meta.get("onnx_sha256") not in (None, file_sha256(onnx)):
        return "model.onnx differs from the one exported (a damaged or replaced file)"
    return None


class OnnxTagger(TaggerBase):
    """A model folder's ONNX export: emissions from ONNX Runtime, Viterbi in NumPy."""

    def __init__(self, folder: ModelFolder):
        self.folder, self.config, self.record = folder, folder.config, folder.record
        meta = json.loads((folder.path / "onnx.json").read_text(encoding="utf-8"))
        self.session = onnx_session(folder.path / "model.onnx")
        self.names = [i.name for i in self.session.get_inputs()]  # the exporter drops inputs no output reads
        self.start, self.end = np.asarray(meta["start"], np.float32), np.asarray(meta["end"], np.float32)
        self.transitions = np.asarray(meta["transitions"], np.float32)
        self.batches = BatchBuilder(self.config, input_builder(self.config))

    def decode_batch(
        self, posts: Sequence[Post], images: Mapping[str, ImageFeatures] | None
    ) -> list[list[str]]:
        batch = self.batches.build(posts, images=images)
        arrays = flat_arrays(batch)
        emissions = self.session.run(None, {name: arrays[name] for name in self.names})[0]
        paths = viterbi(emissions, batch.mask, self.start, self.end, self.transitions)
        return [[self.config.tags[i] for i in path] for path in paths]


def load_tagger(folder: str | Path | None = None, runtime: str = "auto") -> TaggerBase:
    """A model folder (None: the shipped default; a packaged model's name) on the runtime asked for:
    "onnx", "torch", or "auto" (ONNX Runtime when the folder holds a current export, else PyTorch).

    Raises:
        MnerInputError: a bad folder; "onnx" asked for a folder without a usable export; "torch" without torch.
    """
    if runtime not in RUNTIMES:
        raise MnerInputError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    model = open_model_folder(folder)
    if runtime != "torch":
        problem = onnx_export_state(model)
        if problem is None:
            from mner.model.folder import check_weights_hash

            check_weights_hash(model)
            return OnnxTagger(model)
        if runtime == "onnx":
            raise MnerInputError(f"cannot run on ONNX Runtime: {problem}", model.path)
    try:
        from mner.model.torch_model import load_tagger as load_torch
    except ImportError:
        raise MnerInputError(
            "this model has no ONNX export and PyTorch is not installed: pip install "
            "'mner[train]', then mner export MODEL",
            model.path,
        ) from None
    set_threads(threads())
    return load_torch(model.path)


class OnnxImageEncoder(PixelEncoder):
    """An image encoder on ONNX Runtime: the same features as ``mner.vision.ImageEncoder``."""

    def __init__(self, config: EncoderConfig, path: Path):
        from mner.vision import imagenet_labels

        self.config, self.labels = config, imagenet_labels(config.labels)
        self.session = onnx_session(path)
        self.vector_dim = int(self.session.get_outputs()[1].shape[-1])

    def encode_pixels(self, pixels: np.ndarray) -> list[ImageFeatures]:
        """Features of a batch of preprocessed images, uint8 of shape (B, input_size, input_size, 3)."""
        from mner.vision import ImageFeatures

        cfg = self.config
        expected = (cfg.input_size, cfg.input_size, 3)
        if pixels.ndim != 4 or pixels.shape[1:] != expected or pixels.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 pixels of shape (B, {', '.join(map(str, expected))}), "
                f"got {pixels.dtype} {pixels.shape}"
            )
        x = (pixels.transpose(0, 3, 1, 2).astype(np.float32) - cfg.mean) / cfg.std  # shape: (B, 3, S, S)
        regions, vectors, probs = self.session.run(None, {"pixels": np.ascontiguousarray(x)})
        top = np.argsort(-probs, axis=1, kind="stable")[:, : cfg.top_k]  # shape: (B, top_k)
        return [
            ImageFeatures(
                [(self.labels[i], float(probs[b, i])) for i in top[b]],
                np.ascontiguousarray(regions[b]),
                vectors[b].copy(),
                cfg.backbone,
            )
            for b in range(len(pixels))
        ]


def load_image_encoder(config: EncoderConfig, runtime: str = "auto"):
    """The image encoder on ONNX Runtime (its ONNX file made once from the weights package when torch is
    installed), or on PyTorch."""
    if runtime != "torch":
        path = image_encoder_path(config)
        if not path.is_file():
            try:
                from mner.runtime.export import export_image_encoder

                path = export_image_encoder(config)
            except ImportError:
                if runtime == "onnx":
                    raise MnerInputError(
                        f"the image encoder's ONNX file {path} is missing and PyTorch is not "
                        "installed to make it: pip install 'mner[train]'"
                    ) from None
                path = None
        if path is not None:
            return OnnxImageEncoder(config, path)
    from mner.vision import load_encoder

    set_threads(threads())
    return load_encoder(config)
