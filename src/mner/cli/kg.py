"""``mner kg``: build a knowledge graph file, add entity images, look mentions up, show statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mner.cli.errors import user_errors
from mner.cli.options import App, RuntimeOption, ThreadsOption
from mner.data import MnerInputError

app = App(
    help="Knowledge graph: build one (FB15k-237, DB15K, MMKG, CoDEx, gazetteers, your own TSV/N-Triples), "
    "add entity images, look mentions up with the paper's image-knowledge search.",
    no_args_is_help=True,
)

KGPath = Annotated[Path, typer.Option("--kg", help="The KG file (built by 'mner kg build').")]


@app.command()
@user_errors
def build(
    out: Annotated[Path, typer.Option("--out", help="The KG file to write (replaced only on success).")],
    fb15k237: Annotated[
        Path | None, typer.Option(help="FB15k-237 folder: entity2wikidata.json, train/valid/test.txt.")
    ] = None,
    db15k: Annotated[
        Path | None,
        typer.Option(help="DB15K folder: triples.tsv (joined to FB15k-237 through --mmkb's same-as links)."),
    ] = None,
    mmkb: Annotated[Path | None, typer.Option(help="MMKG folder: same-as links and image ids.")] = None,
    codex: Annotated[Path | None, typer.Option(help="CoDEx folder: entity2types.json, types.json.")] = None,
    labels: Annotated[
        list[Path] | None,
        typer.Option(help="Labels TSV: id<TAB>label[<TAB>description[<TAB>alias]...] (repeatable)."),
    ] = None,
    tsv: Annotated[
        list[Path] | None, typer.Option(help="Triples TSV: head<TAB>relation<TAB>tail (repeatable).")
    ] = None,
    ntriples: Annotated[list[Path] | None, typer.Option(help="N-Triples file (repeatable).")] = None,
    gazetteer: Annotated[
        list[str] | None,
        typer.Option(help="geonames, pycountry or names (repeatable; needs the 'gazetteers' extra)."),
    ] = None,
) -> None:
    """Build a KG file; prints what each importer read and every line it skipped."""
    from mner.knowledge import KGSources, SqliteKG, build_kg

    sources = KGSources(
        fb15k237, db15k, mmkb, codex, labels or [], tsv or [], ntriples or [], gazetteer or []
    )

    def progress(report) -> None:
        typer.echo(report.summary())
        for line in report.skipped_lines():
            typer.echo(f"  skipped {line}", err=True)

    build_kg(out, sources, progress=progress)
    with SqliteKG(out) as kg:
        s = kg.stats()
    typer.echo(
        f"wrote {out}: {s['entities']:,} entities, {s['triples']:,} triples, "
        f"{s['file_bytes'] / 1e6:.1f} MB in {kg.meta.get('build_seconds')} s"
    )


def _image_jobs(kg, images: Path, mapping: Path | None) -> tuple[list[tuple[int, Path, str]], list[str]]:
    """(entity, image file, where) to encode, and the problems found on the way."""
    from mner.knowledge.builder import ImportReport
    from mner.knowledge.importers import iter_lines

    jobs, problems = [], []

    def resolve(ref: str) -> int | None:
        entity = kg.find_entity(ref)
        return entity.id if entity is not None else kg.entity_for_image_id(ref)

    if mapping is None:
        for path in sorted(p for p in images.iterdir() if p.is_file() and not p.name.startswith(".")):
            entity = resolve(path.stem)
            if entity is None:
                problems.append(f"{path}: {path.stem!r} is neither an MMKG image id nor an entity")
            else:
                jobs.append((entity, path, path.name))
        return jobs, problems
    report = ImportReport("map")
    for line_no, line in iter_lines(mapping, report):
        fields = [f.strip() for f in line.split("\t")]
        where = f"{mapping}:{line_no}"
        if len(fields) != 2 or not all(fields):
            problems.append(f"{where}: expected 'entity<TAB>image file', got {len(fields)} field(s)")
            continue
        entity = resolve(fields[0])
        if entity is None:
            problems.append(f"{where}: unknown entity {fields[0]!r}")
            continue
        jobs.append((entity, images / fields[1], where))
    return jobs, problems + report.skipped_lines()


@app.command("add-images")
@user_errors
def add_images(
    kg_path: KGPath,
    images: Annotated[Path, typer.Option("--images", help="Folder of entity photos.")],
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--map",
            help="TSV 'entity<TAB>image file' (entity: KG id, "
            "Wikidata id or MMKG image id). Without it, file stems are "
            "taken as MMKG image ids or entity ids.",
        ),
    ] = None,
    encoder: Annotated[str, typer.Option(help="Image encoder: lite0, lite1 or lite2.")] = "lite0",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 16,
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
) -> None:
    """Compute image vectors of entity photos with the vision encoder and store them in the KG."""
    from mner.knowledge import SqliteKG

    if not images.is_dir():
        raise MnerInputError("folder not found" if not images.exists() else "expected a folder", images)
    with SqliteKG(kg_path, writable=True) as kg:
        if kg.meta.get("image_encoder") not in (None, encoder):
            used = kg.meta["image_encoder"]
            raise MnerInputError(
                f"the KG's entity images were encoded with {used!r}; use --encoder {used}", kg_path
            )
        jobs, problems = _image_jobs(kg, images, mapping)
        added = _encode_and_store(kg, jobs, problems, encoder, batch_size, runtime, threads)
        kg.commit()
    for problem in problems:
        typer.echo(f"  skipped {problem}", err=True)
    typer.echo(
        f"added {added:,} image vectors for {len({e for e, _, _ in jobs}):,} entities; "
        f"skipped {len(problems):,}"
    )


def _encode_and_store(
    kg, jobs, problems: list[str], encoder: str, batch_size: int, runtime: str, threads: int | None
) -> int:
    if not jobs:
        return 0
    from mner.runtime.images import load_image_encoder
    from mner.vision import EncoderConfig, ImageError

    enc = load_image_encoder(EncoderConfig.for_backbone(encoder), runtime, threads or 1)
    added = 0
    results = enc.encode_files([path for _, path, _ in jobs], batch_size=batch_size)
    for (entity, _, where), result in zip(jobs, results, strict=True):
        if isinstance(result, ImageError):
            problems.append(f"{where}: {result}")
            continue
        kg.add_image_vectors(entity, result.vector, source=where, encoder=encoder)
        added += 1
    return added


@app.command()
@user_errors
def lookup(
    kg_path: KGPath,
    text: Annotated[str, typer.Argument(help="A mention or a post's text ('Kobe', 'Chelsea is sleeping').")],
    image: Annotated[
        Path | None, typer.Option("--image", help="The post's image: matched against entity images.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Candidates per mention.")] = 5,
    theta: Annotated[
        float, typer.Option(min=-1.0, max=1.0, help="Cosine threshold of an image match.")
    ] = 0.9,
    policy: Annotated[
        str,
        typer.Option(
            help="image-then-text (fall back to the best text candidate) or image-only (the paper)."
        ),
    ] = "image-then-text",
    rank: Annotated[
        str,
        typer.Option(
            help="prior: entities with a type first, then name score + ln(1 + degree in the KG); score: name "
            "score alone (what the knowledge channel of the shipped models reads)."
        ),
    ] = "prior",
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
) -> None:
    """Candidates for the mentions in TEXT, then the image-knowledge match and its isA triples."""
    if rank not in ("prior", "score"):
        raise MnerInputError(f"--rank {rank!r}: expected prior or score")
    from mner.data import tokenize
    from mner.knowledge import SqliteKG, image_knowledge, post_candidates
    from mner.knowledge.names import Mention, check_mention

    with SqliteKG(kg_path) as kg:
        tokens = tokenize(text)
        candidates, by_entity, mentions = post_candidates(kg, tokens, k=k, prior=rank == "prior")
        if not mentions:  # a lower-case mention ("kobe") is looked up whole
            check_mention(text)
            mentions = [Mention(0, len(tokens), text, text)]
            candidates = kg.candidates(text, k=k, prior=rank == "prior")
            by_entity = {c.entity.id: mentions[0] for c in candidates}
        vector = _image_vector(kg, image, runtime, threads or 1)
        found = image_knowledge(kg, candidates, vector, theta, policy, mentions=by_entity)
    if json_output:
        out = {"mentions": [m.query for m in mentions], **found.to_dict()}
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    _print_knowledge(found, mentions)


def _image_vector(kg, image: Path | None, runtime: str = "auto", threads: int = 1):
    if image is None:
        return None
    if kg.image_dim is None:
        typer.echo("note: the KG has no entity images; --image is not used", err=True)
        return None
    from mner.runtime.images import load_image_encoder
    from mner.vision import EncoderConfig

    config = EncoderConfig.for_backbone(kg.meta.get("image_encoder") or "lite0")
    return load_image_encoder(config, runtime, threads).encode_file(image).vector


def _print_knowledge(found, mentions) -> None:
    typer.echo("mentions: " + (", ".join(repr(m.query) for m in mentions) or "none"))
    typer.echo("candidates:")
    for c in found.candidates:
        e = c.entity
        typer.echo(
            f"  {c.score:5.1f}  {e.label or e.key}  [{e.type or '-'}]  {e.key}"
            + (f"  ({e.description})" if e.description else "")
        )
    if found.entity is None and found.path != "name":
        typer.echo(f"knowledge: none ({found.compared} entity images compared)")
        return
    if found.entity is not None:
        how = (
            f"image match at hop {found.hop}, cosine {found.similarity:.3f}"
            if found.path == "image"
            else "best text candidate"
        )
        name = found.entity.label or found.entity.key
        typer.echo(f"knowledge: {name} [{found.coarse_type or '-'}] ({how})")
    else:
        typer.echo(f"knowledge: {found.mention.query} [PER] (first-name rule)")
    for triple in found.triples:
        typer.echo("  (" + ", ".join(triple) + ")")


@app.command()
@user_errors
def stats(
    kg_path: KGPath,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What a KG file holds: entities by type, aliases, triples, concepts, images, sources."""
    from mner.knowledge import SqliteKG

    with SqliteKG(kg_path) as kg:
        s = kg.stats()
    if json_output:
        typer.echo(json.dumps(s, ensure_ascii=False))
        return
    for key, value in s.items():
        if key == "sources":
            for source in value:
                name = source.pop("source")
                typer.echo(f"source: {name}: " + ", ".join(f"{k} {v:,}" for k, v in source.items()))
        elif isinstance(value, dict):
            typer.echo(f"{key}: " + ", ".join(f"{k} {v:,}" for k, v in value.items()))
        else:
            typer.echo(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")


@app.command()
@user_errors
def check(kg_path: KGPath) -> None:
    """The full check of a KG file: SQLite's integrity_check (every page, record and index; the check made on every
    open is the quicker quick_check, which does not compare an index with its table)."""
    from mner.knowledge.store import check_kg

    found = check_kg(kg_path)
    typer.echo(
        f"{kg_path}: ok (SQLite's integrity_check: {found['pages']:,} pages, {found['entities']:,} entities, "
        f"{found['bytes'] / 1e6:.1f} MB)"
    )
