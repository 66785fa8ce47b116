"""Importers: FB15k-237 (+ Wikidata labels), the MMKG links and image ids, DB15K, CoDEx classes, and
generic ``head<TAB>relation<TAB>tail`` TSV, N-Triples and labels files for users' own dumps.

Every importer streams its files line by line, feeds a :class:`KGBuilder`, and returns an
:class:`ImportReport` with its counts and every skipped line (file, line number, reason).
A missing file or malformed JSON stops the build (MnerInputError); a bad line is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

from mner.data import MnerInputError, bounded_lines
from mner.knowledge.builder import ImportReport, KGBuilder
from mner.knowledge.concepts import head_noun_type

FB15K237_SPLITS = ("train.txt", "valid.txt", "test.txt")
RDF_TYPE = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"


def _require(path: Path) -> Path:
    if not path.exists():
        raise MnerInputError("file not found", path)
    if path.is_dir():
        raise MnerInputError("expected a file, got a directory", path)
    return path


def iter_lines(path: str | Path, report: ImportReport) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; a line that is not UTF-8 is reported and skipped."""
    path = _require(Path(path))
    with open(path, "rb") as f:
        for line_no, raw in bounded_lines(f, path):  # a line over MAX_LINE_BYTES is skipped, not held
            if isinstance(raw, MnerInputError):
                report.skip(path, line_no, raw.reason)
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                reason = f"not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
                report.skip(path, line_no, reason)
                continue
            if line.strip():
                yield line_no, line


def read_json(path: str | Path) -> object:
    """A whole JSON file; raises MnerInputError naming the line of a syntax error."""
    path = _require(Path(path))
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise MnerInputError(f"not UTF-8 (byte at offset {err.start})", path) from None
    except json.JSONDecodeError as err:
        raise MnerInputError(f"not JSON ({err.msg} at column {err.colno})", path, err.lineno) from None


def _fields(line: str, expected: tuple[int, ...], form: str) -> list[str] | str:
    """The tab-separated fields of a line, or the reason it is malformed."""
    fields = [f.strip() for f in line.split("\t")]
    if len(fields) not in expected:
        return f"expected '{form}', got {len(fields)} field{'s' * (len(fields) != 1)}"
    if not all(fields):
        return f"expected '{form}', got an empty field"
    return fields


# ------------------------------------------------------------------------------------ generic files


def import_labels(builder: KGBuilder, path: str | Path) -> ImportReport:
    """``id<TAB>label[<TAB>description[<TAB>alias]...]`` lines: one entity per line."""
    report = ImportReport(f"labels {Path(path).name}")
    first_line: dict[str, int] = {}
    for line_no, line in iter_lines(path, report):
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            report.skip(path, line_no, "expected 'id<TAB>label[<TAB>description[<TAB>alias]...]'")
            continue
        key, label = fields[0].strip(), fields[1].strip()
        description = fields[2].strip() if len(fields) > 2 and fields[2].strip() else None
        aliases = [a.strip() for a in fields[3:] if a.strip()]
        if builder.add_entity(key, label, description, aliases) is None:
            where = f" (first at line {first_line[key]})" if key in first_line else ""
            report.skip(path, line_no, f"duplicate entity {key!r}{where}")
            continue
        first_line[key] = line_no
        report.counts["entities"] += 1
    return report


def import_tsv(
    builder: KGBuilder,
    path: str | Path,
    unknown: str = "create",
    report: ImportReport | None = None,
    columns: tuple[int, ...] = (3,),
) -> ImportReport:
    """``head<TAB>relation<TAB>tail`` lines.

    Args:
        unknown: what an id that is not yet an entity does: ``"create"`` an unlabelled entity, or
            ``"skip"`` the line (use after a labels file that defines the entity set).
        columns: accepted field counts (DB15K has a fourth, its split).
    """
    report = report or ImportReport(f"triples {Path(path).name}")
    for line_no, line in iter_lines(path, report):
        fields = _fields(line, columns, "head<TAB>relation<TAB>tail")
        if isinstance(fields, str):
            report.skip(path, line_no, fields)
            continue
        head, relation, tail = fields[:3]
        ends = [builder.handle(head), builder.handle(tail)]
        if unknown == "skip" and None in ends:
            missing = head if ends[0] is None else tail
            report.skip(path, line_no, f"unknown entity {missing!r} (not in the labels)")
            continue
        before = len(builder.keys)
        builder.add_triple(builder.ensure_entity(head), relation, builder.ensure_entity(tail))
        report.counts["entities created"] += len(builder.keys) - before
        report.counts["triples"] += 1
    return report


