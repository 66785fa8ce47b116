"""Export to ONNX, for inference without torch (``mner.runtime.runners``).

- ``export_model``: a tagger's network up to its emissions (encoder, fusion, the emission layer) as
  ``model.onnx`` in its model folder, with ``onnx.json``: the inputs (the arrays ``mner.inputs.batching`` builds, by
  path), the tags and the CRF's constrained scores for NumPy Viterbi, the SHA-256 of the weights it was
  exported from. The BiLSTM reads each post reversed within its own length instead of a packed sequence,
  the same function in operations ONNX has; the export is checked against PyTorch on sample posts.
- ``export_image_encoder``: an EfficientNet-Lite backbone (normalised pixels → regions, image vector, class
  probabilities) as an ONNX file in mner's cache folder (``MNER_CACHE``, default ``~/.cache/mner``), made
  once from the installed weights package.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mner.data import Post
from mner.decoding import bio_penalties
from mner.inputs.batching import flat_arrays, with_arrays
from mner.model.folder import file_sha256
from mner.model.network import as_tensors
from mner.runtime.ort import image_encoder_path, onnx_session

OPSET = 17
ONNX_FORMAT = 1


class _UnpackedBiLstm(nn.Module):
    """A bidirectional ``nn.LSTM`` as two one-way LSTMs: the backward one reads each sequence reversed within
    its own length (what packing does), so padding never reaches a real position."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        size, hidden = lstm.input_size, lstm.hidden_size
        self.forward_lstm = nn.LSTM(size, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(size, hidden, batch_first=True)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(self.forward_lstm, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l0").data)
            getattr(self.backward_lstm, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l0_reverse").data)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1, keepdim=True)  # shape: (batch, 1)
        steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # shape: (1, seq_len)
        order = torch.where(steps < lengths, lengths - 1 - steps, steps)  # each sequence reversed in place
        index = order.unsqueeze(-1).expand(-1, -1, x.size(2))
        forward, _ = self.forward_lstm(x)  # shape: (batch, seq_len, hidden)
        backward, _ = self.backward_lstm(x.gather(1, index))
        backward = backward.gather(1, order.unsqueeze(-1).expand(-1, -1, backward.size(2)))
        return torch.cat([forward, backward], dim=-1) * mask.unsqueeze(-1).to(x.dtype)


class _Emissions(nn.Module):
    """The network's emissions as a function of flat tensors (ONNX inputs are a flat list)."""

    def __init__(self, network, template, names: list[str]):
        super().__init__()
        self.network, self.template, self.names = network, template, names
        encoder = network.encoder
        if getattr(encoder, "lstm", None) is not None:
            self.bilstm = _UnpackedBiLstm(encoder.lstm)
            encoder._bilstm = lambda x, mask: self.bilstm(encoder.dropout(x), mask)  # this copy only

    def forward(self, *arrays: torch.Tensor) -> torch.Tensor:
        batch = with_arrays(self.template, dict(zip(self.names, arrays, strict=True)))
        return self.network.emissions(batch)


def _sample_posts(config) -> tuple[list[Post], dict]:
    """Two posts of different lengths with every channel the config reads, and their image features."""
    from mner.vision import ImageFeatures

    context = "Named entities:1. Kobe Bryant (person)2. Paris (city)Reasoning:Kobe Bryant is in Paris."
    posts = [
        Post(
            ("Kobe", "Bryant", "lands", "in", "Paris", "#Lakers"),
            id="a",
            image="a",
            caption="a man on a plane",
            knowledge=("kobe", "bryant", "isA", "basketball", "player"),
            context=context,
        ),
        Post(
            ("Paris",),
            id="b",
            image="b",
            caption="a city",
            knowledge=("paris", "isA", "city"),
            context=context,
        ),
    ]
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


def export_model(tagger, folder: str | Path) -> Path:
    """Write ``model.onnx`` and ``onnx.json`` for a saved tagger into its folder; returns the ONNX path.

    Raises:
        RuntimeError: the exported graph does not reproduce PyTorch's emissions on the sample posts.
    """
    import copy

    folder = Path(folder)
    network = copy.deepcopy(tagger.network).cpu().eval()
    posts, images = _sample_posts(tagger.config)
    sample = tagger.batches.build(posts, images=images)
    sample.tags = None
    arrays = flat_arrays(sample)
    names = list(arrays)
    dynamic = {}  # every axis may vary but a width the config fixes (characters a word, vector sizes)
    for name, array in arrays.items():
        fixed = {array.ndim - 1} if name.endswith(("char_ids", "word_vectors", "regions")) else set()
        dynamic[name] = {d: f"{name}_{d}" for d in range(array.ndim) if d not in fixed}
    wrapper = _Emissions(network, sample, names).eval()
    tensors = tuple(as_tensors(arrays).values())
    path = folder / "model.onnx"
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding, not the user's concern
        expected = copy.deepcopy(tagger.network).cpu().eval().emissions(as_tensors(sample)).numpy()
        torch.onnx.export(
            wrapper,
            tensors,
            str(path),
            input_names=names,
            output_names=["emissions"],
            dynamic_axes={**dynamic, "emissions": {0: "batch", 1: "tokens"}},
            opset_version=OPSET,
            dynamo=False,
        )
    crf = tagger.network.crf
    start_penalty, penalty = bio_penalties(tagger.config.tags)
    meta = {
        "format": ONNX_FORMAT,
        "inputs": names,
        "tags": list(tagger.config.tags),
        "start": (crf.start_transitions.detach().cpu().numpy() + start_penalty).tolist(),
        "end": crf.end_transitions.detach().cpu().numpy().tolist(),
        "transitions": (crf.transitions.detach().cpu().numpy() + penalty).tolist(),
        "weights_sha256": file_sha256(folder / "model.safetensors"),
        "onnx_sha256": file_sha256(path),
    }
    (folder / "onnx.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    session = onnx_session(path)
    got = session.run(None, {i.name: arrays[i.name] for i in session.get_inputs()})[0]
    if not np.allclose(got, expected, atol=1e-4):
        raise RuntimeError(
            f"{path}: the ONNX emissions differ from PyTorch's by up to "
            f"{float(np.abs(got - expected).max()):.2e}"
        )
    return path


def _pooling_matrix(size: int, grid: int) -> torch.Tensor:
    """(grid, size): row i averages the cells adaptive average pooling gives bin i (floor/ceil bounds)."""
    matrix = torch.zeros(grid, size)
    for i in range(grid):
        start, end = (i * size) // grid, -(-((i + 1) * size) // grid)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class _ImageHead(nn.Module):
    """Normalised pixels (batch, 3, size, size) → regions (batch, grid², C), unit image vector, probabilities.

    A feature map larger than the grid is pooled by fixed matrices (adaptive average pooling for this input
    size, which ONNX cannot express with a dynamic size)."""

    def __init__(self, network: nn.Module, grid: int, input_size: int):
        super().__init__()
        self.network, self.grid = network, grid
        with torch.inference_mode():
            h, w = network.extract_features(torch.zeros(1, 3, input_size, input_size)).shape[-2:]
        self.pool = (h, w) != (grid, grid)
        self.register_buffer("rows", _pooling_matrix(h, grid))
        self.register_buffer("cols", _pooling_matrix(w, grid))

    def forward(self, x: torch.Tensor):
        fmap = self.network.extract_features(x)  # shape: (batch, C, h, w)
        pooled = fmap.mean(dim=(2, 3))  # shape: (batch, C)
        probs = self.network._fc(pooled).softmax(dim=-1)  # shape: (batch, 1000)
        if self.pool:
            fmap = self.rows @ fmap @ self.cols.T  # shape: (batch, C, grid, grid)
        regions = fmap.flatten(2).transpose(1, 2)  # shape: (batch, grid², C)
        return regions, nn.functional.normalize(pooled, dim=-1), probs


def export_image_encoder(config) -> Path:
    """The ONNX file of an image encoder (``mner.vision.EncoderConfig``), made once from its weights package."""
    from mner.vision import load_encoder

    path = image_encoder_path(config)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(config, device="cpu")
    head = _ImageHead(
        encoder.network.to(memory_format=torch.contiguous_format), config.grid, config.input_size
    ).eval()
    sample = torch.zeros(2, 3, config.input_size, config.input_size)
    partial = path.with_name(path.name + f".{os.getpid()}.part")
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
    return path
