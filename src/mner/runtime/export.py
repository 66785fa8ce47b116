"""Export to ONNX, for inference without torch (``mner.runtime.runners``). Needs torch.

- ``export_model``: a model's network up to its emissions (encoder, fusion, the emission layer) as
  ``model.onnx`` in its folder, with ``onnx.json``: the export's format, the batch layout its inputs follow
  (``mner.inputs.batching.BATCH_LAYOUT``; checked on load), the input names, the tags, and the SHA-256 of the
  weights it was made from and of the graph. The CRF's scores are not copied: the runtime reads them from the
  (hash-checked) weights. The encoder gives its own export form (``TextEncoder.exportable``); the export is
  checked against PyTorch on sample posts (``ChannelSpec.samples``) and written under a temporary name first.
- ``export_image_encoder``: the image head (``mner.vision.network.ImageHead``: normalised pixels → regions,
  image vector, class probabilities) as an ONNX file in mner's cache folder (``MNER_CACHE``, default
  ``~/.cache/mner``), made once from the installed weights package.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mner.channels.readers import READERS
from mner.channels.spec import CHANNELS
from mner.data import MnerInputError, Post
from mner.inputs.batching import BATCH_LAYOUT, flat_arrays, with_arrays
from mner.model.folder import file_sha256
from mner.model.network import as_tensors
from mner.runtime.ort import OPSET, image_encoder_path, onnx_session

ONNX_FORMAT = 2  # 2: the batch layout is recorded and checked; the CRF's scores come from the weights


class _Emissions(nn.Module):
    """The network's emissions as a function of flat tensors (ONNX inputs are a flat list)."""

    def __init__(self, network, template, names: list[str]):
        super().__init__()
        self.network, self.template, self.names = network, template, names

    def forward(self, *arrays: torch.Tensor) -> torch.Tensor:
        batch = with_arrays(self.template, dict(zip(self.names, arrays, strict=True)))
        return self.network.emissions(batch)


def sample_posts(config) -> tuple[list[Post], dict]:
    """Two posts of different lengths with every channel the config reads (each word channel's field from its
    ``ChannelSpec.samples``; knowledge as triples' words), and their image features."""
    from mner.vision import ImageFeatures

    tokens = [("Kobe", "Bryant", "lands", "in", "Paris", "#Lakers"), ("Paris",)]
    knowledge = [("kobe", "bryant", "isA", "basketball", "player"), ("paris", "isA", "city")]
    posts = []
    for i, key in enumerate(("a", "b")):
        fields = {
            spec.field: spec.samples[i]
            for spec in (CHANNELS[c] for c in config.word_channels)
            if spec.samples is not None
        }
        posts.append(Post(tokens[i], id=key, image=key, knowledge=knowledge[i], **fields))
    rng = np.random.default_rng(0)
    images = {
        key: ImageFeatures(
            [("sports car", 0.6), ("cab", 0.3)],
            rng.standard_normal((49, config.image_dim)).astype(np.float32),
            np.ones(config.image_dim, dtype=np.float32) / config.image_dim**0.5,
        )
        for key in ("a", "b")
    }
    return posts, images


