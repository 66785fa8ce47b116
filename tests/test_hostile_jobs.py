"""What a hostile re-test found in ``mner tag``'s newer surfaces (issue #25): Ray, Parquet, URIs, long lines.
Each numbered case of the issue is kept out by a test here: nothing lost, memory bounded, one clear error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.serving.jobs import (
    BATCH_BYTES,
    InputLine,
    Resume,
    batches,
    plan_chunks,
    read_chunk,
    skip_written,
)

runner = CliRunner()
D1 = [{"id": "a", "text": "Obama in Berlin"}, {"id": "b", "text": "Merkel in Paris"}]
D2 = [
    {"id": "x", "text": "Xi in Beijing"},
    {"id": "y", "text": "Modi in Delhi"},
    {"id": "z", "text": "Lula in Rio"},
]


def write_jsonl(path, objects) -> str:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return str(path)


def ids(path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=["id"]).column("id").to_pylist()
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def tag(*args: str):
    return runner.invoke(app, ["tag", "--quiet", "--model", "text", *args])


# The child's own peak: VmHWM starts again at exec (ru_maxrss of a forked child counts the parent's pages).
MEASURED = """
import atexit, os, sys

def report():
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    with open(os.environ["MNER_TEST_PEAK"], "w") as out:
        out.write(peak.split()[1])

atexit.register(report)
sys.argv = ["mner", *sys.argv[1:]]
from mner.cli import main
main()
"""


def run_measured(*args: str, where) -> tuple[float, subprocess.CompletedProcess]:
    """``mner ARGS`` in a subprocess on one thread: its peak resident memory (MB) and its result."""
    peak = where / "peak.txt"
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MNER_TEST_PEAK": str(peak)},
    )
    return int(peak.read_text()) / 1024, result


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """One run first: the first run in a fresh cache makes files once, with its own peak."""
    where = tmp_path_factory.mktemp("warm")
    posts = write_jsonl(where / "posts.jsonl", [{"id": "s", "text": "Obama in Berlin"}])
    run_measured("tag", "--in", posts, "--out", str(where / "out.jsonl"), "--model", "text", where=where)


# --------------------------------------------------------------- 1. one resume rule, by id, for both engines


def test_the_ray_plan_skips_by_id_like_the_local_engine(tmp_path):
    first = write_jsonl(tmp_path / "d1.jsonl", D1)
    second = write_jsonl(tmp_path / "d2.jsonl", D2 + D1[:1] + [{"id": "a", "text": "again"}])
    done = Counter({"a": 1, "b": 1})  # the output of a job on d1
    chunks, skipped = skip_written(plan_chunks(second, per_chunk=2), Resume(done))
    left = [line.id for chunk in chunks for line in read_chunk(chunk)]
    assert (left, skipped) == (["x", "y", "z", "a"], 1)  # the first 'a' is written; the second is not
    local = Resume(done)
    assert [
        line.id for chunk in plan_chunks(second) for line in read_chunk(chunk) if not local.skip(line.id)
    ] == left
    chunks, skipped = skip_written(plan_chunks(first, per_chunk=1), Resume(done))
    assert (chunks, skipped) == ([], 2)  # every post written: no chunk left to run


@pytest.mark.slow
def test_ray_resumes_by_id_not_by_count(tmp_path):
    """Issue #25 case 1: a job on d2 into the output of a job on d1 skipped d2's first two posts."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mner[ray]')")
    import ray

    d1, d2 = write_jsonl(tmp_path / "d1.jsonl", D1), write_jsonl(tmp_path / "d2.jsonl", D2)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        for posts in (d1, d2):
            result = tag(
                "--in", posts, "--out", str(tmp_path / "all.jsonl"), "--engine", "ray", "--workers", "1"
            )
            assert result.exit_code == 0, result.output
    finally:
        ray.shutdown()
    assert "tagged 3, errors 0, skipped 0 (already in the output)" in result.stderr
    assert ids(tmp_path / "all.jsonl") == ["a", "b", "x", "y", "z"]


