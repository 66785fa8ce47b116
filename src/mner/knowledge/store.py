"""The KG store: the interface the model code sees, and its default, an embedded SQLite file.

A KG file is written once by :mod:`mner.knowledge.builder` (``mner kg build``); afterwards only entity
image vectors are added (``mner kg add-images``). A server-backed store (PostgreSQL with pg_trgm and
pgvector) would implement the same :class:`KnowledgeStore` protocol.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import numpy as np

from mner.data import MnerInputError
from mner.knowledge.index import IndexArrays, NameIndex
from mner.knowledge.names import check_mention

SCHEMA_VERSION = 1
COARSE_TYPES = ("PER", "LOC", "ORG", "OTHER")
SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entities (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, label TEXT, description TEXT,
    type TEXT CHECK (type IN ('PER', 'LOC', 'ORG', 'OTHER')), degree INTEGER NOT NULL DEFAULT 0,
    n_images INTEGER NOT NULL DEFAULT 0);
CREATE TABLE aliases (id INTEGER PRIMARY KEY, entity INTEGER NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL);
CREATE TABLE same_as (key TEXT PRIMARY KEY, entity INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE relations (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE triples (head INTEGER NOT NULL, relation INTEGER NOT NULL, tail INTEGER NOT NULL);
CREATE TABLE concepts (entity INTEGER NOT NULL, object TEXT NOT NULL, source TEXT NOT NULL,
    rank INTEGER NOT NULL, PRIMARY KEY (entity, object)) WITHOUT ROWID;
CREATE TABLE image_ids (image_id TEXT PRIMARY KEY, entity INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE images (id INTEGER PRIMARY KEY, entity INTEGER NOT NULL, source TEXT NOT NULL,
    dim INTEGER NOT NULL, vector BLOB NOT NULL);
CREATE INDEX images_entity ON images (entity);
CREATE TABLE person_names (key TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE blobs (name TEXT PRIMARY KEY, dtype TEXT NOT NULL, data BLOB NOT NULL);
"""
# Created after the bulk load (faster than maintaining them row by row).
INDEXES = """
CREATE INDEX aliases_key ON aliases (key);
CREATE INDEX aliases_entity ON aliases (entity);
CREATE INDEX triples_head ON triples (head, tail);
CREATE INDEX triples_tail ON triples (tail, head);
"""


@dataclass(frozen=True)
class KGEntity:
    """A KG entity: ``id`` is the store's handle, ``key`` the source's id (``/m/01kmd4``, a URI…)."""

    id: int
    key: str
    label: str | None
    description: str | None
    type: str | None
    degree: int = 0
    n_images: int = 0


@dataclass(frozen=True)
class Candidate:
    """A candidate entity for a mention: the alias that matched and its WRatio score (0–100)."""

    entity: KGEntity
    alias: str
    score: float

    def to_dict(self) -> dict:
        e = self.entity
        return {
            "entity": e.key,
            "label": e.label,
            "type": e.type,
            "alias": self.alias,
            "score": round(self.score, 2),
            "description": e.description,
        }


PRIOR_POOL = 50  # with a prior, the entities ranked: the best this many by name score


def prior_order(candidate: Candidate) -> tuple[bool, float]:
    """A candidate's rank with a prior (smaller first): entities with a coarse type before untyped ones (an
    untyped entry names a concept, "apple" the fruit, never a named entity), then name score plus
    ln(1 + degree), so among names that match alike the better-connected entity comes first.
    ``benchmarks/bench_kg_ranking.py`` measures it against the name score alone."""
    entity = candidate.entity
    return (entity.type is None, -(candidate.score + math.log1p(entity.degree)))


