"""What a KG is built from (``KGSources``) and ``build_kg``, which runs their importers in order and writes
one KG file (atomically)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    from mner.knowledge import importers as imp
    from mner.knowledge.gazetteers import import_gazetteers

    sources.check()
    reports: list[ImportReport] = []

    def done(report: ImportReport) -> None:
        reports.append(report)
        if progress is not None:
            progress(report)

    with KGBuilder(out) as builder:
        for path in sources.labels:
            done(imp.import_labels(builder, path))
        if sources.fb15k237:
            done(imp.import_fb15k237(builder, sources.fb15k237))
        for path in sources.tsv:
            done(imp.import_tsv(builder, path, unknown="skip" if sources.labels else "create"))
        for path in sources.ntriples:
            done(imp.import_ntriples(builder, path))
        mmkb = ImportReport("mmkb")
        if sources.mmkb:
            imp.import_mmkb_links(builder, sources.mmkb, mmkb)
        if sources.db15k:
            done(imp.import_db15k(builder, sources.db15k))
        if sources.mmkb:
            imp.import_mmkb_images(builder, sources.mmkb, mmkb)
            done(mmkb)
        if sources.codex:
            done(imp.import_codex(builder, sources.codex))
        done(ImportReport("derived", builder.derive()))
        for report in import_gazetteers(builder, list(sources.gazetteers)):
            done(report)
        builder.finish([{"source": r.source, **dict(r.counts)} for r in reports])
    return reports