def _float16_initializers(path: Path, smallest: int = 256) -> None:
    """Store the graph's float32 weights that float16 holds exactly (a model rounded by ``round_to_float16``:
    all of them, LSTM gates reordered or not) as float16, each read through a Cast back to float32 — half the
    file, the same emissions (ONNX Runtime folds the casts once, when the session is made)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = onnx.load(str(path))
    casts = []
    for init in graph.graph.initializer:
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims, dtype=np.int64) < smallest:
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):
            continue  # a weight made from others in the export (not exactly float16): kept as it is
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}.float16"))
        casts.append(helper.make_node("Cast", [f"{name}.float16"], [name], to=TensorProto.FLOAT))
    nodes = [*casts, *graph.graph.node]  # before every node that reads them (nodes are in topological order)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    onnx.save(graph, str(path))


def export_model(model, folder: str | Path) -> Path:
    """Write ``model.onnx`` and ``onnx.json`` for a saved ``TorchModel`` into its folder; returns the ONNX path.

    Raises:
        RuntimeError: the exported graph does not reproduce PyTorch's emissions on the sample posts.
        MnerInputError: the files cannot be written (a full disk), naming the file.
    """
    import copy

    folder = Path(folder)
    network = model.network.exportable().cpu().eval()
    posts, images = sample_posts(model.config)
    sample = model.batches.build(posts, images=images)
    arrays = flat_arrays(sample)
    names = list(arrays)
    dynamic = {}  # every axis may vary but a width the config fixes (characters a word, vector sizes)
    widths = ("char_ids", "word_vectors", "regions", *(a for u in READERS.values() for a in u.fixed_width))
    for name, array in arrays.items():
        fixed = {array.ndim - 1} if name.endswith(widths) else set()
        if name.endswith(".features"):  # (batch, tokens, layers, dim): the last two fixed
            fixed = {array.ndim - 2, array.ndim - 1}
        dynamic[name] = {d: f"{name}_{d}" for d in range(array.ndim) if d not in fixed}
    wrapper = _Emissions(network, sample, names).eval()
    tensors = tuple(as_tensors(arrays).values())
    path = folder / "model.onnx"
    partial = folder / f".model.onnx.{os.getpid()}.part"
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # the exporter's notes on constant folding, not the user's concern
            expected = copy.deepcopy(model.network).cpu().eval().emissions(as_tensors(sample)).numpy()
            torch.onnx.export(
                wrapper,
                tensors,
                str(partial),
                input_names=names,
                output_names=["emissions"],
                dynamic_axes={**dynamic, "emissions": {0: "batch", 1: "tokens"}},
                opset_version=OPSET,
                dynamo=False,
            )
        if model.record.get("weights_dtype") == "float16":
            _float16_initializers(partial)
        session = onnx_session(partial)
        got = session.run(None, {i.name: arrays[i.name] for i in session.get_inputs()})[0]
        if not np.allclose(got, expected, atol=1e-4):
            raise RuntimeError(
                f"{path}: the ONNX emissions differ from PyTorch's by up to "
                f"{float(np.abs(got - expected).max()):.2e}"
            )
        meta = {
            "format": ONNX_FORMAT,
            "layout": BATCH_LAYOUT,
            "inputs": [i.name for i in session.get_inputs()],  # the exporter drops inputs no output reads
            "tags": list(model.config.tags),
            "weights_sha256": file_sha256(folder / "model.safetensors"),
            "onnx_sha256": file_sha256(partial),
        }
        _write_whole(folder / "onnx.json", (json.dumps(meta) + "\n").encode("utf-8"))
        os.replace(
            partial, path
        )  # whole or absent: a full disk or a kill leaves no half graph under the name
    except OSError as err:
        raise MnerInputError(f"cannot write the ONNX export ({err.strerror or err})", path) from None
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it over ``path``."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def export_image_encoder(config) -> Path:
    """The ONNX file of an image encoder config (``mner.vision.EncoderConfig``), made once from its weights
    package: the same ``ImageHead`` the PyTorch encoder runs."""
    from mner.vision import load_encoder
    from mner.vision.network import ImageHead

    path = image_encoder_path(config)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(config, device="cpu")
    head = ImageHead(
        encoder.network.to(memory_format=torch.contiguous_format), config.grid, config.input_size
    ).eval()
    sample = torch.zeros(2, 3, config.input_size, config.input_size)
    partial = path.with_name(path.name + f".{os.getpid()}.part")
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head,
                (sample,),
                str(partial),
                input_names=["pixels"],
                output_names=["regions", "vector", "probabilities"],
                dynamic_axes={
                    "pixels": {0: "batch"},
                    "regions": {0: "batch"},
                    "vector": {0: "batch"},
                    "probabilities": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(partial, path)  # whole or absent: a killed export leaves no half file under the name
    except OSError as err:
        raise MnerInputError(
            f"cannot write the image encoder's ONNX file ({err.strerror or err})", path
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return path
