"""``mner tag``: tag a JSONL (or Parquet) file of posts into a JSONL file (or Parquet folder) of results, in
batches, resumable; on this process, or as a Ray Data job (``--engine ray``, ``mner.serving.raytag``).

Input lines: ``{"id"?: str, "text": str (or "tokens": [str]), "image"?: path, "caption"?: str, "context"?: str}``;
a ``--context-file`` TSV fills "context" for lines without one (by "id", or by the image file's stem). Output
lines: the ``mner.serving.pipeline`` result of each post (entities with their scores and, for a "text" post, their
characters in it), or ``{"id", "line", "error"}`` for a line that cannot be tagged. The input is read and the
output written one batch at a time (constant memory); a rerun skips the ids already in the output
(``mner.serving.jobs.Resume``, on either engine), so an interrupted run is resumed by running the same command
again.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from mner.cli.errors import user_errors
from mner.cli.options import (
    AttributesOption,
    ChannelArgs,
    MinScoreOption,
    ModelOption,
    RuntimeOption,
    ThreadsOption,
    channel_options,
)
from mner.data import MnerInputError


@dataclass
class TagSummary:
    tagged: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    warned: int = 0  # tagged posts whose record carries warnings (a context that lists nothing readable)
    startup: float | None = None  # seconds loading the model (starting Ray too), apart from the tagging
    unread: int = 0  # tagged posts whose image was not read (the model reads none, and no --attributes)


def unread_images(records) -> int:
    """Tagged records whose image was not read (their ``attributes`` is null)."""
    return sum("attributes" in r and r["attributes"] is None for r in records)


def summary_line(summary) -> str:
    """The last line of a run (local or Ray): what it did, or that there was nothing to do."""
    if summary.tagged + summary.errors == 0:
        if summary.skipped:
            return f"nothing to do: all {summary.skipped} posts of the input are in the output already"
        return "nothing to do: the input holds no posts"
    rate = (summary.tagged + summary.errors) / summary.seconds if summary.seconds > 0 else 0.0
    warned = (
        f"; {summary.warned} tagged with a warning (a context that lists no entity that can be read: tagged "
        "without it)"
        if summary.warned
        else ""
    )
    unread = (
        f"; {summary.unread} images not read (the model reads none: --attributes reads them for their classes)"
        if summary.unread
        else ""
    )
    return (
        f"tagged {summary.tagged}, errors {summary.errors}, skipped {summary.skipped} (already in the output)"
        f"{warned}{unread}; {rate:.1f} posts/s"
        + (f" tagging, after {summary.startup:.1f} s of start-up" if summary.startup is not None else "")
    )


@channel_options(files=("tsv", "kg"))
@user_errors
def tag(
    input_file: Annotated[
        str,
        typer.Option(
            "--in",
            help='Posts: JSONL, one object a line {"id"?, "text" (or "tokens"), "image"?, "caption"?, "context"?}, '
            "or a .parquet file with those columns; a local path or a URI pyarrow opens (s3://, gs://, hdfs://).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Results: a JSONL file, or a folder of Parquet parts when it ends in .parquet; if it exists, the "
            "posts already in it are skipped (resume).",
        ),
    ],
    images_root: Annotated[
        Path | None,
        typer.Option(
            help="Resolve image paths relative to this folder and refuse any outside it (default: relative to the "
            "input file's folder, no restriction)."
        ),
    ] = None,
    model: ModelOption = None,
    batch_size: Annotated[
        int,
        typer.Option(min=1, help="Posts per batch (one image-encoder and one tagger call each)."),
    ] = 32,
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (a Ray Data job: --workers actors, --address).")
    ] = "local",
    workers: Annotated[
        int, typer.Option(min=1, help="With --engine ray: actors, each with its own model.")
    ] = 2,
    address: Annotated[
        str | None,
        typer.Option(help="With --engine ray: the cluster (auto, or ray://HOST:10001); none: a local Ray."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    attributes: AttributesOption = False,
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
    min_score: MinScoreOption = 0.0,
    channels: ChannelArgs = None,
) -> None:
    """Tag every post of a JSONL or Parquet file; bad lines become error records, and a rerun resumes."""
    from mner.channels.sources import image_readers
    from mner.model.folder import open_model_folder
    from mner.runtime.ort import check_threads
    from mner.serving.jobs import plan_chunks, read_lines
    from mner.serving.outputs import open_output

    if engine not in ("local", "ray"):
        raise MnerInputError(f"--engine {engine!r}: expected local or ray")
    threads = check_threads(threads)
    plan_chunks(input_file)  # a missing or unreadable input fails here, before the model loads
    # an input given by URI has its images fetched as its lines are read: only where they will be read
    images = (
        attributes
        or "://" not in input_file
        or bool(image_readers(open_model_folder(model).config.channels, kg="knowledge" in channels.files))
    )
    output = open_output(out, input_file)
    try:
        if output.cut:
            typer.echo(
                f"{out}: removed an incomplete last line ({output.cut} bytes) left by an interrupted run",
                err=True,
            )
        if output.done:
            typer.echo(f"{out}: {sum(output.done.values())} posts already there are skipped", err=True)
        progress = not quiet and sys.stderr.isatty()
        if engine == "ray":
            try:
                from mner.serving.raytag import run_ray
            except ImportError:
                raise MnerInputError("--engine ray needs Ray: pip install 'mner[ray]'") from None
            from mner.channels.sources import unsourced_warning

            reads = open_model_folder(model).config.channels
            warning = unsourced_warning(reads, set(channels.files))
            if warning is not None:
                typer.echo(f"warning: {warning}", err=True)
            summary = run_ray(
                input_file,
                output,
                model=model,
                files=channels.files,
                runtime=runtime,
                threads=threads,
                min_score=min_score,
                attributes=attributes,
                images_root=images_root,
                batch_size=batch_size,
                workers=workers,
                address=address,
                progress=not quiet,
            )
        else:
            from mner.serving.pipeline import Pipeline

            def load() -> Pipeline:
                pipeline = Pipeline(model, channels.files, runtime, threads, min_score, attributes)
                for warning in pipeline.warnings():
                    typer.echo(f"warning: {warning}", err=True)
                return pipeline

            lines = read_lines(input_file, images_root, images)
            summary = run_tagging(load, lines, input_file, output, batch_size, progress=progress)
    finally:
        output.close()
    typer.echo(summary_line(summary), err=True)


def _done(value) -> Future:
    future = Future()
    future.set_result(value)
    return future


def run_tagging(load, lines, source: str, output, batch_size: int, progress: bool = False) -> TagSummary:
    """Tag ``lines`` (``mner.serving.jobs.read_lines``) not already in ``output``, appending their records to it. The
    pipeline is ``load()``-ed at the first post to tag: a rerun of a finished job never loads the model.

    With one thread (``--threads 1``), each batch is prepared (text tokenised, images decoded) on a second
    thread while the batch before it is tagged: 2,000 posts with images, three alternating runs each, median
    81.1 posts/s against 67.8 without (1.20x). With more, decoding already runs on that many threads and
    preparing ahead measured slower (median 105.8 vs 110.7 posts/s with 2, 0.96x), so it is not done
    (BENCHMARKS.md, "mner tag"). Records are written in input order,
    a batch at a time, either way.
    """
    from tqdm import tqdm

    from mner.serving.jobs import Resume, batches, tag_lines

    summary = TagSummary()
    resume = Resume(output.done)
    pipeline = None
    start = time.perf_counter()

    def finish(todo, prepared) -> None:
        records = tag_lines(pipeline, todo, source, prepared.result())
        for record in records:
            summary.errors += "error" in record
            summary.tagged += "error" not in record
            summary.warned += bool(record.get("warnings"))
        summary.unread += unread_images(records)
        output.write(records)
        bar.update(len(todo))

    try:
        with tqdm(unit="post", desc="tagging", disable=not progress, leave=False) as bar:
            pending = None  # the batch being prepared: (lines, future of its prepared posts)
            for batch in batches(lines, batch_size):
                todo = [line for line in batch if not resume.skip(line.id)]
                summary.skipped += len(batch) - len(todo)
                if not todo:
                    continue
                if pipeline is None:
                    loading = time.perf_counter()
                    pipeline = load()
                    start = time.perf_counter()  # posts/s counts tagging, not loading the model
                    summary.startup = start - loading
                items = [line.post for line in todo if line.error is None]
                if (
                    pipeline.threads == 1
                ):  # prepared on the Pipeline's thread while the batch before is tagged
                    following = (todo, pipeline.prepare_later(items))
                else:
                    following = (todo, _done(pipeline.prepare_many(items)))
                if pending is not None:
                    finish(*pending)
                pending = following
            if pending is not None:
                finish(*pending)
    finally:
        if pipeline is not None:
            pipeline.close()
    summary.seconds = time.perf_counter() - start
    return summary
