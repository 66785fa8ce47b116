"""Label sets and tagging schemes: which entity types a model tags, and gold tags read as BIO whatever scheme a
file was written in.

- A model's label set comes from its training data: ``"O"`` and ``B-``/``I-`` of each type (``tag_set``), the
  types sorted — but for the Twitter benchmark's types (a subset of PER, LOC, ORG, OTHER), which keep the order
  every model of the benchmark was trained with, so trainings reproduce their recorded fingerprints.
- ``to_bio`` turns a file's posts into BIO: IOB1 (``I-`` opens an entity, ``B-`` only splits two of one type)
  and BIOES/BILOU (``S-``/``U-`` a one-token entity, ``E-``/``L-`` its last token) are converted; a user's label
  map (``--label-map FILE``: TSV ``from<TAB>to``, ``to`` a type or ``O`` to drop one) renames or merges types;
  Twitter-2017's ``MISC`` becomes ``OTHER`` only when the file's types are the benchmark's (PER, LOC, ORG,
  OTHER, MISC). Each change is said once per file through ``note``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mner.data import (
    ENTITY_TYPES,
    MnerInputError,
    Post,
    _text_lines,
    read_conll,
    spans_from_tags,
    tags_from_spans,
)

BENCHMARK_TYPES = ENTITY_TYPES  # Twitter-2015/2017's, in the order of every model trained on them
BENCHMARK_ALIASES: dict[str, str] = {"MISC": "OTHER"}  # Twitter-2017's name for OTHER
BIO_PREFIX = {"B": "B", "I": "I", "S": "B", "U": "B", "E": "I", "L": "I"}  # BIOES and BILOU → BIO


def ordered_types(types: Iterable[str]) -> list[str]:
    """Entity types in a label set's order: the benchmark's own order for its types, else sorted."""
    found = set(types)
    if found <= set(BENCHMARK_TYPES):
        return [t for t in BENCHMARK_TYPES if t in found]
    return sorted(found)


def tag_set(types: Iterable[str]) -> list[str]:
    """A model's tags: ``O``, then ``B-`` and ``I-`` of each type (``ordered_types``)."""
    return ["O"] + [f"{p}-{t}" for t in ordered_types(types) for p in ("B", "I")]


def entity_types(posts: Iterable[Post]) -> list[str]:
    """The entity types the posts' gold tags hold, in label-set order."""
    return ordered_types(tag.partition("-")[2] for post in posts for tag in post.tags or () if tag != "O")


# ----------------------------------------------------------------------------------------- schemes


def scheme(posts: Sequence[Post]) -> str:
    """The scheme a file's tags were written in: "BIOES" (an ``S-``/``E-``/``U-``/``L-`` tag), "IOB1" (an entity
    opens with ``I-`` and every ``B-X`` follows an ``X`` token: ``B-`` only splits two entities), or "BIO"
    (Twitter-2015's few entities that open with ``I-`` are read as BIO, as conlleval reads them)."""
    bioes = b_after_other = opens_with_i = False
    for post in posts:
        before = ""  # the type of the token before ("" for O or the post's start)
        for tag in post.tags or ():
            prefix, _, etype = tag.partition("-")
            bioes = bioes or prefix in ("S", "E", "U", "L")
            b_after_other = b_after_other or (prefix == "B" and before != etype)
            opens_with_i = opens_with_i or (prefix == "I" and before != etype)
            before = etype
    if bioes:
        return "BIOES"
    return "IOB1" if opens_with_i and not b_after_other else "BIO"


def _bio(tags: Sequence[str], from_scheme: str) -> tuple[str, ...]:
    if from_scheme == "BIOES":
        tags = ["O" if t == "O" else f"{BIO_PREFIX[t[0]]}-{t.partition('-')[2]}" for t in tags]
    if from_scheme in ("BIOES", "IOB1"):  # conlleval's spans, written back as BIO
        tags = tags_from_spans(spans_from_tags(tags), len(tags))
    return tuple(tags)


def _renamed(tags: Sequence[str], names: dict[str, str]) -> tuple[str, ...]:
    """The tags with each type the map names renamed (to "O": dropped); a type it does not name stays as it is,
    a type literally named "O" (``B-O``) included, as it is read without a map."""
    out = []
    for tag in tags:
        prefix, _, etype = tag.partition("-")
        if tag == "O" or etype not in names:
            out.append(tag)
        else:
            out.append("O" if names[etype] == "O" else f"{prefix}-{names[etype]}")
    return tuple(out)


