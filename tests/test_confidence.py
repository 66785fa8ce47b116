"""Each entity's probability (``Span.score``): the same on PyTorch and ONNX Runtime, and ``--min-score`` leaves out
those below it in predict, tag, serve and the Python Pipeline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.data import MnerInputError
from mner.serving.pipeline import Pipeline
from tests.conftest import TWITTER2015, needs_twitter2015

runner = CliRunner()
TEXT = "Chelsea is sleeping on the sofa in London with Kobe Bryant"


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline("text")


def test_min_score_leaves_out_the_entities_below_it(pipeline):
    every = pipeline.tag(TEXT).entities
    scores = sorted(e.score for e in every)
    assert len(scores) >= 3 and scores[0] < scores[-1]
    middle = scores[len(scores) // 2]
    kept = Pipeline("text", min_score=middle).tag(TEXT).entities
    assert kept == tuple(e for e in every if e.score >= middle) and 0 < len(kept) < len(every)
    with pytest.raises(MnerInputError, match=r"^min_score 1\.5: expected a probability from 0 to 1$"):
        Pipeline("text", min_score=1.5)


def test_predict_and_tag_take_min_score(pipeline, tmp_path):
    every = pipeline.tag(TEXT).entities
    threshold = max(e.score for e in every)  # only the surest entity stays
    result = runner.invoke(
        app, ["predict", "--model", "text", "--text", TEXT, "--json", "--min-score", str(threshold)]
    )
    assert result.exit_code == 0, result.output
    assert [e["text"] for e in json.loads(result.stdout)["entities"]] == [
        e.text for e in every if e.score >= threshold
    ]
    posts = tmp_path / "posts.jsonl"
    posts.write_text(json.dumps({"id": "a", "text": TEXT}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        app, ["tag", "--in", str(posts), "--out", str(out), "--model", "text", "--min-score", str(threshold)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text(encoding="utf-8"))
    assert [e["text"] for e in record["entities"]] == [e.text for e in every if e.score >= threshold]
    refused = runner.invoke(app, ["predict", "--model", "text", "--text", TEXT, "--min-score", "2"])
    assert refused.exit_code == 2 and "--min-score" in refused.output


def test_serve_takes_min_score(pipeline):
    every = pipeline.tag(TEXT).entities
    threshold = max(e.score for e in every)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "mner", "serve", "--model", "text", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--min-score", str(threshold)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "mner serve did not start"
                time.sleep(0.2)
        assert health["min_score"] == threshold
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/tag", json={"text": TEXT}, timeout=30).json()
        assert [e["text"] for e in answer["entities"]] == [e.text for e in every if e.score >= threshold]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
@needs_twitter2015
@pytest.mark.parametrize("model", ["default", "text", "paper-full"])
def test_scores_are_the_same_on_pytorch_and_onnx_runtime(model):
    """The packaged models on Twitter-2015 dev (with the LLM context and captions where a model reads them): the
    same entities on both runtimes, their probabilities within 1e-4."""
    pytest.importorskip("torch", reason="PyTorch is not installed (the 'train' extra)")
    from mner.channels.sources import ChannelSources
    from mner.data import read_conll
    from mner.runtime.runners import load_runner

    onnx, torch = load_runner(model, "onnx"), load_runner(model, "torch")
    files = {"context": TWITTER2015 / "llm_knowledge.tsv", "caption": TWITTER2015 / "image_captions.tsv"}
    sources = ChannelSources.open({c: files[c] for c in onnx.config.channels if c in files})
    posts = sources.fill(read_conll(TWITTER2015 / "valid.txt"), onnx.config.channels).posts
    on_onnx, on_torch = onnx.predict(posts), torch.predict(posts)
    pairs = [(a, b) for x, y in zip(on_onnx, on_torch, strict=True) for a, b in zip(x, y, strict=True)]
    assert [[(s.start, s.end, s.type) for s in x] for x in on_onnx] == [
        [(s.start, s.end, s.type) for s in y] for y in on_torch
    ]
    assert len(pairs) > 1000  # entities of 1,000 posts
    worst = max(abs(a.score - b.score) for a, b in pairs)
    assert worst < 1e-4, worst


def test_parquet_results_carry_each_entity_s_score_and_characters(pipeline, tmp_path):
    import pyarrow.parquet as pq

    posts = tmp_path / "posts.jsonl"
    lines = [
        {"id": "a", "text": "Kobe  Bryant lands in Paris"},
        {"id": "b", "tokens": ["Obama", "in", "Paris"]},
    ]
    posts.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = runner.invoke(
        app, ["tag", "--in", str(posts), "--out", str(tmp_path / "out.parquet"), "--model", "text"]
    )
    assert result.exit_code == 0, result.output
    rows = pq.read_table(tmp_path / "out.parquet" / "part-00000.parquet").to_pylist()
    expected = pipeline.tag(lines[0]["text"]).entities
    assert [(e["text"], e["start_char"], e["end_char"]) for e in rows[0]["entities"]] == [
        ("Kobe  Bryant", 0, 12),
        ("Paris", 22, 27),
    ]
    assert [e["score"] for e in rows[0]["entities"]] == [round(e.score, 4) for e in expected]
    assert {e["start_char"] for e in rows[1]["entities"]} == {None}  # a post given as tokens: no characters
