"""``mner tag --engine ray`` on a real local Ray (2 CPUs, started by the tests): the same records as the local
``mner tag`` for Twitter-2015 posts with images made from real photos, Parquet in and out, resuming, and a
worker killed mid-job losing and doubling nothing."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mner[ray]')")

from mner.cli import app
from mner.data import read_conll
from mner.serving.outputs import open_output, table_records
from tests.conftest import TWITTER2015, WHERE_DATA, needs_twitter2015

runner = CliRunner()
PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
HOSTILE = ["{not json", '{"id":"s","text":"Obama \\udc80 Berlin"}', '{"id":"t","tokens":"not a list"}']


@pytest.fixture(scope="module")
def posts(tmp_path_factory):
    """300 Twitter-2015 test posts as JSONL, a third with a real photo, three hostile lines among them."""
    from PIL import Image
    from skimage import data

    if not (TWITTER2015 / "test.txt").is_file():
        pytest.skip(f"Twitter-2015 data not found at {TWITTER2015}: {WHERE_DATA}")
    folder = tmp_path_factory.mktemp("ray-posts")
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(folder / f"{name}.jpg", quality=90)
    lines = []
    for i, post in enumerate(read_conll(TWITTER2015 / "test.txt")[:300]):
        record = {"id": post.id, "text": " ".join(post.tokens)}
        if i % 3 == 0:
            record["image"] = f"{PHOTOS[i % len(PHOTOS)]}.jpg"
        lines.append(json.dumps(record))
    for k, bad in enumerate(HOSTILE):
        lines.insert(40 + 50 * k, bad)
    (folder / "posts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "posts.jsonl"


def records(path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return table_records(pq.read_table(path))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def same_answers(a: list[dict], b: list[dict]) -> None:
    """Equal records; image attributes equal to float noise (images may share a batch with others), null (an image
    not read) in both or neither."""
    assert [r["id"] for r in a] == [r["id"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k != "attributes"} == {
            k: v for k, v in y.items() if k != "attributes"
        }
        assert (x.get("attributes", []) is None) == (y.get("attributes", []) is None)
        xs, ys = x.get("attributes") or [], y.get("attributes") or []
        assert [t["label"] for t in xs] == [t["label"] for t in ys]
        assert all(abs(s["probability"] - t["probability"]) <= 1e-4 for s, t in zip(xs, ys, strict=True))


def tagger_actors() -> list[int]:
    """The process ids of the running tagging actors (Ray names them ``ray::MapWorker(MapBatches(_ChunkWorker))``)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::MapWorker(MapBatches(_ChunkWorker))"):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def tag(*args: str):
    result = runner.invoke(app, ["tag", "--quiet", *args])
    assert result.exit_code == 0, result.output
    return result


@needs_twitter2015
@pytest.mark.slow
def test_ray_gives_the_records_of_the_local_engine(posts, tmp_path):
    tag("--in", str(posts), "--out", str(tmp_path / "local.jsonl"), "--attributes")
    result = tag(
        *("--in", str(posts), "--out", str(tmp_path / "ray.jsonl"), "--engine", "ray", "--attributes"),
        *("--workers", "2", "--batch-size", "16"),
    )
    local, on_ray = records(tmp_path / "local.jsonl"), records(tmp_path / "ray.jsonl")
    assert len(local) == 303 and sum("error" in r for r in on_ray) == 3
    assert sum(len(r.get("attributes") or []) == 5 for r in on_ray) == 100  # the workers read the images
    same_answers(on_ray, local)
    assert "tagged 300, errors 3, skipped 0 (already in the output); " in result.stderr


@needs_twitter2015
@pytest.mark.slow
def test_parquet_in_and_out_hold_the_same_records_as_jsonl(posts, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = [
        json.loads(line) for line in posts.read_text(encoding="utf-8").splitlines() if line not in HOSTILE
    ]
    table = pa.Table.from_pylist([{"id": r["id"], "text": r["text"], "image": r.get("image")} for r in good])
    pq.write_table(table, posts.parent / "posts.parquet")
    tag("--in", str(posts.parent / "posts.parquet"), "--out", str(tmp_path / "local.parquet"))
    tag(
        "--in", str(posts.parent / "posts.parquet"), "--out", str(tmp_path / "ray.parquet"), "--engine", "ray"
    )
    tag("--in", str(posts.parent / "posts.parquet"), "--out", str(tmp_path / "local.jsonl"))
    assert sorted(p.name for p in (tmp_path / "local.parquet").iterdir()) == [
        ".mner-lock",
        "part-00000.parquet",
    ]
    same_answers(records(tmp_path / "local.parquet"), records(tmp_path / "local.jsonl"))
    assert (
        sum(r.get("attributes", []) is None for r in records(tmp_path / "local.parquet")) == 100
    )  # not read
    same_answers(records(tmp_path / "ray.parquet"), records(tmp_path / "local.jsonl"))
    assert pq.read_schema(tmp_path / "local.parquet" / "part-00000.parquet").names == [
        "id",
        "tokens",
        "entities",
        "attributes",
        "knowledge",
        "caption",
        "context",
        "warnings",
        "line",
        "error",
    ]


@needs_twitter2015
@pytest.mark.slow
def test_a_rerun_skips_what_the_output_holds(posts, tmp_path):
    tag("--in", str(posts), "--out", str(tmp_path / "whole.jsonl"), "--engine", "ray")
    whole = (tmp_path / "whole.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(whole[:123]) + whole[123][:40], encoding="utf-8")  # interrupted mid-line
    result = tag("--in", str(posts), "--out", str(cut), "--engine", "ray")
    assert "skipped 123 (already in the output)" in result.stderr
    assert (
        "images not read (the model reads none: --attributes reads them for their classes)" in result.stderr
    )
    same_answers(records(cut), records(tmp_path / "whole.jsonl"))


@needs_twitter2015
@pytest.mark.slow
def test_a_worker_killed_mid_job_loses_and_doubles_nothing(posts, tmp_path):
    from mner.serving.raytag import run_ray

    out = tmp_path / "out.jsonl"
    output = open_output(out, str(posts))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MNER_CACHE": os.environ["MNER_CACHE"]}},
    )
    try:
        job = threading.Thread(
            target=lambda: run_ray(str(posts), output, workers=2, batch_size=8, chunk_size=20, progress=False)
        )
        job.start()
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline:
            alive = tagger_actors()
            if out.exists() and out.stat().st_size > 0 and alive:
                killed = alive[0]
                os.kill(killed, signal.SIGKILL)  # mid-job: records written, others in flight
            time.sleep(0.05)
        job.join(timeout=600)
        assert killed is not None and not job.is_alive()
    finally:
        output.close()
        ray.shutdown()
    ids = [r["id"] for r in records(out)]
    expected = [
        json.loads(line).get("id") if line not in HOSTILE else None
        for line in posts.read_text(encoding="utf-8").splitlines()
    ]
    assert len(ids) == len(expected) == 303 and len(set(ids)) == 303  # each post exactly once, in input order
    assert [i for i, e in zip(ids, expected, strict=True) if e is not None] == [e for e in expected if e]