def to_bio(
    posts: Sequence[Post],
    source: str | Path,
    label_map: dict[str, str] | None = None,
    note: Callable[[str], None] | None = None,
) -> list[Post]:
    """The posts with BIO tags over their (mapped) types; ``note`` hears each conversion, once.

    Args:
        source: the file the posts came from, as notes name it.
        label_map: type → new type (or "O"), applied after the scheme's conversion.
    """
    say = note or (lambda message: None)
    name = str(source)
    found = scheme(posts)
    tags = [post.tags or () for post in posts]
    if found != "BIO":
        tags = [_bio(t, found) for t in tags]
        say(f"{name}: tags read as {found} and converted to BIO")
    if label_map:
        tags = [_renamed(t, label_map) for t in tags]
        used = sorted(
            {t.partition("-")[2] for row in (p.tags or () for p in posts) for t in row} & set(label_map)
        )
        say(f"{name}: label map applied to {', '.join(used) or 'no type of this file'}")
    types = {t.partition("-")[2] for row in tags for t in row if t != "O"}
    if types & set(BENCHMARK_ALIASES) and types <= set(BENCHMARK_TYPES) | set(BENCHMARK_ALIASES):
        tags = [_renamed(t, BENCHMARK_ALIASES) for t in tags]
        aliases = ", ".join(f"{a} as {b}" for a, b in BENCHMARK_ALIASES.items() if a in types)
        say(f"{name}: the Twitter benchmark's types: {aliases} (a --label-map file changes that)")
    return [dataclasses.replace(p, tags=t) for p, t in zip(posts, tags, strict=True)]


def read_gold(
    path: str | Path, label_map: dict[str, str] | None = None, note: Callable[[str], None] | None = None
) -> list[Post]:
    """The posts of a CoNLL file with BIO tags (``to_bio``).

    Raises:
        MnerInputError: naming the file, the line and what was expected.
    """
    return to_bio(read_conll(path), path, label_map, note)


def _type_problem(name: str, side: str) -> str | None:
    """Why ``name`` (a label map's ``from`` or ``to``) is not an entity type's name, or None."""
    control = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs")), None)
    if control is not None:
        return (
            f"{side!r} {name[:60]!r} holds the control character U+{ord(control):04X}: "
            "expected an entity type (letters, digits, punctuation)"
        )
    if name[:2] in ("B-", "I-"):
        return (
            f"{side!r} {name[:60]!r} is a tag, not an entity type: write {name[2:62]!r} "
            "(the B-/I- prefixes come from the tagging scheme)"
        )
    return None


def read_label_map(path: str | Path) -> dict[str, str]:
    """A label map: TSV lines ``from<TAB>to`` (``to`` a type, or ``O`` to drop ``from``; a type it does not name
    stays as it is); blank lines and lines starting with ``#`` are skipped. Each side is an entity type's name:
    no spaces, no control characters, no ``B-``/``I-`` prefix (that makes a tag).

    Raises:
        MnerInputError: naming the file, the line and what was expected.
    """
    path = Path(path)
    names: dict[str, str] = {}
    for line_no, line in _text_lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not all(f.strip() and not any(c.isspace() for c in f.strip()) for f in fields):
            raise MnerInputError(
                f"expected 'from<TAB>to' (two entity types, no spaces), got {line[:60]!r}", path, line_no
            )
        source, target = (f.strip() for f in fields)
        problem = _type_problem(source, "from") or _type_problem(target, "to")
        if problem is not None:
            raise MnerInputError(problem, path, line_no)
        if source in names:
            raise MnerInputError(f"type {source!r} is mapped twice", path, line_no)
        names[source] = target
    if not names:
        raise MnerInputError("file is empty: expected 'from<TAB>to' lines", path)
    return names


# ------------------------------------------------------------------------------------------ label sets

