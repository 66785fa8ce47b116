"""``mner data check``: is the benchmark data and the KG's source where mner's commands expect them, and what
works without each piece (README.md, "Data", says where each comes from and under which terms)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from mner.cli.errors import user_errors
from mner.cli.options import App

app = App(help="The benchmark data and the KG sources: check that they are where mner expects them.")

README = 'README.md, "Data"'


@dataclass(frozen=True)
class Piece:
    """One file (or folder) of the layout, what it is, and what does not work without it."""

    path: str  # relative to the folder checked
    what: str
    without: str  # what needs it (everything else works without it)
    header: str | None = None  # a TSV's first column header, checked


def _benchmark(name: str, title: str, valid_context: bool) -> tuple[Piece, ...]:
    folder = f"data/{name}"
    return (
        Piece(f"{folder}/train.txt", f"{title} training posts (CoNLL)", "mner train on it"),
        Piece(f"{folder}/valid.txt", f"{title} dev posts (CoNLL)", "mner train's checkpoint choice on it"),
        Piece(
            f"{folder}/test.txt", f"{title} test posts (CoNLL)", "mner evaluate on it, the README's figures"
        ),
        Piece(
            f"{folder}/image_captions.tsv",
            f"{title} image captions (BLIP-2)",
            "models with a 'caption' channel (paper-full's figure)",
            "image_id",
        ),
        Piece(
            f"{folder}/llm_knowledge.tsv",
            f"{title} LLM knowledge (train and test{'' if valid_context else ' only'})",
            "the default's figures with context (without it, posts take the text path)",
            "image_id",
        ),
    )


LAYOUT = (
    *_benchmark("twitter2015", "Twitter-2015", True),
    *_benchmark("twitter2017", "Twitter-2017", False),
    Piece(
        "kg/fb15k237",
        "FB15k-237 triples + Wikidata labels (entity2wikidata.json)",
        "mner kg build from the shared sources (or build one from gazetteers)",
    ),
    Piece("kg/db15k", "DB15K triples (triples.tsv)", "the KG's DBpedia entities"),
    Piece("kg/mmkb", "MMKG same-as links and image ids", "joining DB15K to FB15k-237; MMKG image ids"),
    Piece("kg/codex", "CoDEx entity classes (entity2types.json, types.json)", "the KG's isA types"),
)


@app.command()
@user_errors
def check(
    folder: Annotated[
        Path,
        typer.Argument(help="The folder holding data/ and kg/ (by default ../shared beside the repository)."),
    ] = Path("../shared"),
) -> None:
    """Say, piece by piece, what of the benchmark data and KG sources is in FOLDER and what works without the
    rest; exit status 1 when something is missing."""
    missing = 0
    for piece in LAYOUT:
        problem = _problem(folder / piece.path, piece)
        missing += problem is not None
        status = "ok" if problem is None else problem
        typer.echo(f"{status:<8} {folder / piece.path}  {piece.what}")
        if problem == "bad":
            typer.echo(f"         expected a first line '{piece.header}<TAB>...'")
        if problem is not None:
            typer.echo(f"         needed for: {piece.without}")
    if missing:
        typer.echo(
            f"{missing} of {len(LAYOUT)} not in place: tagging with the shipped models works without any of them; {README} "
            "says where each comes from, its terms, and how to build a KG from public dumps or from gazetteers",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo("everything is in place: the README's commands run as written")


def _problem(path: Path, piece: Piece) -> str | None:
    """None when ``path`` holds the piece, else one word: missing, empty, or bad (not the header expected)."""
    if piece.path.startswith("kg/"):
        return None if path.is_dir() and any(path.iterdir()) else "missing"
    if not path.is_file():
        return "missing"
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        first = f.readline()
    if not first.strip():
        return "empty"
    if piece.header is not None and first.split("\t")[0].strip() != piece.header:
        return "bad"
    return None
