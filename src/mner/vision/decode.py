"""Opening user images safely (files, or bytes such as an upload): one RGB array of the encoder's input size,
or an ImageError saying why not.

Handled here, not in the model: EXIF orientation, alpha (composited on white), palette/grayscale/CMYK modes,
animated images (first frame), tiny images, and decompression bombs (refused from the header, never decoded).
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mner.data import MnerInputError

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from mner.vision.config import EncoderConfig

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
)
_EXIF_ORIENTATION = 0x0112


class ImageError(MnerInputError):
    """An image file that cannot be used: names the file and the reason."""


def load_pixels(path: str | Path, config: EncoderConfig) -> np.ndarray:
    """Decode ``path`` into the encoder's input: uint8 array (input_size, input_size, 3), RGB.

    Raises:
        ImageError: missing, empty, not an image, truncated, too small, or over ``config.max_pixels``.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError("file not found", path)
    if path.is_dir():
        raise ImageError("expected an image file, got a directory", path)
    if path.stat().st_size == 0:
        raise ImageError("empty file (0 bytes)", path)
    return _decode(path, config, path)


def pixels_from_bytes(data: bytes, config: EncoderConfig, name: str = "<upload>") -> np.ndarray:
    """Like ``load_pixels``, for an image held in memory (an upload); errors name it ``name``.

    Raises:
        ImageError: empty, not an image, truncated, too small, or over ``config.max_pixels``.
    """
    if not data:
        raise ImageError("empty file (0 bytes)", name)
    return _decode(io.BytesIO(data), config, name)


def _decode(source: Path | io.BytesIO, config: EncoderConfig, name: str | Path) -> np.ndarray:
    """The checks and decoding shared by files and in-memory images; ``name`` is what errors call it."""
    from PIL import Image, UnidentifiedImageError

    _ignore_pil_bomb_warning()
    try:
        with Image.open(source) as image:
            _check_size(image.size, config, name)
            # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale when the photo is much larger than
            # the input; 2-8x less decoding, and the result still has at least the input's resolution.
            side = config.input_size + config.crop_padding
            image.draft(None, (side, side))
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            rgb = to_rgb(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)", name) from None
    except PermissionError:
        raise ImageError("cannot read the file (permission denied)", name) from None
    except Image.DecompressionBombError as err:
        # Pillow refuses on its own above twice its limit, before we see the size; its message has the numbers.
        numbers = [f"{int(n):,}" for n in re.findall(r"(\d+) pixels", str(err))]
        detail = (
            f"image has {numbers[0]} pixels, over Pillow's {numbers[1]}-pixel limit"
            if len(numbers) == 2
            else "image is over Pillow's pixel limit"
        )
        raise ImageError(f"{detail} (decompression bomb); not decoded", name) from None
    except Exception as err:  # noqa: BLE001 - a malformed file may make any decoder raise anything
        if "truncated" in str(err):
            raise ImageError("truncated image data", name) from None
        raise ImageError(f"cannot decode image data ({type(err).__name__}: {err})", name) from None
    resized = resize_to_input(rgb, config)
    resized = _apply_orientation(resized, orientation)
    return np.array(resized, dtype=np.uint8)  # shape: (input_size, input_size, 3); a writable copy


def pixels_from_image(image: PILImage.Image, config: EncoderConfig) -> np.ndarray:
    """The encoder's input from an in-memory PIL image (any mode; orientation is taken as already applied)."""
    if image.width < config.min_side or image.height < config.min_side:
        raise ImageError(
            f"image is {image.width}×{image.height} pixels; the smallest accepted side is {config.min_side}"
        )
    return np.array(resize_to_input(to_rgb(image), config), dtype=np.uint8)


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """RGB of the (first frame of the) image; transparent pixels become white, not their hidden colour."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16/32-bit grayscale: Pillow's conversion would clip everything above 255 to white; scale instead
        values = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 255.0)
        return Image.fromarray(np.rint(values * (255.0 / peak)).clip(0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")  # L, P, CMYK, YCbCr, 1 → RGB; RGB → a loaded copy


def resize_to_input(image: PILImage.Image, config: EncoderConfig) -> PILImage.Image:
    """Square ``input_size`` image by the config's resize policy."""
    from PIL import Image

    size = config.input_size
    if config.resize == "squash":
        return image.resize((size, size), Image.Resampling.BILINEAR)
    # center_crop: the central square, shrunk by size / (size + crop_padding) as in EfficientNet's eval
    width, height = image.size
    side = min(width, height) * size / (size + config.crop_padding)
    left, top = (width - side) / 2, (height - side) / 2
    return image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))


def _check_size(size: tuple[int, int], config: EncoderConfig, path: str | Path) -> None:
    width, height = size
    if width * height > config.max_pixels:
        raise ImageError(
            f"image is {width}×{height} ({width * height:,} pixels), over the "
            f"{config.max_pixels:,}-pixel limit (decompression bomb); not decoded",
            path,
        )
    if width < config.min_side or height < config.min_side:
        raise ImageError(
            f"image is {width}×{height} pixels; the smallest accepted side is {config.min_side}", path
        )


def _apply_orientation(image: PILImage.Image, orientation: int) -> PILImage.Image:
    # The output is square and both resize policies are symmetric, so rotating after resizing equals
    # rotating first, on 50x fewer pixels.
    from PIL import Image

    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return image if method is None else image.transpose(method)


def _ignore_pil_bomb_warning() -> None:
    # Pillow warns (and would decode) between its limit and twice that; load_pixels refuses those itself from
    # the header, so the warning is only noise. Re-added on each call (filterwarnings drops the duplicate),
    # since callers such as pytest reset the filters.
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