# Words that name each benchmark type as LLMs write kinds ("sports team" → ORG: its first word that names a type);
# a kind none of whose words is here is read by its word vectors (``LabelSet.kind_type``).
BENCHMARK_KIND_WORDS: dict[str, tuple[str, ...]] = {
    "PER": [
        "person",
        "people",
        "player",
        "athlete",
        "artist",
        "actor",
        "actress",
        "author",
        "politician",
        "celebrity",
        "singer",
        "rapper",
        "musician",
        "photographer",
        "journalist",
        "writer",
        "president",
        "footballer",
        "coach",
        "character",
        "comedian",
        "model",
        "dj",
        "reporter",
        "host",
        "user",
    ],
    "LOC": [
        "location",
        "country",
        "city",
        "place",
        "region",
        "state",
        "venue",
        "geographic",
        "geographical",
        "town",
        "village",
        "continent",
        "island",
        "river",
        "mountain",
        "street",
        "area",
        "neighborhood",
        "neighbourhood",
        "landmark",
        "building",
        "stadium",
        "airport",
        "park",
        "county",
        "province",
        "lake",
    ],
    "ORG": [
        "organization",
        "organisation",
        "company",
        "brand",
        "team",
        "band",
        "institution",
        "publication",
        "news",
        "media",
        "newspaper",
        "party",
        "group",
        "club",
        "university",
        "school",
        "agency",
        "network",
        "channel",
        "magazine",
        "outlet",
        "league",
        "government",
        "station",
        "restaurant",
        "store",
        "website",
        "label",
        "association",
        "business",
        "charity",
        "college",
        "department",
        "retailer",
        "shop",
    ],
    "OTHER": [
        "event",
        "product",
        "tv",
        "show",
        "movie",
        "film",
        "award",
        "song",
        "album",
        "book",
        "game",
        "series",
        "festival",
        "competition",
        "tournament",
        "holiday",
        "campaign",
        "app",
        "software",
        "device",
        "vehicle",
        "program",
        "programme",
        "franchise",
        "language",
        "nationality",
        "religion",
        "title",
        "video",
        "documentary",
        "play",
        "exhibition",
        "conference",
        "phone",
        "car",
    ],
}
# kinds that name something other than an entity: read as such, they map to no type
NON_ENTITY_WORDS = (
    "date",
    "time",
    "day",
    "year",
    "month",
    "week",
    "hour",
    "topic",
    "hashtag",
    "number",
    "money",
    "price",
    "percent",
    "quantity",
    "emotion",
    "feeling",
    "concept",
    "idea",
    "slogan",
    "phrase",
    "expression",
    "word",
    "activity",
    "weather",
    "colour",
    "color",
    "action",
    "trend",
    "mood",
)
# kinds that name no type at all (an "entity", a "thing"): never read as a type by their vectors
GENERIC_KIND_WORDS = frozenset(
    (
        "entity",
        "entities",
        "named",
        "thing",
        "things",
        "name",
        "names",
        "term",
        "item",
        "unknown",
        "unclear",
        "n/a",
    )
)
KIND_SIMILARITY = 0.6  # the least cosine of a kind's word vectors with a type's words to read it as that type


