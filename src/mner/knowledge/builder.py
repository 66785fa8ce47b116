"""Writing a KG file: a builder that importers feed, and that derives types, concepts and the name index.

The builder writes to a temporary file beside the target and renames it over the target only when
everything succeeded: an interrupted or failed build leaves the old KG as it was.

Phases: importers add entities, aliases, triples, same-as ids, concepts, type votes and image ids →
:meth:`KGBuilder.derive` writes the entities, removes duplicate triples, computes degrees, coarse types
and conceptual triples → gazetteers may add more entities (typed) → :meth:`KGBuilder.finish` builds
the name index and renames the file into place.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from mner.data import MnerInputError
from mner.knowledge.index import build_index
from mner.knowledge.names import name_key
from mner.knowledge.store import COARSE_TYPES, INDEXES, SCHEMA, SCHEMA_VERSION

_BATCH = 50_000


@dataclass
class ImportReport:
    """What one importer did: counts by kind, and every skipped line with its file and line number."""

    source: str
    counts: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, int | None, str]] = field(default_factory=list)

    def skip(self, path: str | Path, line: int | None, reason: str) -> None:
        self.skipped.append((os.path.basename(path), line, reason))
        self.counts["skipped lines"] += 1

    def summary(self) -> str:
        parts = [f"{n:,} {kind}" for kind, n in self.counts.items() if n]
        return f"{self.source}: " + (", ".join(parts) if parts else "nothing imported")

    def skipped_lines(self) -> list[str]:
        return [
            f"{name}:{line}: {reason}" if line is not None else f"{name}: {reason}"
            for name, line, reason in self.skipped
        ]


class KGBuilder:
    """Collects a KG and writes it as one SQLite file (see :mod:`mner.knowledge.store`)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        if self.out.is_dir():
            raise MnerInputError("expected a KG file path, got a directory", self.out)
        if not self.out.parent.is_dir():
            raise MnerInputError(f"folder {str(self.out.parent)!r} does not exist", self.out)
        self.tmp = self.out.with_name(f".{self.out.name}.building-{os.getpid()}")
        self.tmp.unlink(missing_ok=True)
        self.conn = sqlite3.connect(self.tmp)
        self.conn.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
        self.ids: dict[str, int] = {}
        self.same_as: dict[str, int] = {}
        self.keys: list[str] = []
        self.labels: list[str | None] = []
        self.descriptions: list[str | None] = []
        self.types: list[str | None] = []
        self.relations: dict[str, int] = {}
        self._alias_keys: set[tuple[int, str]] = set()
        self._buffers: dict[str, list] = {"aliases": [], "triples": [], "concepts": [], "image_ids": []}
        self._written = 0  # entities already written to the file
        self._votes: list[tuple[int, str | None, float]] = []
        self.reports: list[ImportReport] = []
        self.started = time.perf_counter()

    # ---------------------------------------------------------------------------------- entities

    def handle(self, key: str) -> int | None:
        """The handle of an entity by its source id or a same-as id."""
        found = self.ids.get(key)
        return found if found is not None else self.same_as.get(key)

    def add_entity(
        self,
        key: str,
        label: str | None = None,
        description: str | None = None,
        aliases: tuple[str, ...] | list[str] = (),
        type: str | None = None,
    ) -> int | None:
        """A new entity's handle; None if ``key`` is already an entity (a duplicate)."""
        if key in self.ids:
            return None
        handle = len(self.keys) + 1
        self.ids[key] = handle
        self.keys.append(key)
        self.labels.append(label)
        self.descriptions.append(description)
        self.types.append(type)
        for name in ([label] if label else []) + list(aliases):
            self.add_alias(handle, name)
        return handle

    def ensure_entity(self, key: str) -> int:
        """The handle of ``key``, creating an unlabelled entity if there is none."""
        found = self.handle(key)
        return found if found is not None else self.add_entity(key)

    def set_label(self, handle: int, label: str) -> None:
        """Give an entity its label (a further label becomes an alias)."""
        if self.labels[handle - 1] is None:
            self.labels[handle - 1] = label
        self.add_alias(handle, label)

    def set_description(self, handle: int, description: str) -> None:
        if self.descriptions[handle - 1] is None:
            self.descriptions[handle - 1] = description

    def add_alias(self, handle: int, name: str) -> None:
        key = name_key(name)
        if key and (handle, key) not in self._alias_keys:
            self._alias_keys.add((handle, key))
            self._push("aliases", (handle, name, key))

    def add_same_as(self, key: str, handle: int) -> None:
        """Another id of the same entity (a Wikidata QID, a DBpedia URI)."""
        if key not in self.ids:
            self.same_as.setdefault(key, handle)

    def add_triple(self, head: int, relation: str, tail: int) -> None:
        rel = self.relations.setdefault(relation, len(self.relations) + 1)
        self._push("triples", (head, rel, tail))

    def add_concept(self, handle: int, obj: str, source: str, rank: int) -> None:
        """A conceptual fact ``(entity, isA, obj)``; lower ``rank`` = more specific."""
        obj = " ".join(obj.lower().split())
        if obj:
            self._push("concepts", (handle, obj, source, rank))

    def vote_type(self, handle: int, coarse_type: str | None, weight: float) -> None:
        """Evidence for an entity's coarse type (None: it names a concept, not an entity)."""
        self._votes.append((handle, coarse_type, weight))

    def add_image_id(self, image_id: str, handle: int) -> None:
        self._push("image_ids", (image_id, handle))

    def add_person_names(self, names: list[str]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO person_names (key) VALUES (?)", ((n,) for n in names))

    # ------------------------------------------------------------------------------------ writing

    _SQL: ClassVar[dict[str, str]] = {
        "aliases": "INSERT INTO aliases (entity, name, key) VALUES (?, ?, ?)",
        "triples": "INSERT INTO triples (head, relation, tail) VALUES (?, ?, ?)",
        "concepts": "INSERT OR IGNORE INTO concepts (entity, object, source, rank) VALUES (?, ?, ?, ?)",
        "image_ids": "INSERT OR IGNORE INTO image_ids (image_id, entity) VALUES (?, ?)",
    }

    def _push(self, table: str, row: tuple) -> None:
        buffer = self._buffers[table]
        buffer.append(row)
        if len(buffer) >= _BATCH:
            self._flush(table)

    def _flush(self, table: str | None = None) -> None:
        for name in [table] if table else list(self._buffers):
            if self._buffers[name]:
                self.conn.executemany(self._SQL[name], self._buffers[name])
                self._buffers[name] = []

    def _write_entities(self, degree: np.ndarray | None = None) -> None:
        deg = degree.tolist() if degree is not None else None
        rows = (
            (
                i + 1,
                self.keys[i],
                self.labels[i],
                self.descriptions[i],
                self.types[i],
                deg[i + 1] if deg else 0,
            )
            for i in range(self._written, len(self.keys))
        )
        self.conn.executemany(
            "INSERT INTO entities (id, key, label, description, type, degree) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        self._written = len(self.keys)

    def derive(self) -> Counter:
        """Write the entities; dedupe triples; compute degrees, coarse types and conceptual triples."""
        from mner.knowledge.concepts import derive_concepts_and_types

        self._flush()
        self.conn.executemany(
            "INSERT INTO relations (id, name) VALUES (?, ?)",
            ((i, name) for name, i in self.relations.items()),
        )
        self.conn.executemany(
            "INSERT OR IGNORE INTO same_as (key, entity) VALUES (?, ?)", self.same_as.items()
        )
        n_staged = self.conn.execute("SELECT count(*) FROM triples").fetchone()[0]
        self.conn.executescript(
            "CREATE TABLE unique_triples AS SELECT DISTINCT head, relation, tail FROM triples ORDER BY head;"
            "DROP TABLE triples; ALTER TABLE unique_triples RENAME TO triples;" + INDEXES
        )
        n_unique = self.conn.execute("SELECT count(*) FROM triples").fetchone()[0]
        self._write_entities(self._degrees())
        derive_concepts_and_types(self, self._votes)
        self._votes = []
        self._flush()
        typed = self.conn.execute("SELECT count(*) FROM entities WHERE type IS NOT NULL").fetchone()[0]
        concepts = self.conn.execute("SELECT count(*) FROM concepts").fetchone()[0]
        return Counter(
            {
                "duplicate triples dropped": n_staged - n_unique,
                "typed entities": typed,
                "conceptual triples": concepts,
            }
        )

    def _degrees(self) -> np.ndarray:
        """Triples per entity (either end), by handle."""
        degree = np.zeros(len(self.keys) + 1, dtype=np.int64)  # shape: (entities + 1,)
        for column in ("head", "tail"):
            rows = self.conn.execute(f"SELECT {column}, count(*) FROM triples GROUP BY {column}").fetchall()
            if rows:
                ids, counts = np.array(rows, dtype=np.int64).T
                degree[ids] += counts
        return degree

    def write_types(self, types: dict[int, str]) -> None:
        """Set derived coarse types (explicitly typed entities keep theirs)."""
        assert all(t in COARSE_TYPES for t in types.values())
        self.conn.executemany(
            "UPDATE entities SET type = ? WHERE id = ? AND type IS NULL", ((t, h) for h, t in types.items())
        )

    def finish(self, sources: list[dict] | None = None) -> Path:
        """Build the name index, write the metadata, and move the file into place."""
        self._write_entities()
        self._flush()
        self._write_name_index()
        meta = {
            "schema_version": str(SCHEMA_VERSION),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "build_seconds": f"{time.perf_counter() - self.started:.1f}",
            "sources": json.dumps(sources or [], ensure_ascii=False),
        }
        self.conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())
        self.conn.commit()
        self.conn.execute("PRAGMA analysis_limit = 1000")
        self.conn.execute("ANALYZE")
        self.conn.commit()
        self.conn.close()
        os.replace(self.tmp, self.out)
        return self.out

    def _write_name_index(self) -> None:
        rows = self.conn.execute(
            "SELECT a.id, a.entity, e.degree, a.key FROM aliases a JOIN entities e ON e.id = a.entity"
        ).fetchall()
        rows.sort(key=lambda r: (len(r[3]), -r[2], r[1], r[0]))  # by length: see mner.knowledge.index
        columns = [np.fromiter((r[i] for r in rows), dtype=np.int64, count=len(rows)) for i in range(3)]
        arrays = build_index([r[3] for r in rows], *columns)
        del rows
        blobs = [("keys", "u1", arrays.keys)]
        for name in arrays.BLOBS:
            array = getattr(arrays, name)
            dtype = array.dtype.newbyteorder("<").str
            blobs.append((name, dtype, array.astype(dtype).tobytes()))
        self.conn.execute("DELETE FROM blobs")
        self.conn.executemany("INSERT INTO blobs (name, dtype, data) VALUES (?, ?, ?)", blobs)

    def abort(self) -> None:
        """Drop the temporary file; the target is untouched."""
        try:
            self.conn.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