_NT = re.compile(
    r"^\s*(<[^>]*>|_:\S+)\s+(<[^>]*>)\s+"  # subject, predicate
    r'(<[^>]*>|_:\S+|"(?:[^"\\]|\\.)*"(?:@[\w-]+|\^\^<[^>]*>)?)\s*\.\s*$'
)  # object
_LABEL_PREDICATES = {"label", "pref_label", "name"}
_ALIAS_PREDICATES = {"alt_label", "alternate_name"}
_DESCRIPTION_PREDICATES = {"description", "comment"}


def _literal(term: str) -> tuple[str, str | None]:
    """(text, language) of an N-Triples literal."""
    body, _, rest = term[1:].rpartition('"')
    text = json.loads(f'"{body}"') if "\\" in body else body
    return text, rest[1:].lower() if rest.startswith("@") else None


def import_ntriples(builder: KGBuilder, path: str | Path, language: str = "en") -> ImportReport:
    """N-Triples: IRI objects become triples; label/altLabel/description literals in ``language``
    (or untagged) name and describe the subject; ``rdf:type`` becomes a concept."""
    from mner.knowledge.concepts import snake

    report = ImportReport(f"n-triples {Path(path).name}")
    for line_no, line in iter_lines(path, report):
        if line.lstrip().startswith("#"):
            continue
        match = _NT.match(line)
        if match is None:
            report.skip(path, line_no, "expected '<subject> <predicate> <object> .' (N-Triples)")
            continue
        subject, predicate, obj = match.groups()
        handle = builder.ensure_entity(subject.strip("<>"))
        if not obj.startswith('"'):
            if predicate == RDF_TYPE:
                builder.add_concept(handle, _local_name(obj).replace("_", " "), "rdf:type", 1)
                report.counts["types"] += 1
            else:
                builder.add_triple(handle, predicate.strip("<>"), builder.ensure_entity(obj.strip("<>")))
                report.counts["triples"] += 1
            continue
        text, lang = _literal(obj)
        kind = snake(predicate)
        if lang not in (None, language) or not text.strip():
            report.counts["literals in other languages"] += 1
        elif kind in _LABEL_PREDICATES:
            builder.set_label(handle, text.strip())
            report.counts["labels"] += 1
        elif kind in _ALIAS_PREDICATES:
            builder.add_alias(handle, text.strip())
            report.counts["aliases"] += 1
        elif kind in _DESCRIPTION_PREDICATES:
            builder.set_description(handle, text.strip())
            report.counts["descriptions"] += 1
        else:
            report.counts["other literals"] += 1
    return report


# ------------------------------------------------------------------------------------- FB15k-237


def import_fb15k237(builder: KGBuilder, folder: str | Path) -> ImportReport:
    """FB15k-237: Wikidata labels, aliases and descriptions, then the train/valid/test triples."""
    folder = Path(folder)
    report = ImportReport("fb15k237")
    path = folder / "entity2wikidata.json"
    entries = read_json(path)
    if not isinstance(entries, dict):
        raise MnerInputError(f"expected a JSON object of entities, got {type(entries).__name__}", path)
    for mid, entry in entries.items():
        label = entry.get("label") if isinstance(entry, dict) else None
        if not isinstance(label, str) or not label.strip():
            report.skip(path, None, f"entity {mid!r}: expected an object with a 'label'")
            continue
        aliases = [a for a in entry.get("alternatives") or [] if isinstance(a, str)]
        description = entry.get("description") if isinstance(entry.get("description"), str) else None
        handle = builder.add_entity(mid, label.strip(), description, aliases)
        if handle is None:
            report.skip(path, None, f"duplicate entity {mid!r}")
            continue
        if isinstance(entry.get("wikidata_id"), str):
            builder.add_same_as(entry["wikidata_id"], handle)
        report.counts["labelled entities"] += 1
    for split in FB15K237_SPLITS:
        import_tsv(builder, folder / split, unknown="create", report=report)
    report.counts["unlabelled entities"] = report.counts.pop("entities created", 0)
    return report


# ------------------------------------------------------------------------------------- MMKG, DB15K


def _local_name(uri: str) -> str:
    return unquote(uri.strip("<>").rstrip("/").split("/")[-1].split("#")[-1])


