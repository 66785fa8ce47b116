"""``mner tag``: tag a JSONL file of posts into a JSONL file of results, in batches, resumable.

Input lines: ``{"id"?: str, "text": str (or "tokens": [str]), "image"?: path, "caption"?: str, "context"?: str}``;
a ``--context`` TSV fills "context" for lines without one (by "id", or by the image file's stem). Output
lines: the ``mner.pipeline`` result of each post, or ``{"id", "line", "error"}`` for a line that cannot be
tagged. The input is read and the output written one batch at a time (constant memory); a rerun skips the
ids already in the output, so an interrupted run is resumed by running the same command again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mner.cli.errors import user_errors
from mner.cli.options import ContextOption, ModelOption
from mner.data import MnerInputError

if TYPE_CHECKING:
    from mner.pipeline import PostInput


@dataclass
class _Line:
    """One input line: its id and either the post to tag or the error record to write instead."""

    number: int
    id: str
    post: PostInput | None = None
    error: str | None = None


@dataclass
class TagSummary:
    tagged: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = (self.tagged + self.errors) / self.seconds if self.seconds > 0 else 0.0
        return (
            f"tagged {self.tagged}, errors {self.errors}, skipped {self.skipped} (already in the output); "
            f"{rate:.1f} posts/s"
        )


@user_errors
def tag(
    input_file: Annotated[
        Path,
        typer.Option(
            "--in",
            help='Posts, one JSON object a line: {"id"?, "text" (or "tokens"), "image"?, "caption"?, "context"?}.',
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Results, one JSON object a line; if it exists, the posts "
            "already in it are skipped (resume).",
        ),
    ],
    images_root: Annotated[
        Path | None,
        typer.Option(
            help="Resolve image paths relative to this folder and "
            "refuse any outside it (default: relative to the "
            "input file's folder, no restriction)."
        ),
    ] = None,
    model: ModelOption = None,
    kg: Annotated[Path | None, typer.Option("--kg", help="Knowledge-graph file (mner kg build).")] = None,
    context: ContextOption = None,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            help="Posts per batch (one image-encoder and one tagger "
            "call each); the output is flushed after each.",
        ),
    ] = 32,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Tag every post of a JSONL file; bad lines become error records, and a rerun resumes."""
    from mner.data import iter_jsonl
    from mner.pipeline import Pipeline

    lines = iter_jsonl(input_file)  # a missing or unreadable input fails here, before the model loads
    done, cut = read_done_ids(out)
    if cut:
        typer.echo(
            f"{out.name}: removed an incomplete last line ({cut} bytes) left by an interrupted run", err=True
        )
    if done:
        typer.echo(f"{out.name}: {len(done)} posts already there are skipped", err=True)
    pipeline = Pipeline(model, kg, context)
    summary = run_tagging(
        pipeline,
        lines,
        input_file,
        out,
        done,
        images_root,
        batch_size,
        progress=not quiet and sys.stderr.isatty(),
    )
    pipeline.close()
    typer.echo(summary.line(), err=True)


def run_tagging(
    pipeline,
    lines,
    input_file: Path,
    out: Path,
    done: set[str],
    images_root: Path | None,
    batch_size: int,
    progress: bool = False,
) -> TagSummary:
    """Tag the posts of ``lines`` (from ``iter_jsonl``) not in ``done``, appending results to ``out``."""
    from tqdm import tqdm

    summary = TagSummary()
    start = time.perf_counter()
    base = images_root if images_root is not None else input_file.parent
    with (
        open(out, "a", encoding="utf-8", newline="\n") as sink,
        tqdm(unit="post", desc="tagging", disable=not progress, leave=False) as bar,
    ):
        for batch in _batches(_read_lines(lines, input_file, base, images_root is not None), batch_size):
            todo = [line for line in batch if line.id not in done]
            summary.skipped += len(batch) - len(todo)
            posts = [line for line in todo if line.error is None]
            results = iter(pipeline.tag_many([line.post for line in posts]) if posts else [])
            for line in todo:
                record = _error_record(line, line.error) if line.error is not None else next(results)
                if isinstance(record, MnerInputError):
                    record = _error_record(line, f"{input_file.name}:{line.number}: {record}")
                elif not isinstance(record, dict):
                    record = record.to_dict()
                summary.errors += "error" in record
                summary.tagged += "error" not in record
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            sink.flush()
            bar.update(len(todo))
    summary.seconds = time.perf_counter() - start
    return summary


def _error_record(line: _Line, message: str) -> dict:
    return {"id": line.id, "line": line.number, "error": message}


def _batches(lines: Iterator[_Line], size: int) -> Iterator[list[_Line]]:
    batch: list[_Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _read_lines(lines, input_file: Path, base: Path, confined: bool) -> Iterator[_Line]:
    """Each input line as the post to tag, or the error that says why it cannot be."""
    from mner.data import post_from_json
    from mner.pipeline import PostInput

    for number, obj in lines:
        default_id = f"{input_file.stem}-{number}"
        line_id = str(obj["id"]) if isinstance(obj, dict) and obj.get("id") is not None else default_id
        if isinstance(obj, MnerInputError):
            yield _Line(number, line_id, error=str(obj))
            continue
        try:
            post = post_from_json(obj, where=default_id)
            image = None if post.image is None else image_path(post.image, base, confined)
        except ValueError as err:  # MnerInputError is one
            yield _Line(number, line_id, error=f"{input_file.name}:{number}: {err}")
            continue
        text = post.extra.get("text")
        yield _Line(
            number,
            line_id,
            PostInput(
                text if text is not None else " ".join(post.tokens),
                image,
                post.caption,
                line_id,
                tokens=post.tokens,
                context=post.context,
            ),
        )


def image_path(value: str, base: Path, confined: bool) -> Path:
    """The image file a post names, relative to ``base``; with ``confined``, it must resolve inside ``base``.

    Raises:
        MnerInputError: a confined path that leaves ``base`` (``..``, an absolute path, a symlink out).
    """
    path = base / value  # an absolute ``value`` replaces base
    if confined:
        root = base.resolve()
        if not path.resolve().is_relative_to(root):
            raise MnerInputError(f"image {value!r} is outside --images-root {base}")
    return path


def read_done_ids(out: Path) -> tuple[set[str], int]:
    """The ids already in an output file, after cutting an incomplete last line away (its byte count).

    Raises:
        MnerInputError: a line before the last is not a JSON object with an "id": not an ``mner tag`` output.
    """
    if not out.exists():
        return set(), 0
    done: set[str] = set()
    keep = 0  # bytes of complete lines
    pending: tuple[int, int] | None = None  # (line number, length) of a line that did not parse
    with open(out, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if pending is not None:
                raise MnerInputError(
                    "not an 'mner tag' output line (expected a JSON object with an \"id\"); "
                    "give another --out",
                    out,
                    pending[0],
                )
            record = _record_id(raw) if raw.endswith(b"\n") else None
            if record is None:
                pending = (number, len(raw))
                continue
            done.add(record)
            keep += len(raw)
    cut = 0
    if pending is not None:  # the last line was cut mid-write
        cut = pending[1]
        os.truncate(out, keep)
    return done, cut


def _record_id(raw: bytes) -> str | None:
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or "id" not in record:
        return None
    return str(record["id"])
