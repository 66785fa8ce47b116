"""Tweet-sized test photos for the benchmarks: distinct crops of scikit-image's bundled photos."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")


def tweet_photos(count: int, size: tuple[int, int], seed: int = 0) -> Iterator:
    """``count`` distinct PIL images of ``size`` (width, height): random crops, flips and colour shifts."""
    import skimage.data
    from PIL import Image

    width_out, height_out = size
    rng = np.random.default_rng(seed)
    sources = [np.asarray(getattr(skimage.data, name)())[..., :3] for name in PHOTOS]
    for i in range(count):
        source = sources[i % len(sources)]
        height, width = source.shape[:2]
        crop_w = int(width * rng.uniform(0.7, 1.0))
        crop_h = min(height, int(crop_w * height_out / width_out))
        top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
        crop = source[top : top + crop_h, left : left + crop_w].astype(np.float32)
        crop = np.clip(crop * rng.uniform(0.8, 1.2, size=3), 0, 255).astype(np.uint8)  # colour shift
        yield Image.fromarray(crop[:, ::-1] if rng.random() < 0.5 else crop).resize(size)
