"""Vision stage throughput, image-match similarities and peak memory; prints Markdown for benchmarks/vision.md.

Usage: python benchmarks/bench_vision.py [--images 200] [--backbones lite0 lite2] [--batch-sizes 1 16]
                                         [--runtimes torch onnx] [--memory-images 1000] [--threads N]

Images are tweet-sized JPEGs (1200×675, quality 85) made from scikit-image's bundled photos (random crops,
flips and colour shifts, so every file is different). "end to end" is ImageEncoder.encode_files: JPEG decode,
EXIF, resize, forward pass, top-5, regions and vector; "CPU ms/image" is this process's CPU time (all
threads) over that run, less bent than wall time when other jobs share the cores. Peak memory is the max RSS
of a separate process that runs extract_folder (the `mner images extract` code path) over --memory-images
images into a fresh cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from photos import PHOTOS, tweet_photos


def make_tweet_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct 1200×675 JPEGs (quality 85) cut from the bundled photos."""
    paths = []
    for i, image in enumerate(tweet_photos(count, (1200, 675), seed)):
        paths.append(folder / f"{i:05d}.jpg")
        image.save(paths[-1], quality=85)
    return paths


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:.1f}"


def throughput(
    backbone: str, runtime: str, paths: list[Path], batch_sizes: list[int], threads: int
) -> list[str]:
    """Rows of the throughput table for one backbone on one runtime (torch: PyTorch; onnx: ONNX Runtime)."""
    from mner.runtime.images import load_image_encoder
    from mner.vision import EncoderConfig
    from mner.vision.decode import load_pixels

    load_image_encoder(
        EncoderConfig.for_backbone(backbone), runtime, threads
    )  # the one-time ONNX export is not timed
    started = time.perf_counter()
    encoder = load_image_encoder(EncoderConfig.for_backbone(backbone), runtime, threads)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    pixels = np.stack([load_pixels(p, encoder.config) for p in paths])  # shape: (n, S, S, 3)
    decode_s = time.perf_counter() - started
    rows = []
    for batch_size in batch_sizes:
        encoder.encode_pixels(pixels[:batch_size])  # warm-up
        started = time.perf_counter()
        for i in range(0, len(pixels), batch_size):
            encoder.encode_pixels(pixels[i : i + batch_size])
        forward_s = time.perf_counter() - started
        started, cpu_started = time.perf_counter(), time.process_time()
        results = encoder.encode_files(paths, batch_size=batch_size)
        total_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        assert not [r for r in results if not hasattr(r, "vector")], "benchmark images must all decode"
        rows.append(
            f"| {backbone} | {runtime} | {encoder.config.input_size} | {batch_size} | {rate(len(paths), total_s)} "
            f"| {1000 * cpu_s / len(paths):.0f} | {1000 * forward_s / len(paths):.1f} "
            f"| {rate(len(paths), decode_s)} | {load_s:.1f} |"
        )
    return rows


def similarity_matrix(folder: Path) -> list[str]:
    """Image-vector cosine of each photo (JPEG q90) with each photo re-encoded (JPEG q75 at 80 % size)."""
    import skimage.data
    from PIL import Image

    from mner.vision import load_encoder

    encoder = load_encoder("lite0", device="cpu")
    originals, copies = [], []
    for name in PHOTOS:
        image = Image.fromarray(getattr(skimage.data, name)())
        image.save(folder / f"{name}.jpg", quality=90)
        image.resize((int(image.width * 0.8), int(image.height * 0.8))).save(
            folder / f"{name}-q75.jpg", quality=75
        )
        originals.append(encoder.encode_file(folder / f"{name}.jpg").vector)
        copies.append(encoder.encode_file(folder / f"{name}-q75.jpg").vector)
    matrix = np.stack(originals) @ np.stack(copies).T  # shape: (4, 4)
    rows = ["| original ↓ / re-encoded → | " + " | ".join(PHOTOS) + " |", "|---" * (len(PHOTOS) + 1) + "|"]
    for name, row in zip(PHOTOS, matrix, strict=True):
        rows.append(
            f"| {name} | " + " | ".join(f"**{v:.3f}**" if v >= 0.9 else f"{v:.3f}" for v in row) + " |"
        )
    return rows


def peak_memory(folder: Path, count: int) -> str:
    """Max RSS of a fresh process extracting ``count`` images (lite0, batch 16) into a new cache."""
    paths = make_tweet_photos(folder, count, seed=1)
    cache = folder.parent / "memory-run.sqlite"
    code = (
        "import sys; from mner.vision import EncoderConfig, extract_folder; "
        "s = extract_folder(sys.argv[1], sys.argv[2], EncoderConfig(), batch_size=16); "
        "print(s.done, len(s.failed))"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(cache)], check=True, capture_output=True, text=True
    ).stdout.split()
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert out == [str(len(paths)), "0"], out
    return (
        f"{count} images (lite0, batch 16, into a new cache): peak RSS {peak_mib:.0f} MiB, "
        f"{seconds:.0f} s wall incl. model load ({count / seconds:.1f} images/s), "
        f"cache file {cache.stat().st_size / 2**20:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="images per throughput run (0: skip)")
    parser.add_argument("--backbones", nargs="+", default=["lite0", "lite2"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--memory-images", type=int, default=1000, help="0 to skip the peak-memory run")
    parser.add_argument(
        "--runtimes", nargs="+", default=["torch", "onnx"], help="torch and/or onnx (ONNX Runtime)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for torch and ONNX Runtime (mner's default)"
    )
    args = parser.parse_args()

    import torch

    from mner.runtime.ort import DEFAULT_THREADS, check_threads, torch_threads

    args.threads = check_threads(args.threads or DEFAULT_THREADS)
    torch_threads(args.threads)
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average before: {os.getloadavg()[0]:.2f}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.images:
            (tmp / "tweets").mkdir()
            paths = make_tweet_photos(tmp / "tweets", args.images)
            print(f"## Throughput ({args.images} tweet-sized JPEGs, 1200×675)\n")
            print(
                "| backbone | runtime | input px | batch | end to end images/s (decode included) "
                "| CPU ms/image, all threads | forward ms/image | decode-only images/s | model load s |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            for backbone in args.backbones:
                for runtime in args.runtimes:
                    for row in throughput(backbone, runtime, paths, args.batch_sizes, args.threads):
                        print(row, flush=True)
        print("\n## Image-vector cosine similarity (lite0): same photo re-encoded vs different photos\n")
        (tmp / "similarity").mkdir()
        print("\n".join(similarity_matrix(tmp / "similarity")))
        if args.memory_images:
            (tmp / "memory").mkdir()
            print(f"\n## Peak memory\n\n{peak_memory(tmp / 'memory', args.memory_images)}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