@dataclass(frozen=True)
class LabelSet:
    """The entity types a model tags (in label-set order), its tagging scheme (BIO), and the words that name each
    type in an LLM's kinds: the benchmark's table for PER/LOC/ORG/OTHER, a type's own name's words for others
    ("SPORTS_TEAM" → "sports team"). ``kind_type`` maps any kind onto these types."""

    types: tuple[str, ...]
    scheme: str = "BIO"
    kind_words: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def of(cls, types: Iterable[str]) -> LabelSet:
        """The label set of these types, in ``ordered_types`` order."""
        return cls.in_order(ordered_types(types))

    @classmethod
    def in_order(cls, types: Iterable[str]) -> LabelSet:
        """The label set of these types, in the order given."""
        types = tuple(dict.fromkeys(types))
        words = tuple(
            (t, tuple(BENCHMARK_KIND_WORDS.get(t, ())) or _type_words(t) + _borrowed(t)) for t in types
        )
        return cls(types, "BIO", words)

    @classmethod
    def from_tags(cls, tags: Iterable[str]) -> LabelSet:
        """The label set of a model's tags (``O``, ``B-X``, ``I-X``...), its types in the tags' order."""
        return cls.in_order(tag.partition("-")[2] for tag in tags if tag != "O")

    @property
    def tags(self) -> list[str]:
        """``O``, then ``B-`` and ``I-`` of each type."""
        return ["O"] + [f"{p}-{t}" for t in self.types for p in ("B", "I")]

    def names_type(self, word: str) -> bool:
        """Whether a (lower-case) word is one of the words that name a type."""
        return word in self._word_types or word.rstrip("s") in self._word_types

    @functools.cached_property
    def _word_types(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for etype, words in self.kind_words:
            for word in words:
                out[word] = etype  # a word two types name: the later type's (as the table always read)
        for etype, _ in self.kind_words:  # a type's own name's words are its own, whatever another borrowed
            for word in _type_words(etype) if etype not in BENCHMARK_KIND_WORDS else ():
                out[word] = etype
        return out

    def kind_type(self, kind: str | None) -> str | None:
        """The type a kind names: the first of its words that names a type ("sports team" → ORG, "person/handle"
        → PER); else the type whose words are nearest the kind's head word, then the whole kind, in word-vector
        space ("airline" → ORG, "coffee chain" → ORG), None where a non-entity word ("date", "hashtag") is nearer
        or nothing is near enough; None for no kind."""
        if not kind or not isinstance(kind, str):
            return None
        return _kind_type(self, kind.lower())


# other names of the benchmark's types, as a user's label set may call them
BENCHMARK_NAMES = {
    "per": "PER",
    "loc": "LOC",
    "org": "ORG",
    "misc": "OTHER",
    "miscellaneous": "OTHER",
    "other": "OTHER",
}


def _borrowed(etype: str) -> tuple[str, ...]:
    """The benchmark table's words of the type a user's type is named after ("organization" → ORG's words:
    company, team, band, ...); none for a name the table lacks ("miscellaneous")."""
    name = " ".join(_type_words(etype)[:1])
    found = [t for t, words in BENCHMARK_KIND_WORDS.items() if name in words or name.rstrip("s") in words]
    found = [BENCHMARK_NAMES[name]] if name in BENCHMARK_NAMES else found
    return tuple(BENCHMARK_KIND_WORDS[found[0]]) if found else ()


def _type_words(etype: str) -> tuple[str, ...]:
    """A type's name as words: ``SPORTS_TEAM`` → ("sports team", "sports", "team")."""
    words = [w for w in re.split(r"[^0-9a-z]+", etype.lower()) if w]
    return tuple(dict.fromkeys([" ".join(words), *words])) if words else ()


@functools.lru_cache(maxsize=8192)
def _kind_type(labels: LabelSet, kind: str) -> str | None:
    parts = [p for p in re.split(r"[/,;]| or ", kind) if p.strip()]
    for part in parts:
        for word in re.findall(r"[^\W_]+", part):
            found = labels._word_types.get(word) or labels._word_types.get(word.rstrip("s"))
            if found is not None:
                return found
    if not parts:
        return None
    return _nearest_type(labels, parts[0])


def _nearest_type(labels: LabelSet, part: str) -> str | None:
    """The type whose words' vectors are nearest the kind's head word (the last, or the one before "of"), then its
    words' mean; None where the nearest are non-entity words or none is within ``KIND_SIMILARITY``."""
    words = re.findall(r"[^\W_]+", part)
    if not words or all(w in GENERIC_KIND_WORDS for w in words):
        return None  # "entity", "named entity", "thing": no type named
    head = words[words.index("of") - 1] if "of" in words[1:] else words[-1]
    prototypes = _prototypes(labels)
    for probe in ([head], words):
        vector = _unit_mean(probe)
        if vector is None:
            continue
        best, best_type = KIND_SIMILARITY, None
        for etype, matrix in prototypes:
            score = float((matrix @ vector).max()) if len(matrix) else -1.0
            if score > best:
                best, best_type = score, etype
        if best_type is not None:
            return None if best_type == "" else best_type
    return None


@functools.lru_cache(maxsize=16)
def _prototypes(labels: LabelSet) -> list:
    """(type, unit vectors of its words) for each type; "" for the non-entity words."""
    import numpy as np

    out = []
    for etype, words in [*labels.kind_words, ("", NON_ENTITY_WORDS)]:
        rows = [v for w in words if (v := _unit_mean(w.split())) is not None]
        out.append((etype, np.stack(rows) if rows else np.zeros((0, 1), dtype=np.float32)))
    return out


@functools.lru_cache(maxsize=8192)
def _unit_mean_cached(words: tuple[str, ...]):
    import numpy as np

    from mner.inputs.embeddings import load_word_vectors, word_key

    try:
        vectors = load_word_vectors("glove-6b-50d")
    except (ValueError, OSError):  # no word vectors here: kinds are read by their words alone
        return None
    rows = [r for r in vectors.find([word_key(w) for w in words]).tolist() if r >= 0]
    if not rows:
        return None
    mean = np.asarray(vectors.vectors[rows], dtype=np.float32).mean(0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else None


def _unit_mean(words):
    return _unit_mean_cached(tuple(words))


BENCHMARK_LABELS = LabelSet.of(BENCHMARK_TYPES)