def dbpedia_label(uri: str) -> tuple[str, str | None]:
    """(label, description) from a DBpedia URI: ``…/The_Longest_Yard_(2005_film)`` → ("The Longest Yard",
    "2005 film")."""
    name = _local_name(uri).replace("_", " ")
    match = re.fullmatch(r"(.*?)\s*\(([^()]*)\)", name)
    return (match.group(1), match.group(2)) if match and match.group(1) else (name, None)


def import_mmkb_links(builder: KGBuilder, folder: str | Path, report: ImportReport) -> None:
    """``DB15K_SameAsLink.txt``: ``/m/… <SameAs> <dbpedia URI> .`` joins DB15K to FB15k-237."""
    path = Path(folder) / "DB15K_SameAsLink.txt"
    for line_no, line in iter_lines(path, report):
        parts = line.split()
        if len(parts) < 3 or parts[1] != "<SameAs>" or not parts[2].startswith("<"):
            report.skip(path, line_no, "expected '<mid> <SameAs> <uri> .'")
            continue
        handle = builder.handle(parts[0])
        if handle is None:
            report.counts["links to entities not in the KG"] += 1
            continue
        builder.add_same_as(parts[2].strip("<>"), handle)
        report.counts["same-as links"] += 1


def import_mmkb_images(builder: KGBuilder, folder: str | Path, report: ImportReport) -> None:
    """``FB15K_ImageIndex.txt`` and ``DB15K_ImageIndex.txt``: entity → MMKG image id."""
    for name in ("FB15K_ImageIndex.txt", "DB15K_ImageIndex.txt"):
        path = Path(folder) / name
        for line_no, line in iter_lines(path, report):
            fields = _fields(line, (2,), "entity<TAB>image id")
            if isinstance(fields, str):
                report.skip(path, line_no, fields)
                continue
            handle = builder.handle(fields[0].strip("<>"))
            if handle is None:
                report.counts["image ids of entities not in the KG"] += 1
                continue
            builder.add_image_id(fields[1], handle)
            report.counts["image ids"] += 1


def import_db15k(builder: KGBuilder, folder: str | Path) -> ImportReport:
    """DB15K triples (DBpedia URIs), joined to FB15k-237 through same-as links where there are any.

    ``rdf:type`` triples are skipped: they are unreliable (types come from relations and classes).
    """
    report = ImportReport("db15k")
    path = Path(folder) / "triples.tsv"
    for line_no, line in iter_lines(path, report):
        fields = _fields(line, (3, 4), "head<TAB>relation<TAB>tail[<TAB>split]")
        if isinstance(fields, str):
            report.skip(path, line_no, fields)
            continue
        if fields[1] == RDF_TYPE:
            report.counts["rdf:type triples skipped"] += 1
            continue
        handles = []
        for uri in (fields[0].strip("<>"), fields[2].strip("<>")):
            handle = builder.handle(uri)
            if handle is None:
                label, description = dbpedia_label(uri)
                handle = builder.add_entity(uri, label, description)
                report.counts["new entities"] += 1
            handles.append(handle)
        builder.add_triple(handles[0], fields[1].strip("<>"), handles[1])
        report.counts["triples"] += 1
    return report


# ------------------------------------------------------------------------------------------- CoDEx


def import_codex(builder: KGBuilder, folder: str | Path) -> ImportReport:
    """CoDEx instance-of / occupation classes of Wikidata entities, joined through their QIDs."""
    folder = Path(folder)
    report = ImportReport("codex")
    classes = read_json(folder / "types.json")
    entity_types = read_json(folder / "entity2types.json")
    for path, obj in ((folder / "types.json", classes), (folder / "entity2types.json", entity_types)):
        if not isinstance(obj, dict):
            raise MnerInputError(f"expected a JSON object, got {type(obj).__name__}", path)
    for qid, class_ids in entity_types.items():
        handle = builder.handle(qid)
        if handle is None:
            report.counts["entities not in the KG"] += 1
            continue
        if not isinstance(class_ids, list):
            report.skip(folder / "entity2types.json", None, f"entity {qid!r}: expected a list of class ids")
            continue
        report.counts["entities with classes"] += 1
        for class_id in class_ids:
            label = (classes.get(class_id) or {}).get("label") if isinstance(class_id, str) else None
            if not isinstance(label, str) or not label.strip():
                report.counts["classes without a label"] += 1
                continue
            builder.add_concept(handle, label, "codex", 1)
            coarse = "PER" if label == "human" else head_noun_type(label.lower())
            if coarse is not False:
                builder.vote_type(handle, coarse, 3)
            report.counts["class facts"] += 1
    return report
