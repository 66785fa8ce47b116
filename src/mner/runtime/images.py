"""The image encoder on ONNX Runtime (no torch), or on PyTorch: ``load_image_encoder``. Both run the one image
head (``mner.vision.network.ImageHead``) and give the same ``ImageFeatures``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mner.data import MnerInputError
from mner.runtime.ort import image_encoder_path, onnx_session, torch_threads
from mner.vision.encoder import PixelEncoder, check_pixels, features_from_outputs

if TYPE_CHECKING:
    from mner.vision import EncoderConfig, ImageFeatures


class OnnxImageEncoder(PixelEncoder):
    """The image head exported to ONNX (``mner.runtime.export.export_image_encoder``) on ONNX Runtime."""

    def __init__(self, config: EncoderConfig, path: Path, threads: int = 1):
        from mner.vision import imagenet_labels

        self.config, self.labels = config, imagenet_labels(config.labels)
        self.session = onnx_session(path, threads)
        self.vector_dim = int(self.session.get_outputs()[1].shape[-1])

    def encode_pixels(self, pixels: np.ndarray) -> list[ImageFeatures]:
        """Features of a batch of preprocessed images, uint8 of shape (B, input_size, input_size, 3)."""
        cfg = self.config
        check_pixels(pixels, cfg)
        x = (pixels.transpose(0, 3, 1, 2).astype(np.float32) - cfg.mean) / cfg.std  # shape: (B, 3, S, S)
        regions, vectors, probs = self.session.run(None, {"pixels": np.ascontiguousarray(x)})
        return features_from_outputs(regions, vectors, probs, self.labels, cfg)


def _say_once_per_file(path: Path) -> None:
    """The first image command makes the encoder's ONNX file (seconds of silence otherwise): say what it does."""
    import sys

    print(
        f"note: making the image encoder's ONNX file once (10-20 s; kept in {path.parent}, set MNER_CACHE to move it)",
        file=sys.stderr,
        flush=True,
    )


def load_image_encoder(config: EncoderConfig, runtime: str = "auto", threads: int = 1) -> PixelEncoder:
    """The image encoder on ONNX Runtime (its ONNX file made once from the weights package when torch is
    installed), or on PyTorch (``runtime="torch"``, or "auto" where the ONNX file cannot be made)."""
    if runtime != "torch":
        path = image_encoder_path(config)
        if not path.is_file():
            try:
                from mner.runtime.export import export_image_encoder

                _say_once_per_file(path)
                path = export_image_encoder(config)
            except ImportError:
                if runtime == "onnx":
                    raise MnerInputError(
                        f"the image encoder's ONNX file {path} is missing and PyTorch is not "
                        "installed to make it: pip install 'mner[train]'"
                    ) from None
                path = None
        if path is not None:
            return OnnxImageEncoder(config, path, threads)
    from mner.vision import load_encoder

    encoder = load_encoder(config)
    torch_threads(threads)
    return encoder
