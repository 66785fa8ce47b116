"""``mner tag``: tag a JSONL file of posts into a JSONL file of results, in batches, resumable.

Input lines: ``{"id"?: str, "text": str (or "tokens": [str]), "image"?: path, "caption"?: str, "context"?: str}``;
a ``--context`` TSV fills "context" for lines without one (by "id", or by the image file's stem). Output
lines: the ``mner.pipeline`` result of each post, or ``{"id", "line", "error"}`` for a line that cannot be
tagged. The input is read and the output written one batch at a time (constant memory); a rerun skips the
ids already in the output, so an interrupted run is resumed by running the same command again.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from mner.cli.errors import user_errors
from mner.cli.options import ContextOption, ModelOption, RuntimeOption, ThreadsOption


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
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
) -> None:
    """Tag every post of a JSONL file; bad lines become error records, and a rerun resumes."""
    from mner.jobs import OutputFile, read_lines
    from mner.ort import set_threads
    from mner.pipeline import Pipeline

    set_threads(threads)

    lines = read_lines(
        input_file, images_root
    )  # a missing or unreadable input fails here, before the model loads
    output = OutputFile(out, input_file)
    try:
        if output.cut:
            typer.echo(
                f"{out}: removed an incomplete last line ({output.cut} bytes) left by an interrupted run",
                err=True,
            )
        if output.done:
            typer.echo(f"{out}: {sum(output.done.values())} posts already there are skipped", err=True)
        pipeline = Pipeline(model, kg, context, runtime)
        summary = run_tagging(
            pipeline, lines, str(input_file), output, batch_size, progress=not quiet and sys.stderr.isatty()
        )
        pipeline.close()
    finally:
        output.close()
    typer.echo(summary.line(), err=True)


def run_tagging(pipeline, lines, source: str, output, batch_size: int, progress: bool = False) -> TagSummary:
    """Tag ``lines`` (``mner.jobs.read_lines``) not already in ``output``, appending their records to it."""
    from tqdm import tqdm

    from mner.jobs import Resume, batches, tag_lines

    summary = TagSummary()
    resume = Resume(output.done.copy())
    start = time.perf_counter()
    with tqdm(unit="post", desc="tagging", disable=not progress, leave=False) as bar:
        for batch in batches(lines, batch_size):
            todo = [line for line in batch if not resume.skip(line.id)]
            summary.skipped += len(batch) - len(todo)
            records = tag_lines(pipeline, todo, source)
            for record in records:
                summary.errors += "error" in record
                summary.tagged += "error" not in record
            output.write(records)
            bar.update(len(todo))
    summary.seconds = time.perf_counter() - start
    return summary