# ------------------------------------------------------------- 6. a Parquet folder mner did not write


def test_a_parquet_folder_of_someone_elses_parts_is_refused_untouched(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mner.serving.outputs import parquet_schema

    posts = write_jsonl(tmp_path / "posts.jsonl", D1)
    theirs = tmp_path / "theirs.parquet"
    theirs.mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "score": [1, 2]}), theirs / "part-00000.parquet")
    copied = tmp_path / "copied.parquet"  # mner's columns, without mner's marker
    copied.mkdir()
    pq.write_table(
        pa.Table.from_pylist([], schema=parquet_schema().remove_metadata()), copied / "part-00000.parquet"
    )
    for folder in (theirs, copied):
        before = sorted(p.name for p in folder.iterdir())
        result = tag("--in", posts, "--out", str(folder))
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(
            f"error: {folder / 'part-00000.parquet'}: not a part of an mner tag output"
        )
        assert "mner never changes a folder it did not write" in result.stderr
        assert sorted(p.name for p in folder.iterdir()) == before  # no lock file, no part written
    mine = tmp_path / "mine.parquet"
    assert tag("--in", posts, "--out", str(mine)).exit_code == 0
    again = tag("--in", posts, "--out", str(mine))  # mner's own output is recognised: resumed
    assert (
        again.exit_code == 0 and "nothing to do: all 2 posts of the input are in the output" in again.stderr
    )


