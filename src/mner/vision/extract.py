"""Batch extraction of a folder of images into a feature cache, resumable and with a summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mner.data import MnerInputError
from mner.vision.cache import FeatureCache
from mner.vision.config import EncoderConfig
from mner.vision.decode import IMAGE_SUFFIXES, ImageError
from mner.vision.encoder import ImageEncoder, load_encoder


@dataclass
class ExtractSummary:
    """What a run did: ``failed`` maps file name → reason."""

    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    ignored: int = 0  # files in the folder that are not images by their suffix

    def lines(self) -> list[str]:
        head = f"done {self.done}, skipped {self.skipped} (already in the cache), failed {len(self.failed)}"
        if self.ignored:
            head += f"; ignored {self.ignored} file{'s' * (self.ignored != 1)} without an image suffix"
        return [head] + [f"failed: {name}: {reason}" for name, reason in sorted(self.failed.items())]


def list_images(folder: str | Path) -> tuple[list[Path], int]:
    """Image files of a folder (not recursive, hidden files left out), sorted; and how many others there were."""
    folder = Path(folder)
    if not folder.exists():
        raise MnerInputError("folder not found", folder)
    if not folder.is_dir():
        raise MnerInputError("expected a folder of images, got a file", folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return images, len(files) - len(images)


def extract_folder(
    images_dir: str | Path,
    cache_path: str | Path,
    encoder: ImageEncoder | EncoderConfig,
    batch_size: int = 16,
    progress: bool = False,
    load=load_encoder,
) -> ExtractSummary:
    """Encode every image of ``images_dir`` (id = file stem) not yet in the cache at ``cache_path``.

    Given a config, the encoder is loaded only when some image needs encoding. Failures are recorded in
    the cache with their reasons and retried on the next run. Each batch is committed on its own.
    """
    files, ignored = list_images(images_dir)
    config = encoder if isinstance(encoder, EncoderConfig) else encoder.config
    summary = ExtractSummary(ignored=ignored)
    with FeatureCache.for_writing(cache_path, config) as cache:
        todo, seen = [], {}
        for path in files:
            if path.stem in seen:
                summary.failed[path.name] = f"duplicate image id {path.stem!r} (also {seen[path.stem]})"
            elif path.stem in cache:
                summary.skipped += 1
            else:
                todo.append(path)
            seen.setdefault(path.stem, path.name)
        if not todo:
            return summary
        if isinstance(encoder, EncoderConfig):
            encoder = load(
                encoder
            )  # an encoder config → an encoder (PyTorch unless the caller says otherwise)
        _encode_into(cache, encoder, todo, batch_size, progress, summary)
    return summary


def _encode_into(
    cache: FeatureCache,
    encoder: ImageEncoder,
    todo: list[Path],
    batch_size: int,
    progress: bool,
    summary: ExtractSummary,
) -> None:
    from tqdm import tqdm

    results = encoder.iter_encode_files(todo, batch_size=batch_size)
    with tqdm(
        total=len(todo), unit="img", desc="images", disable=None if progress else True, leave=False
    ) as bar:
        for i, (path, result) in enumerate(zip(todo, results, strict=True), start=1):
            if isinstance(result, ImageError):
                cache.add_failure(path.stem, path.name, result.reason)
                summary.failed[path.name] = result.reason
            else:
                cache.add(path.stem, result)
                summary.done += 1
            if i % batch_size == 0 or i == len(todo):
                cache.commit()
            bar.update(1)
