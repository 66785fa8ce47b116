"""What a KG is built from (``KGSources``) and ``build_kg``, which runs their importers in order and writes
one KG file (atomically)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mner.data import MnerInputError
from mner.knowledge.builder import ImportReport, KGBuilder


@dataclass
class KGSources:
    """What to build a KG from; every field is optional but at least one source must be given."""

    fb15k237: Path | None = None
    db15k: Path | None = None
    mmkb: Path | None = None
    codex: Path | None = None
    labels: Sequence[Path] = ()
    tsv: Sequence[Path] = ()
    ntriples: Sequence[Path] = ()
    gazetteers: Sequence[str] = field(default_factory=tuple)

    def check(self) -> None:
        if not any([self.fb15k237, self.db15k, self.labels, self.tsv, self.ntriples, self.gazetteers]):
            raise MnerInputError(
                "nothing to build from: give --fb15k237, --db15k, --tsv, --ntriples, --labels or --gazetteer"
            )
        for folder in (self.fb15k237, self.db15k, self.mmkb, self.codex):
            if folder is not None and not Path(folder).is_dir():
                raise MnerInputError(
                    "folder not found" if not Path(folder).exists() else "expected a folder", folder
                )


def build_kg(
    out: str | Path, sources: KGSources, progress: Callable[[ImportReport], None] | None = None
) -> list[ImportReport]:
    """Build a KG file at ``out`` from ``sources``; the old file at ``out`` is replaced only on success.

    Returns:
        One report per importer (counts and skipped lines), in the order they ran.
    """
    sources.check()
    reports: list[ImportReport] = []
    with KGBuilder(out) as builder:
        for report in _imports(builder, sources):
            reports.append(report)
            if progress is not None:
                progress(report)
        builder.finish([{"source": r.source, **dict(r.counts)} for r in reports])
    return reports


def _imports(builder: KGBuilder, sources: KGSources) -> Iterator[ImportReport]:
    """Each importer's report, in order, as it runs: the sources, then what is derived from them, then gazetteers."""
    from mner.knowledge.gazetteers import import_gazetteers

    yield from _graph_imports(builder, sources)
    yield from _multimodal_imports(builder, sources)
    yield ImportReport("derived", builder.derive())
    yield from import_gazetteers(builder, list(sources.gazetteers))


def _graph_imports(builder: KGBuilder, sources: KGSources) -> Iterator[ImportReport]:
    """Labels, FB15k-237, TSV and N-Triples files, in that order, each imported as its report is asked for."""
    from mner.knowledge import importers as imp

    for path in sources.labels:
        yield imp.import_labels(builder, path)
    if sources.fb15k237:
        yield imp.import_fb15k237(builder, sources.fb15k237)
    for path in sources.tsv:
        yield imp.import_tsv(builder, path, unknown="skip" if sources.labels else "create")
    for path in sources.ntriples:
        yield imp.import_ntriples(builder, path)


def _multimodal_imports(builder: KGBuilder, sources: KGSources) -> Iterator[ImportReport]:
    """MMKB's links (before DB15K, whose entities they name), DB15K, MMKB's images, then CoDEx."""
    from mner.knowledge import importers as imp

    mmkb = ImportReport("mmkb")
    if sources.mmkb:
        imp.import_mmkb_links(builder, sources.mmkb, mmkb)
    if sources.db15k:
        yield imp.import_db15k(builder, sources.db15k)
    if sources.mmkb:
        imp.import_mmkb_images(builder, sources.mmkb, mmkb)
        yield mmkb
    if sources.codex:
        yield imp.import_codex(builder, sources.codex)
