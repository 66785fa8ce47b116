"""``mner tag --engine ray``: the same tagging job as ``mner tag``, run as a Ray Data job.

The driver cuts the input into chunks (``mner.serving.jobs.plan_chunks``: byte ranges of a JSONL file, row ranges
of a Parquet file) and writes the output; a pool of actors, each holding one Pipeline (model, image encoder,
KG loaded once per actor), reads its chunks where the input is (images too, relative to it), tags them in
batches and returns the records as JSON. Ray Data keeps the chunks in input order, so the driver appends
records exactly as ``mner tag`` does, to the same kinds of output (a JSONL file or a Parquet folder).

Resuming: the output holds the records of the first posts of the input, in order; a rerun skips as many
posts as it holds. A worker that dies mid-job (a lost node, a kill -9) has its task retried by Ray on a
restarted actor; its records were never written, so none is lost or doubled.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from mner.serving.jobs import Chunk, plan_chunks, read_chunk, tag_lines


class _ChunkWorker:
    """A Ray actor: one Pipeline, loaded when the actor starts, tagging chunks."""

    def __init__(self, model, files, runtime, threads, images_root, batch_size, min_score=0.0):
        from mner.serving.pipeline import Pipeline

        self.pipeline = Pipeline(model, files, runtime, threads, min_score)
        self.images_root, self.batch_size = images_root, batch_size

    def __call__(self, batch: dict) -> dict:
        records = []
        for chunk in batch["chunk"]:
            chunk = Chunk(**json.loads(chunk))
            lines = read_chunk(chunk, None if self.images_root is None else Path(self.images_root))
            for start in range(0, len(lines), self.batch_size):
                part = lines[start : start + self.batch_size]
                records += [json.dumps(r) for r in tag_lines(self.pipeline, part, chunk.path)]
        return {"record": records}


@dataclasses.dataclass
class RaySummary:
    tagged: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    warned: int = 0


def run_ray(
    input_path: str,
    output,
    *,
    model=None,
    files: dict | None = None,
    runtime: str = "auto",
    threads: int = 1,
    min_score: float = 0.0,
    images_root: Path | None = None,
    batch_size: int = 32,
    workers: int = 2,
    address: str | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> RaySummary:
    """Tag ``input_path`` into ``output`` (``mner.serving.jobs.open_output``) on Ray; a local Ray on this machine's cores
    without ``address``."""
    import ray
    import ray.data

    summary = RaySummary()
    done = sum(output.done.values())  # the first posts of the input are in the output already
    chunks = _after(plan_chunks(input_path, chunk_size or max(batch_size * 4, 64)), done)
    summary.skipped = done
    start = time.perf_counter()
    if not chunks:  # a rerun of a finished job: nothing to start Ray for
        return summary
    started_here = not ray.is_initialized()
    if started_here:
        options = {"address": address} if address else {"num_cpus": max(workers, 1)}
        ray.init(
            **options,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads), "MNER_CACHE": _cache()}},
        )
    try:
        context_ = ray.data.DataContext.get_current()
        context_.execution_options.preserve_order = True  # records come back in input order
        context_.enable_progress_bars = progress
        items = [{"chunk": json.dumps(dataclasses.asdict(c))} for c in chunks]
        if items:
            absolute = lambda p: None if p is None else str(Path(p).resolve())
            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _ChunkWorker,
                fn_constructor_args=(
                    absolute(model) if model and Path(model).exists() else model,
                    {name: absolute(path) for name, path in (files or {}).items()},
                    runtime,
                    threads,
                    absolute(images_root),
                    batch_size,
                    min_score,
                ),
                batch_size=1,
                # A fixed pool; Ray Data's actor pools restart an actor that dies and run its task again
                # (max_restarts = max_task_retries = -1 by default; tests/test_ray.py kills one).
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1,
            )
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                records = [json.loads(r) for r in batch.column("record").to_pylist()]
                output.write(records)
                for record in records:
                    summary.errors += "error" in record
                    summary.tagged += "error" not in record
                    summary.warned += bool(record.get("warnings"))
    finally:
        if started_here:
            ray.shutdown()
    summary.seconds = time.perf_counter() - start
    return summary


def _after(chunks, done: int) -> list[Chunk]:
    """The chunks left when the first ``done`` posts are in the output (a chunk counted by reading it)."""
    left = []
    for chunk in chunks:
        if done > 0:
            count = len(read_chunk(chunk, images=False))
            if count <= done:
                done -= count
                continue
            chunk = dataclasses.replace(chunk, skip=done)
            done = 0
        left.append(chunk)
    return left


def _cache() -> str:
    from mner.paths import cache_folder

    return str(cache_folder().resolve())
