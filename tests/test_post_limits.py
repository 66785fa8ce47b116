"""A post's text has a bound, as its context has (issue #32, D8): one 15.8 MB text took 1.87 GB and over 400 s in
``mner tag``. A longer text is that post's error, named, on every way in: JSONL/Parquet, the Pipeline, the service."""

from __future__ import annotations

import json

import pytest

from mner.channels.posts import MAX_TEXT_CHARS, post_from_json
from tests.test_hostile_jobs import ids, run_measured, write_jsonl

OVER = "'text' is {:,} characters, over the 100,000-character limit of a post's text: split it into posts of at most that length"


def text_of(length: int) -> str:
    """Words of a post, ``length`` characters long."""
    return ("Obama in Berlin . " * (length // 18 + 1))[:length]


def test_the_limit_is_the_documented_one():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert MAX_TEXT_CHARS == 100_000 and "100,000 characters" in readme


@pytest.mark.parametrize(
    "obj, error",
    [
        ({"text": text_of(100_000)}, None),
        ({"text": text_of(100_001)}, OVER.format(100_001)),
        ({"tokens": ["Obama"] * 16_666}, None),  # 16,666 × 5 + 16,665 spaces = 99,995
        (
            {"tokens": ["Obama"] * 16_667},
            (
                "'tokens' joined by spaces are 100,001 characters, over the 100,000-character limit of a "
                "post's text: split it into posts of at most that length"
            ),
        ),
    ],
    ids=["text at the limit", "text over", "tokens under", "tokens over"],
)
def test_a_text_over_the_limit_is_refused_when_the_post_is_read(obj, error):
    if error is None:
        assert post_from_json(obj).tokens
    else:
        with pytest.raises(ValueError) as raised:
            post_from_json(obj)
        assert str(raised.value) == error


def test_a_15_mb_text_line_is_its_posts_error_in_bounded_memory_and_time(tmp_path):
    """D8's reproduction: one line of 15.8 MB of text between two posts. It was tagged for over 400 s in 1.87 GB;
    now it is that line's error, its neighbours are tagged, and memory stays where a short line's run is."""
    small = write_jsonl(tmp_path / "small.jsonl", [{"id": "s", "text": "Obama in Berlin"}])
    base, done = run_measured(
        "tag", "--in", small, "--out", str(tmp_path / "s.jsonl"), "--model", "text", where=tmp_path
    )
    assert done.returncode == 0, done.stderr
    posts = write_jsonl(
        tmp_path / "long.jsonl",
        [
            {"id": "a", "text": "Obama in Berlin"},
            {"id": "long", "text": "Obama in Berlin . " * 880_000},
            {"id": "c", "text": "Obama in Berlin"},
        ],
    )
    out = tmp_path / "out.jsonl"
    peak, done = run_measured("tag", "--in", posts, "--out", str(out), "--model", "text", where=tmp_path)
    assert done.returncode == 0, done.stderr  # subprocess.run's timeout (120 s) bounds the old behaviour
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert ids(out) == ["a", "long", "c"]
    assert records[1] == {"id": "long", "line": 2, "error": f"{posts}:2: " + OVER.format(15_840_000)}
    assert [e["text"] for e in records[0]["entities"]] == ["Obama", "Berlin"]
    assert [e["text"] for e in records[2]["entities"]] == ["Obama", "Berlin"]
    assert peak - base < 150, f"one 15.8 MB text: {peak:.0f} MB against {base:.0f} MB for one short line"


def test_the_pipeline_and_the_service_refuse_a_text_over_the_limit_too():
    """The library and a service whose --max-text-chars is raised above the bound answer the same reason."""
    from fastapi.testclient import TestClient

    from mner.data import MnerInputError
    from mner.serving.pipeline import Pipeline, PostInput
    from mner.serving.service import Limits, create_app

    pipeline = Pipeline()
    long = text_of(150_000)
    results = pipeline.tag_many([PostInput("Obama in Berlin"), PostInput(long), PostInput("Obama in Berlin")])
    assert isinstance(results[1], MnerInputError) and str(results[1]) == OVER.format(150_000)
    assert [e.text for e in results[0].entities] == ["Obama", "Berlin"]
    assert [e.text for e in results[2].entities] == ["Obama", "Berlin"]
    with TestClient(create_app(pipeline, Limits(max_chars={"text": 200_000}))) as client:
        answer = client.post("/v1/tag", json={"text": long})
    assert answer.status_code == 422 and answer.json() == {"error": OVER.format(150_000)}
