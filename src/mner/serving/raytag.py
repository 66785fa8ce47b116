"""``mner tag --engine ray``: the same tagging job as ``mner tag``, run as a Ray Data job.

The driver cuts the input into chunks (``mner.serving.jobs.plan_chunks``: byte ranges of a JSONL file, row ranges
of a Parquet file) and writes the output; a pool of actors, each holding one Pipeline (model, image encoder,
KG loaded once per actor), reads its chunks where the input is (images too, relative to it), tags them in
batches and returns the records as JSON. Ray Data keeps the chunks in input order, so the driver appends
records exactly as ``mner tag`` does, to the same kinds of output (a JSONL file or a Parquet folder).

Resuming: by id, as ``mner tag`` does (``mner.serving.jobs.Resume``): the driver reads the ids of the input's
chunks while the output holds ids not yet matched and marks those posts skipped in their chunks. A worker that dies mid-job (a lost node, a kill -9) has its task retried by Ray on a
restarted actor; its records were never written, so none is lost or doubled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

from mner.data import MnerInputError
from mner.serving.jobs import Chunk, Resume, batches, plan_chunks, read_chunk, skip_written, tag_lines


class _ChunkWorker:
    """A Ray actor: one Pipeline, loaded when the actor starts, tagging chunks."""

    def __init__(
        self, model, files, runtime, threads, images_root, batch_size, min_score=0.0, attributes=False
    ):
        from mner.serving.pipeline import Pipeline

        self.pipeline = Pipeline(model, files, runtime, threads, min_score, attributes)
        self.images_root, self.batch_size = images_root, batch_size

    def __call__(self, batch: dict) -> dict:
        records, began = [], time.perf_counter()
        for chunk in batch["chunk"]:
            fields = json.loads(chunk)
            chunk = Chunk(**{**fields, "skip": tuple(map(tuple, fields["skip"]))})
            root = None if self.images_root is None else Path(self.images_root)
            lines = read_chunk(chunk, root, images=self.pipeline.reads_image())
            for part in batches(lines, self.batch_size):
                records += [json.dumps(r) for r in tag_lines(self.pipeline, part, chunk.path)]
        # the seconds this chunk took to tag, on the first of its records: the driver tells start-up from tagging
        seconds = [time.perf_counter() - began] + [0.0] * (len(records) - 1)
        return {"record": records, "seconds": seconds[: len(records)]}


@dataclasses.dataclass
class RaySummary:
    tagged: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0  # tagging, from the first chunk's start (start-up apart)
    warned: int = 0
    unread: int = 0  # tagged posts whose image was not read
    startup: float | None = (
        None  # starting Ray and loading the model on the workers, until the first chunk ran
    )


def run_ray(
    input_path: str,
    output,
    *,
    model=None,
    files: dict | None = None,
    runtime: str = "auto",
    threads: int = 1,
    min_score: float = 0.0,
    attributes: bool = False,
    images_root: Path | None = None,
    batch_size: int = 32,
    workers: int = 2,
    address: str | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> RaySummary:
    """Tag ``input_path`` into ``output`` (``mner.serving.outputs.open_output``) on Ray; a local Ray on this machine's cores
    without ``address``."""
    import ray
    import ray.data

    summary = RaySummary()
    planned = plan_chunks(input_path, chunk_size or max(batch_size * 4, 64))
    chunks, summary.skipped = skip_written(planned, Resume(output.done))
    start = time.perf_counter()
    if not chunks:  # a rerun of a finished job: nothing to start Ray for
        return summary
    absolute = lambda p: None if p is None else str(Path(p).resolve())
    constructor = (
        absolute(model) if model and Path(model).exists() else model,
        {name: absolute(path) for name, path in (files or {}).items()},
        runtime,
        threads,
        absolute(images_root),
        batch_size,
        min_score,
        attributes,
    )
    with _core_lines_aside():
        started_here = not ray.is_initialized()
        if started_here:
            _start_ray(ray, address, workers, threads)
        try:
            _run_chunks(ray, chunks, output, summary, (start, progress, constructor, workers))
        finally:
            if started_here:
                ray.shutdown()
    return summary


def _run_chunks(ray, chunks, output, summary: RaySummary, job: tuple) -> None:
    """Tag the chunks on a pool of actors (``job``: start time, progress, the actors' arguments, how many), writing
    their records in input order; the summary counts them and tells start-up from tagging time."""
    start, progress, constructor, workers = job
    context_ = ray.data.DataContext.get_current()
    context_.execution_options.preserve_order = True  # records come back in input order
    context_.enable_progress_bars = progress and sys.stderr.isatty()
    items = [{"chunk": json.dumps(dataclasses.asdict(c))} for c in chunks]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _ChunkWorker,
        fn_constructor_args=constructor,
        batch_size=1,
        # A fixed pool; Ray Data's actor pools restart an actor that dies and run its task again
        # (max_restarts = max_task_retries = -1 by default; tests/test_ray.py kills one).
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        if summary.startup is None:  # the first chunk is back: what came before it was start-up
            summary.startup = time.perf_counter() - start - sum(batch.column("seconds").to_pylist())
        records = [json.loads(r) for r in batch.column("record").to_pylist()]
        output.write(records)
        for record in records:
            summary.errors += "error" in record
            summary.tagged += "error" not in record
            summary.warned += bool(record.get("warnings"))
            summary.unread += "attributes" in record and record["attributes"] is None
    summary.seconds = time.perf_counter() - start - (summary.startup or 0.0)  # Ray's shutdown apart


@contextlib.contextmanager
def _core_lines_aside():
    """Lines Ray's C++ core writes straight to the process's stderr (an error-level line about actor restarts for
    a job that works) go to a file instead; Python's own stderr (mner's messages, a progress bar) still reaches
    the terminal. The file is kept, and named, only when the job fails."""
    import os
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    log_fd, log_path = tempfile.mkstemp(prefix="mner-ray-", suffix=".log")
    python_stderr = sys.stderr
    sys.stderr = open(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    os.dup2(log_fd, 2)
    failed = True
    try:
        yield
        failed = False
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        for fd in (saved, log_fd):
            os.close(fd)
        sys.stderr.close()
        sys.stderr = python_stderr
        if failed and os.path.getsize(log_path):
            print(f"note: Ray's own log lines of this job are in {log_path}", file=sys.stderr)
        else:
            os.unlink(log_path)


def _start_ray(ray, address: str | None, workers: int, threads: int) -> None:
    """``ray.init``: a local Ray without ``address``, else the cluster there.

    Raises:
        MnerInputError: the cluster cannot be reached (checked in a few seconds, not Ray's minutes of retries), or
        a ``ray://`` address without Ray's client installed.
    """
    if address and address not in ("auto", "local"):
        _check_reachable(address)
    options = {"address": address} if address else {"num_cpus": max(workers, 1)}
    _quiet_ray_logs()
    try:
        ray.init(
            **options,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads), "MNER_CACHE": _cache()}},
        )
    except (ConnectionError, ValueError, RuntimeError, ImportError, SystemExit) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if address and address.startswith("ray://") and "ray[client]" in str(err):
            reason = "a ray:// address needs Ray's client: pip install 'ray[client]'"
        raise MnerInputError(f"--address {address}: cannot start Ray there ({reason})") from None


def _quiet_ray_logs() -> None:
    """Ray Data's INFO lines (its plan, its progress as log lines off a terminal) stay out of the user's terminal:
    they read as noise or errors for a job that worked; Ray's session files keep everything."""
    import logging

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _check_reachable(address: str, seconds: float = 5.0) -> None:
    """Refuse an address where nothing listens within ``seconds`` (Ray itself retries for minutes)."""
    import socket

    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise MnerInputError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as err:
        reason = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err)).lower()
        raise MnerInputError(
            f"--address {address}: no Ray cluster there ({reason} within {seconds:g} s); start one with "
            "'ray start --head', or leave --address out for a local Ray"
        ) from None


def _cache() -> str:
    from mner.paths import cache_folder

    return str(cache_folder().resolve())
