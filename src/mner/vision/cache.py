"""The feature cache: one SQLite file per image set and encoder config, keyed by image id.

Each batch is one transaction, so a run that is killed leaves the cache as it was after the last finished
batch (SQLite's journal rolls back the rest) and a rerun resumes from there. Failures are kept with their
reasons, so "no image" is explicit, never a zero vector passed off as features.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np

from mner.data import MnerInputError
from mner.vision.config import EncoderConfig
from mner.vision.encoder import ImageFeatures

FORMAT_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS features (
    image_id TEXT PRIMARY KEY, attributes TEXT NOT NULL,
    n_regions INTEGER NOT NULL, dim INTEGER NOT NULL, regions BLOB NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS failures (image_id TEXT PRIMARY KEY, file TEXT NOT NULL, reason TEXT NOT NULL);
"""


class FeatureCache:
    """Image features by image id for one encoder config; open with ``open`` or ``for_writing``."""

    def __init__(self, path: Path, connection: sqlite3.Connection, config: EncoderConfig):
        self.path = path
        self.config = config
        self._db = connection

    # ------------------------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | Path, backbone: str | None = None) -> FeatureCache:
        """An existing cache; with ``backbone``, one made with another backbone raises MnerInputError."""
        path = Path(path)
        if not path.is_file():
            raise MnerInputError("feature cache not found" if not path.exists() else "expected a file", path)
        cache = cls(path, *cls._connect(path))
        if backbone is not None and cache.backbone != backbone:
            cache.close()
            raise MnerInputError(
                f"feature cache made with backbone {cache.backbone!r}, expected {backbone!r}", path
            )
        return cache

    @classmethod
    def for_writing(cls, path: str | Path, config: EncoderConfig) -> FeatureCache:
        """A new cache, or an existing one made with exactly ``config`` (to add to it)."""
        path = Path(path)
        if path.exists():
            cache = cls.open(path, backbone=config.backbone)
            if cache.config != config:
                ours, theirs = cache.config.to_dict(), config.to_dict()
                diff = ", ".join(
                    f"{k}={ours[k]!r} there, {theirs[k]!r} here" for k in ours if ours[k] != theirs[k]
                )
                cache.close()
                raise MnerInputError(f"feature cache made with another encoder config ({diff})", path)
            return cache
        if not path.parent.is_dir():
            raise MnerInputError("folder of the feature cache does not exist", path)
        db = sqlite3.connect(path)
        with db:
            db.executescript(_SCHEMA)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("format", str(FORMAT_VERSION)), ("encoder", json.dumps(config.to_dict()))],
            )
        return cls(path, db, config)

    @staticmethod
    def _connect(path: Path) -> tuple[sqlite3.Connection, EncoderConfig]:
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if meta.get("format") != str(FORMAT_VERSION):
                raise MnerInputError(
                    f"feature cache format {meta.get('format')!r}, expected '{FORMAT_VERSION}'", path
                )
            return db, EncoderConfig.from_dict(json.loads(meta["encoder"]))
        except (sqlite3.DatabaseError, KeyError, ValueError) as err:
            db.close()
            if isinstance(err, MnerInputError):
                raise
            raise MnerInputError("not an mner feature cache", path) from None

    def close(self) -> None:
        """Close the file; features added since the last ``commit`` are dropped."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ reading

    @property
    def backbone(self) -> str:
        return self.config.backbone

    def __contains__(self, image_id: object) -> bool:
        """True when the image has features (a recorded failure does not count)."""
        row = self._db.execute("SELECT 1 FROM features WHERE image_id = ?", (image_id,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0]

    def __iter__(self) -> Iterator[str]:
        """Image ids with features, sorted."""
        return (
            row[0] for row in self._db.execute("SELECT image_id FROM features ORDER BY image_id").fetchall()
        )

    def get(self, image_id: str) -> ImageFeatures | None:
        """The image's features, or None when it has none (never extracted, or failed: see ``missing``)."""
        row = self._db.execute(
            "SELECT attributes, n_regions, dim, regions, vector FROM features WHERE image_id = ?", (image_id,)
        ).fetchone()
        if row is None:
            return None
        attributes, n_regions, dim, regions, vector = row
        return ImageFeatures(
            [(label, p) for label, p in json.loads(attributes)],
            np.frombuffer(regions, dtype="<f4").reshape(n_regions, dim).astype(np.float32),  # shape: (N, C)
            np.frombuffer(vector, dtype="<f4").astype(np.float32),  # shape: (C,)
            self.backbone,
        )

    @property
    def missing(self) -> dict[str, str]:
        """Images that failed, by id: the reason, naming the file."""
        rows = self._db.execute("SELECT image_id, file, reason FROM failures ORDER BY image_id")
        return {image_id: f"{file}: {reason}" for image_id, file, reason in rows}

    # ------------------------------------------------------------------------------------ writing

    def add(self, image_id: str, features: ImageFeatures) -> None:
        """Store features (replacing a recorded failure); visible to other readers after ``commit``."""
        if features.backbone not in (None, self.backbone):
            raise ValueError(f"features from backbone {features.backbone!r} in a {self.backbone!r} cache")
        regions = np.ascontiguousarray(features.regions, dtype="<f4")  # shape: (N, C)
        self._db.execute("DELETE FROM failures WHERE image_id = ?", (image_id,))
        self._db.execute(
            "INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?)",
            (
                image_id,
                json.dumps(features.attributes),
                regions.shape[0],
                regions.shape[1],
                regions.tobytes(),
                np.ascontiguousarray(features.vector, dtype="<f4").tobytes(),
            ),
        )

    def add_failure(self, image_id: str, file: str, reason: str) -> None:
        """Record that the image could not be used, and why."""
        self._db.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?)", (image_id, file, reason))

    def commit(self) -> None:
        self._db.commit()