class KnowledgeStore(Protocol):
    """What the knowledge stage needs from a KG; entity handles are the store's integers."""

    image_dim: int | None

    def candidates(
        self, mention: str, k: int = 5, fuzzy: bool = True, prior: bool = False
    ) -> list[Candidate]: ...

    def entity(self, entity_id: int) -> KGEntity | None: ...

    def find_entity(self, key: str) -> KGEntity | None: ...

    def concepts(self, entity_id: int) -> list[tuple[str, str, str]]: ...

    def facts(self, entity_id: int, limit: int = 50) -> list[tuple[str, str, str]]: ...

    def neighbours(
        self,
        entity_ids: Iterable[int],
        exclude: set[int],
        max_per_entity: int,
        hub_degree: int,
        images_only: bool = False,
    ) -> list[int]: ...

    def neighbourhood(
        self, entity_ids: Iterable[int], hops: int, max_per_entity: int, hub_degree: int
    ) -> dict[int, int]: ...

    def image_vectors(self, entity_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    def is_person_name(self, word: str) -> bool: ...


_WORD_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def relation_words(name: str) -> str:
    """A relation as words: ``/people/person/place_of_birth`` → ``place of birth``."""
    name = name.strip("<>")
    last = name.rstrip("/").split("/")[-1].split("#")[-1].split(".")[-1]
    words = []
    for part in last.replace("_", " ").split():
        words.extend(w.lower() for w in _WORD_PARTS.findall(part))
    return " ".join(words) or last


def open_sqlite(path: str | Path, writable: bool = False) -> sqlite3.Connection:
    """Connect to an mner KG file after checking that it is one, of this schema version."""
    path = Path(path)
    if not path.is_file():
        reason = "KG file not found" if not path.exists() else "expected a KG file, got a directory"
        raise MnerInputError(reason, path)
    with open(path, "rb") as f:
        if f.read(16) != SQLITE_MAGIC:
            raise MnerInputError("not a KG file (not SQLite); build one with 'mner kg build'", path)
    mode = "rw" if writable else "ro"
    conn = sqlite3.connect(f"file:{path.resolve()}?mode={mode}", uri=True, check_same_thread=False)
    try:  # a damaged file (flipped bits, a cut copy) is refused here, not found empty mid-search
        _check(conn, path, "quick_check")
    except MnerInputError:
        conn.close()
        raise
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError:
        conn.close()
        raise MnerInputError(
            "not an mner KG (an SQLite file without its 'meta' table); build one with 'mner kg build'", path
        ) from None
    if row is None or row[0] != str(SCHEMA_VERSION):
        conn.close()
        found = "none" if row is None else row[0]
        raise MnerInputError(
            f"KG schema version {found}, this mner reads version {SCHEMA_VERSION}: "
            "rebuild the KG with 'mner kg build' (KG files are never migrated in place)",
            path,
        )
    return conn


def _check(conn: sqlite3.Connection, path: Path, pragma: str) -> None:
    """SQLite's ``quick_check`` (pages and records: on every open, fast) or ``integrity_check`` (also every index
    against its table: ``check_kg``, slower), its problems on one line.

    Raises:
        MnerInputError: the file is damaged.
    """
    try:
        found = conn.execute(f"PRAGMA {pragma}(3)").fetchall()
    except sqlite3.DatabaseError as err:
        found = [(str(err),)]
    if found != [("ok",)]:
        problems = "; ".join(" ".join(str(row[0]).split()) for row in found)  # SQLite's lines, on one
        raise MnerInputError(
            f"the KG file is damaged (SQLite's {pragma}: {problems}); rebuild it with 'mner kg build'", path
        )


def check_kg(path: str | Path) -> dict:
    """The full check of a KG file (``mner kg check``): the checks of every open, then SQLite's
    ``integrity_check``, which also compares every index with its table (damage ``quick_check`` misses: a bit
    flipped in an index's key). Returns what was checked.

    Raises:
        MnerInputError: not a KG, or damaged, naming the problems.
    """
    path = Path(path)
    conn = open_sqlite(path)
    try:
        _check(conn, path, "integrity_check")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        entities = conn.execute("SELECT count(*) FROM entities").fetchone()[0]
    finally:
        conn.close()
    return {"pages": pages, "entities": entities, "bytes": path.stat().st_size}


class SqliteKG:
    """The default :class:`KnowledgeStore`: one SQLite file (see ``SCHEMA``)."""

    def __init__(self, path: str | Path, writable: bool = False):
        self.path = Path(path)
        self.conn = open_sqlite(self.path, writable=writable)
        self.meta = dict(self.conn.execute("SELECT key, value FROM meta"))
        self._index: NameIndex | None = None
        self._entities: dict[int, KGEntity] = {}
        self._hubs: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
        self._owners: np.ndarray | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def image_dim(self) -> int | None:
        value = self.meta.get("image_dim")
        return int(value) if value else None

    # ------------------------------------------------------------------------------------ entities

    _ENTITY_COLUMNS = "id, key, label, description, type, degree, n_images"

    def entity(self, entity_id: int) -> KGEntity | None:
        """The entity with store handle ``entity_id``."""
        cached = self._entities.get(entity_id)
        if cached is None:
            row = self.conn.execute(
                f"SELECT {self._ENTITY_COLUMNS} FROM entities WHERE id = ?", (entity_id,)
            ).fetchone()
            if row is None:
                return None
            if len(self._entities) >= 100_000:  # a bounded cache: a long-running server sees every entity
                self._entities.clear()
            cached = self._entities[entity_id] = KGEntity(*row)
        return cached

    def find_entity(self, key: str) -> KGEntity | None:
        """The entity with source id ``key`` (or a ``same_as`` id such as a Wikidata QID)."""
        row = self.conn.execute(
            "SELECT id FROM entities WHERE key = ? UNION ALL "
            "SELECT entity FROM same_as WHERE key = ? LIMIT 1",
            (key, key),
        ).fetchone()
        return None if row is None else self.entity(row[0])

    def concepts(self, entity_id: int) -> list[tuple[str, str, str]]:
        """Conceptual knowledge as readable triples, most specific first: ``(kobe bryant, isA, …)``."""
        entity = self.entity(entity_id)
        if entity is None:
            return []
        subject = (entity.label or entity.key).lower()
        rows = self.conn.execute(
            "SELECT object FROM concepts WHERE entity = ? ORDER BY rank, object", (entity_id,)
        )
        return [(subject, "isA", obj) for (obj,) in rows]

    def facts(self, entity_id: int, limit: int = 50) -> list[tuple[str, str, str]]:
        """Relation triples touching an entity, as (head label, relation words, tail label)."""
        rows = self.conn.execute(
            "SELECT coalesce(h.label, h.key), r.name, coalesce(t.label, t.key) FROM "
            "(SELECT head, relation, tail FROM triples WHERE head = ?1 UNION "
            " SELECT head, relation, tail FROM triples WHERE tail = ?1 LIMIT ?2) AS x "
            "JOIN entities h ON h.id = x.head JOIN entities t ON t.id = x.tail "
            "JOIN relations r ON r.id = x.relation",
            (entity_id, limit),
        )
        return [(h, relation_words(r), t) for h, r, t in rows]

    def is_person_name(self, word: str) -> bool:
        """Whether ``word`` is a common first name (from ``names-dataset``, when the build used it)."""
        row = self.conn.execute("SELECT 1 FROM person_names WHERE key = ?", (word.lower(),)).fetchone()
        return row is not None

    def stats(self) -> dict:
        """Counts of what the KG holds, and its build metadata."""

        def count(sql: str) -> int:
            return self.conn.execute(sql).fetchone()[0]

        types = dict(self.conn.execute("SELECT coalesce(type, 'none'), count(*) FROM entities GROUP BY 1"))
        return {
            "path": str(self.path),
            "schema_version": SCHEMA_VERSION,
            "entities": count("SELECT count(*) FROM entities"),
            "aliases": count("SELECT count(*) FROM aliases"),
            "relations": count("SELECT count(*) FROM relations"),
            "triples": count("SELECT count(*) FROM triples"),
            "concepts": count("SELECT count(*) FROM concepts"),
            "types": {t: types.get(t, 0) for t in (*COARSE_TYPES, "none")},
            "image_ids": count("SELECT count(*) FROM image_ids"),
            "images": count("SELECT count(*) FROM images"),
            "entities_with_images": count("SELECT count(*) FROM entities WHERE n_images > 0"),
            "image_dim": self.image_dim,
            "image_encoder": self.meta.get("image_encoder"),
            "person_names": count("SELECT count(*) FROM person_names"),
            "sources": json.loads(self.meta.get("sources", "[]")),
            "file_bytes": self.path.stat().st_size,
        }

    # ---------------------------------------------------------------------------------- candidates

    def name_index(self) -> NameIndex:
        """The trigram name index, read from the file on first use."""
        if self._index is None:
            blobs = {
                name: (dtype, data)
                for name, dtype, data in self.conn.execute("SELECT name, dtype, data FROM blobs")
            }
            arrays = {name: np.frombuffer(blobs[name][1], dtype=blobs[name][0]) for name in IndexArrays.BLOBS}
            self._index = NameIndex(IndexArrays(keys=blobs["keys"][1], **arrays))
        return self._index

    def candidates(
        self, mention: str, k: int = 5, fuzzy: bool = True, prior: bool = False
    ) -> list[Candidate]:
        """The top-``k`` entities for a mention: exact key matches (score 100), then fuzzy ones; with ``prior``,
        the ``PRIOR_POOL`` best by name are ranked by ``prior_order`` (typed entities first, then name score
        and how connected the entity is).

        Raises:
            MnerInputError: the mention is empty or longer than ``MAX_MENTION_CHARS``.
        """
        key = check_mention(mention)
        index = self.name_index()
        if fuzzy:
            positions, scores = index.search(key, k)
        else:
            positions = np.sort(index.exact([key]))
            scores = np.full(len(positions), 100.0, dtype=np.float32)
        entities = index.arrays.entities[positions]
        _, first = np.unique(entities, return_index=True)  # each entity's best-scoring name
        best = np.sort(first)[: PRIOR_POOL if prior else k]
        found = []
        for i in best.tolist():
            alias_id = int(index.arrays.alias_ids[positions[i]])
            name = self.conn.execute("SELECT name FROM aliases WHERE id = ?", (alias_id,)).fetchone()[0]
            found.append(Candidate(self.entity(int(entities[i])), name, float(scores[i])))
        if prior:
            found.sort(key=prior_order)  # stable: equal keys keep the index's order
        return found[:k]

    # ------------------------------------------------------------------------------ neighbourhoods

    def neighbours(
        self,
        entity_ids: Iterable[int],
        exclude: set[int],
        max_per_entity: int = 500,
        hub_degree: int = 1000,
        images_only: bool = False,
    ) -> list[int]:
        """One hop out from ``entity_ids`` (either direction), minus ``exclude``.

        A hub (degree above ``hub_degree``) contributes at most ``max_per_entity`` neighbours, those
        owning images first: "United States" alone has thousands. ``images_only``: only neighbours
        that own images (the last hop of a search needs no more).
        """
        ids = list(dict.fromkeys(entity_ids))
        degrees = dict(self._in_chunks("SELECT id, degree FROM entities WHERE id IN ({})", ids))
        hubs = [e for e in ids if degrees.get(e, 0) > hub_degree]
        others = [e for e in ids if 0 < degrees.get(e, 0) <= hub_degree]
        found = dict.fromkeys(
            n
            for (n,) in self._in_chunks(
                "SELECT tail FROM triples WHERE head IN ({0}) UNION ALL "
                "SELECT head FROM triples WHERE tail IN ({0})",
                others,
                repeat=2,
            )
        )
        for hub in hubs:
            owners, first = self._hub_neighbours(hub, max_per_entity)
            taken = owners if images_only else list(dict.fromkeys(owners + first))[:max_per_entity]
            found.update(dict.fromkeys(taken))
        result = [n for n in found if n not in exclude]
        if images_only:
            result = [n for n, own in zip(result, self._owns_images(result).tolist(), strict=True) if own]
        return result

    def _owns_images(self, ids) -> np.ndarray:
        """Whether each entity owns an image vector (a binary search in the sorted owners)."""
        ids = np.asarray(ids, dtype=np.int64)
        owners = self.image_owners()
        if not len(owners):
            return np.zeros(len(ids), dtype=bool)
        return owners[owners.searchsorted(ids).clip(max=len(owners) - 1)] == ids

    def _in_chunks(self, sql: str, ids: list[int], repeat: int = 1, size: int = 4000) -> Iterator[tuple]:
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            yield from self.conn.execute(sql.format(",".join("?" * len(chunk))), chunk * repeat)

    def _hub_neighbours(self, hub: int, cap: int) -> tuple[list[int], list[int]]:
        """(neighbours owning images, the first ``cap`` neighbours) of a hub; cached."""
        cached = self._hubs.get((hub, cap))
        if cached is None:
            owners = self.image_owners().tolist()
            with_images = list(
                dict.fromkeys(
                    n
                    for (n,) in self._in_chunks(
                        f"SELECT tail FROM triples WHERE head = {int(hub)} AND tail IN ({{0}}) UNION ALL "
                        f"SELECT head FROM triples WHERE tail = {int(hub)} AND head IN ({{0}})",
                        owners,
                        repeat=2,
                    )
                )
            )
            first: dict[int, None] = {}
            for (n,) in self.conn.execute(
                "SELECT tail FROM triples WHERE head = ?1 UNION ALL SELECT head FROM triples WHERE tail = ?1",
                (hub,),
            ):  # streamed
                first[n] = None
                if len(first) >= cap:
                    break
            if len(self._hubs) > 10_000:
                self._hubs.clear()
            cached = self._hubs[(hub, cap)] = (with_images[:cap], list(first))
        return cached

    def image_owners(self) -> np.ndarray:
        """Sorted ids of the entities that own image vectors."""
        if self._owners is None:
            rows = self.conn.execute("SELECT DISTINCT entity FROM images ORDER BY entity").fetchall()
            self._owners = np.array([r[0] for r in rows], dtype=np.int64)
        return self._owners

    def neighbourhood(
        self, entity_ids: Iterable[int], hops: int = 1, max_per_entity: int = 500, hub_degree: int = 1000
    ) -> dict[int, int]:
        """Every entity within ``hops`` of ``entity_ids``, with the hop it is first reached at."""
        reached = {e: 0 for e in entity_ids}
        frontier = list(reached)
        for hop in range(1, hops + 1):
            frontier = self.neighbours(frontier, set(reached), max_per_entity, hub_degree)
            reached.update((e, hop) for e in frontier)
        return reached

    # ------------------------------------------------------------------------------------- images

    def image_vectors(self, entity_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(owner entity per vector, L2-normalised vectors ``(n, dim)``) of the given entities."""
        ids = np.asarray(list(entity_ids), dtype=np.int64)
        ids = ids[self._owns_images(ids)].tolist()
        owners: list[int] = []
        vectors: list[np.ndarray] = []
        for owner, blob in self._in_chunks("SELECT entity, vector FROM images WHERE entity IN ({})", ids):
            owners.append(owner)
            vectors.append(np.frombuffer(blob, dtype=np.float32))
        dim = self.image_dim or 0
        matrix = np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)  # shape: (n, dim)
        return np.asarray(owners, dtype=np.int64), matrix

    def add_image_vectors(self, entity_id: int, vectors: np.ndarray, source: str, encoder: str) -> None:
        """Store image vectors for an entity (normalised here); the first call fixes the KG's dimension."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))  # shape: (n, dim)
        dim = self.image_dim
        if dim is not None and vectors.shape[1] != dim:
            raise MnerInputError(
                f"image vector has {vectors.shape[1]} dimensions, the KG's entity images have {dim}",
                self.path,
            )
        if self.meta.get("image_encoder") not in (None, encoder):
            raise MnerInputError(
                f"the KG's entity images were encoded with {self.meta['image_encoder']!r}, not {encoder!r}",
                self.path,
            )
        if dim is None:
            self._set_meta(image_dim=str(vectors.shape[1]), image_encoder=encoder)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1)
        self.conn.executemany(
            "INSERT INTO images (entity, source, dim, vector) VALUES (?, ?, ?, ?)",
            [(entity_id, source, vectors.shape[1], v.tobytes()) for v in vectors],
        )
        self.conn.execute(
            "UPDATE entities SET n_images = n_images + ? WHERE id = ?", (len(vectors), entity_id)
        )
        self._entities.pop(entity_id, None)
        self._owners, self._hubs = None, {}

    def _set_meta(self, **values: str) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items())
        self.meta.update(values)

    def entity_for_image_id(self, image_id: str) -> int | None:
        """The entity an MMKG image id (``FBIMG00001``) belongs to."""
        row = self.conn.execute("SELECT entity FROM image_ids WHERE image_id = ?", (image_id,)).fetchone()
        return None if row is None else row[0]

    def commit(self) -> None:
        self.conn.commit()
