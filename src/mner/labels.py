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
import unicodedata
from collections.abc import Callable, Iterable, Sequence
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