def test_a_damaged_part_of_mner_s_own_parquet_output_is_called_damaged_with_the_way_out(tmp_path):
    """Issue #32 N20: a part of mner's own output cut in half was refused as 'not mner's' (give another --out)."""
    import pyarrow.parquet as pq

    out = tmp_path / "out.parquet"
    first, second = write_jsonl(tmp_path / "d1.jsonl", D1), write_jsonl(tmp_path / "d2.jsonl", D2)
    both = write_jsonl(tmp_path / "all.jsonl", D1 + D2)
    assert tag("--in", first, "--out", str(out)).exit_code == 0
    assert tag("--in", second, "--out", str(out)).exit_code == 0
    part = out / "part-00001.parquet"
    whole = part.read_bytes()
    part.write_bytes(whole[: len(whole) // 2])
    result = tag("--in", both, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {part}: a damaged part of this mner output (it cannot be read: ")
    assert result.stderr.endswith(
        "): move it out of the folder and run again, which tags its posts again, or give another --out\n"
    )
    assert "never changes a folder it did not write" not in result.stderr
    part.rename(tmp_path / "damaged.parquet")  # the way out the error gives
    column = pq.ParquetFile(out / "part-00000.parquet").metadata.row_group(0).column(0)  # its ids
    data = bytearray((out / "part-00000.parquet").read_bytes())
    # its schema reads, its rows do not
    data[column.data_page_offset : column.data_page_offset + 8] = b"\xff" * 8
    (out / "part-00000.parquet").write_bytes(bytes(data))
    result = tag("--in", both, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert f"{out / 'part-00000.parquet'}: a damaged part of this mner output" in result.stderr
    (out / "part-00000.parquet").unlink()
    result = tag("--in", both, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(pq.read_table(out, columns=["id"]).column("id").to_pylist()) == ["a", "b", "x", "y", "z"]
    theirs = tmp_path / "theirs.parquet"  # no lock file, no part of mner's: nothing says mner wrote it
    theirs.mkdir()
    (theirs / "part-00000.parquet").write_bytes(whole[: len(whole) // 2])
    result = tag("--in", both, "--out", str(theirs))
    assert result.exit_code == 2 and "not a readable part of an mner output" in result.stderr
    assert "mner never changes a folder it did not write" in result.stderr


# ------------------------------------------------------------------------ 7. a Parquet input is streamed


def test_a_parquet_input_is_read_a_row_group_at_a_time(tmp_path):
    """Issue #25 case 7: every chunk read the whole file, every column (407-690 MB against 96 MB for JSONL)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 4000
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(rows)],
            "text": [f"Obama in Berlin {i}" for i in range(rows)],
            "payload": [os.urandom(20_000).hex() for _ in range(rows)],  # 160 MB no post reads
        }
    )
    pq.write_table(table, tmp_path / "posts.parquet", row_group_size=500, compression="none")
    chunks = list(plan_chunks(tmp_path / "posts.parquet", per_chunk=250))
    assert [(c.start, c.end) for c in chunks[:3]] == [(0, 250), (250, 500), (500, 750)]  # inside row groups
    code = (
        "import sys\n"
        "import pyarrow.parquet\n"
        "from mner.serving.jobs import read_lines\n"
        "def status(key):\n"
        "    return int(next(s for s in open('/proc/self/status') if s.startswith(key)).split()[1])\n"
        "start = status('VmRSS:')\n"
        "lines = [(line.number, line.id) for line in read_lines(sys.argv[1])]\n"
        "assert lines == [(i + 1, f'p{i}') for i in range(4000)], lines[:3]\n"
        "print((status('VmHWM:') - start) / 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "posts.parquet")],
        capture_output=True,
        text=True,
        check=True,
    )
    grew = float(result.stdout)
    assert grew < 40, f"reading the Parquet input grew the process by {grew:.0f} MB (the file holds 160 MB)"


# ----------------------------------------------------------- 8 and 9. memory bounded by bytes, not lines


def test_a_batch_is_bounded_by_bytes_as_well_as_by_lines():
    lines = [
        InputLine(n, f"p{n}", size=size)
        for n, size in enumerate([10, 3 * BATCH_BYTES, 10, 10, BATCH_BYTES // 2])
    ]
    got = [[line.number for line in batch] for batch in batches(lines, 32)]
    assert got == [[0, 1], [2, 3, 4]]  # a batch ends once it holds BATCH_BYTES
    assert [[line.number for line in batch] for batch in batches(lines, 2)] == [[0, 1], [2, 3], [4]]


def test_long_lines_do_not_multiply_memory_by_the_batch_size(tmp_path, warm):
    """Issue #25 case 8: 4 lines of 15.8 MB took 3.73 GB: a batch of 32 long lines was held at once."""
    small = write_jsonl(tmp_path / "small.jsonl", [{"id": "s", "text": "Obama in Berlin"}])
    big = write_jsonl(
        tmp_path / "big.jsonl",
        [{"id": f"b{i}", "text": "Obama in Berlin", "caption": "y " * 1_500_000} for i in range(32)],
    )
    base, done = run_measured(
        "tag", "--in", small, "--out", str(tmp_path / "s.jsonl"), "--model", "text", where=tmp_path
    )
    assert done.returncode == 0, done.stderr
    peak, done = run_measured(
        "tag", "--in", big, "--out", str(tmp_path / "b.jsonl"), "--model", "text", where=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert len(ids(tmp_path / "b.jsonl")) == 32
    assert peak - base < 120, f"32 lines of 3 MB: {peak:.0f} MB against {base:.0f} MB for one short line"


def test_images_of_an_input_given_by_uri_are_fetched_a_batch_at_a_time(tmp_path, warm):
    """Issue #25 case 9: with a file:// input, every image of a chunk was held at once (3.6 GB against 565 MB)."""
    (tmp_path / "big.jpg").write_bytes(os.urandom(8 * 1024 * 1024))  # not an image: refused, after being read
    posts = write_jsonl(
        tmp_path / "posts.jsonl", [{"id": f"p{i}", "text": "Obama", "image": "big.jpg"} for i in range(60)]
    )
    # the text model reads no image: --attributes has them read (and fetched, for an input given by URI)
    by_path, done = run_measured(
        "tag",
        "--in",
        posts,
        "--out",
        str(tmp_path / "a.jsonl"),
        "--model",
        "text",
        "--attributes",
        where=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    by_uri, done = run_measured(
        *("tag", "--in", f"file://{posts}", "--out", str(tmp_path / "b.jsonl")),
        *("--model", "text", "--attributes"),
        where=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    errors = [json.loads(line)["error"] for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert (
        len(errors) == 60
        and errors[0] == f"file://{posts}:1: file://{tmp_path}/big.jpg: not an image (unrecognised format)"
    )
    assert by_uri - by_path < 120, (
        f"60 posts with an 8 MB image by URI: {by_uri:.0f} MB, by path {by_path:.0f} MB"
    )
    absent = write_jsonl(tmp_path / "absent.jsonl", [{"id": "a", "text": "Obama", "image": "absent.jpg"}])
    assert tag("--in", f"file://{absent}", "--out", str(tmp_path / "c.jsonl")).exit_code == 0
    (record,) = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert record["attributes"] is None and "error" not in record  # not fetched, so not missed


# -------------------------------------------------------------------------- 18. Ray at a bad --address


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_ray_address_with_nothing_there_is_one_clear_error_at_once(tmp_path, scheme):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mner[ray]')")
    posts = write_jsonl(tmp_path / "posts.jsonl", D1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once it is closed
    start = time.monotonic()
    result = tag(
        "--in",
        posts,
        "--out",
        str(tmp_path / "out.jsonl"),
        "--engine",
        "ray",
        "--address",
        f"{scheme}127.0.0.1:{port}",
    )
    assert time.monotonic() - start < 30
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == (
        f"error: --address {scheme}127.0.0.1:{port}: no Ray cluster there (connection refused within 5 s); start one "
        "with 'ray start --head', or leave --address out for a local Ray\n"
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_a_ray_client_address_without_ray_client_says_what_to_install(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mner[ray]')")
    try:
        import grpc  # noqa: F401
        import ray.util.client  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("ray[client] is installed here")
    posts = write_jsonl(tmp_path / "posts.jsonl", D1)
    with socket.socket() as listening:  # something listens: the address is reachable
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"ray://127.0.0.1:{listening.getsockname()[1]}"
        result = tag(
            "--in", posts, "--out", str(tmp_path / "out.jsonl"), "--engine", "ray", "--address", address
        )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == (
        f"error: --address {address}: cannot start Ray there (a ray:// address needs Ray's client: pip install "
        "'ray[client]')\n"
    )


# ----------------------------------------------------- 19. a damaged Parquet page, an input that is a pipe


def test_an_input_that_is_a_pipe_is_refused_before_the_output_is_made(tmp_path):
    out = tmp_path / "out.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "mner", "tag", "--in", "/dev/stdin", "--out", str(out), "--model", "text"],
        input=json.dumps(D1[0]) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: /dev/stdin: not a regular file (a pipe or a terminal): mner reads its input twice (to plan, then "
        "to tag); write the posts to a file and give that\n"
    )
    assert not out.exists()


def test_a_damaged_parquet_page_makes_its_rows_errors_naming_the_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "posts.parquet"
    table = pa.table(
        {"id": [f"p{i}" for i in range(30)], "text": [f"Obama in Berlin {i}" for i in range(30)]}
    )
    pq.write_table(table, path, row_group_size=10, compression="none")
    column = pq.ParquetFile(path).metadata.row_group(1).column(1)  # the text of rows 11-20
    data = bytearray(path.read_bytes())
    data[column.data_page_offset : column.data_page_offset + 8] = b"\xff" * 8  # its page header
    path.write_bytes(bytes(data))
    out = tmp_path / "out.jsonl"
    result = tag("--in", str(path), "--out", str(out))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 30 and "tagged 20, errors 10" in result.stderr
    assert [r["id"] for r in records[:10] + records[20:]] == [f"p{i}" for i in [*range(10), *range(20, 30)]]
    for number, record in enumerate(records[10:20], start=11):
        assert record["line"] == number
        assert record["error"].startswith(f"{path}:{number}: row group 1 cannot be read (")
    assert not [r for r in records[:10] + records[20:] if "error" in r]
