"""What a new user meets in the first hour: ``--version``, a renamed flag's old spelling, warnings said once with
what to do, a training log without progress-bar refreshes, a quiet Ray job whose posts/s counts the tagging."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.version import __version__
from tests.conftest import ROOT

runner = CliRunner()

GOLD = (
    "IMGID:1\nBears\tB-ORG\nwin\tO\nin\tO\nChicago\tB-LOC\n\nIMGID:2\nKobe\tB-PER\nBryant\tI-PER\nscores\tO\n"
)
CONTEXT = (
    "image_id\tknowledge\n"
    "1\tNamed entities:1. Bears (sports team)2. Chicago (city)\n"
    "2\tNamed entities:1. Kobe Bryant (basketball player)\n"
)


def mner(*args: str, cwd=None, **run) -> subprocess.CompletedProcess:
    """``python -m mner ARGS`` with this checkout's source first on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mner", *args], cwd=cwd, env=env, text=True, check=False, **run
    )


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"mner {__version__}\n"


def test_evaluate_takes_the_last_releases_context_flag_with_a_notice(tmp_path):
    (tmp_path / "gold.txt").write_text(GOLD)
    (tmp_path / "context.tsv").write_text(CONTEXT)
    now = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(tmp_path / "gold.txt"),
            "--json",
            "--context-file",
            str(tmp_path / "context.tsv"),
        ],
    )
    old = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(tmp_path / "gold.txt"),
            "--json",
            "--context",
            str(tmp_path / "context.tsv"),
        ],
    )
    assert now.exit_code == 0 and old.exit_code == 0, old.output
    assert json.loads(old.stdout) == json.loads(now.stdout)
    notice = "note: --context FILE is now --context-file FILE; the old spelling goes in the next release"
    assert old.stderr.count(notice) == 1 and notice not in now.stderr
    both = runner.invoke(
        app,
        ["evaluate", "--data", str(tmp_path / "gold.txt"), "--context", "a.tsv", "--context-file", "b.tsv"],
    )
    assert both.exit_code == 2 and "give --context-file only (not also --context)" in both.output


def test_predict_keeps_context_as_the_posts_text():
    """``predict --context`` is the post's context text, not the renamed file flag: no notice there."""
    result = runner.invoke(
        app,
        ["predict", "--text", "Bears win in Chicago", "--context", "Named entities:1. Bears (sports team)"],
    )
    assert result.exit_code == 0 and "note:" not in result.stderr and "warning:" not in result.stderr


def test_predict_with_the_default_and_no_context_says_the_hint_once_with_what_to_do():
    done = mner(
        "predict",
        "--text",
        "RT @nytimes: Barack Obama meets Angela Merkel in Berlin #G7",
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    hints = [line for line in done.stderr.splitlines() if "'context'" in line]
    assert len(hints) == 1, done.stderr
    assert "give it with --context" in hints[0]


TRAIN = "IMGID:1\nKobe\tB-PER\nBryant\tI-PER\nscores\tO\n\nIMGID:2\nflying\tO\nto\tO\nParis\tB-LOC\n"
TINY = "[model]\nhidden = 8\nchar_dim = 4\nchar_filters = 4\n[train]\nepochs = 3\nbatch_size = 1\nmin_word_count = 1\n"


def test_train_into_a_log_writes_a_line_an_epoch_and_no_progress_bar(tmp_path):
    (tmp_path / "train.txt").write_text(TRAIN)
    (tmp_path / "tiny.toml").write_text(
        TINY
    )  # progress is on by default: only the terminal test turns it off
    args = [
        "train",
        "--train",
        "train.txt",
        "--dev",
        "train.txt",
        "--config",
        "tiny.toml",
        "--out",
        "m",
        "--no-onnx",
    ]
    with open(tmp_path / "log", "w") as log:
        done = mner(*args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    text = (tmp_path / "log").read_text()
    assert done.returncode == 0, text
    assert "\r" not in text and "batch/s" not in text and "it/s" not in text, text
    assert [line.split()[:2] for line in text.splitlines() if line.startswith("epoch")] == [
        ["epoch", "1"],
        ["epoch", "2"],
        ["epoch", "3"],
    ]


def test_the_first_image_command_says_it_is_making_the_encoders_onnx_file(tmp_path, monkeypatch, capsys):
    """The one-time ONNX export of the image encoder takes seconds: it is announced, not silent."""
    from mner.runtime import export, images
    from mner.vision import EncoderConfig

    monkeypatch.setenv("MNER_CACHE", str(tmp_path))
    made = []

    def export_image_encoder(config):
        made.append(config)
        raise ImportError(
            "no torch here"
        )  # what a torch-free install meets: the encoder then runs on PyTorch

    monkeypatch.setattr(export, "export_image_encoder", export_image_encoder)
    monkeypatch.setattr("mner.vision.load_encoder", lambda config: "the torch encoder")
    assert images.load_image_encoder(EncoderConfig.for_backbone("lite0")) == "the torch encoder"
    assert made
    err = capsys.readouterr().err
    assert err.count("note: making the image encoder's ONNX file once") == 1
    assert str(tmp_path) in err


@pytest.mark.slow
def test_a_ray_job_is_quiet_and_says_its_start_up_apart(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mner[ray]')")
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        "".join(json.dumps({"id": f"p{i}", "text": "Bears win in Chicago"}) + "\n" for i in range(6))
    )
    done = mner(
        "tag",
        "--in",
        "posts.jsonl",
        "--out",
        "out.jsonl",
        "--engine",
        "ray",
        "--workers",
        "1",
        "--model",
        "text",
        cwd=tmp_path,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 6
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # no Ray INFO lines, no core-worker error line for a job that worked
    assert lines[0].startswith("tagged 6, errors 0") and " posts/s tagging, after " in lines[0]
    assert lines[0].endswith(" s of start-up")


READ_AS_TYPED = {
    "entities": [
        {"name": "Bears", "kind": "sports team", "type": "ORG", "in_post": True},
        {"name": "Chicago", "kind": "city", "type": "LOC", "in_post": True},
        {"name": "Soldier Field", "kind": "stadium", "type": "LOC", "in_post": False},
    ],
    "route": "typed",
}
LIST = "Named entities:1. Bears (sports team)2. Chicago (city)3. Soldier Field (stadium)"


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (LIST, READ_AS_TYPED),
        (
            '[{"name": "Bears", "type": "entity"}]',
            {
                "entities": [{"name": "Bears", "kind": "entity", "type": None, "in_post": True}],
                "route": "untyped",
            },
        ),
        ("The Bears played very well today.", {"entities": [], "route": "none"}),
        (
            "Named entities:1. Lakers (sports team)",
            {
                "entities": [{"name": "Lakers", "kind": "sports team", "type": "ORG", "in_post": False}],
                "route": "none",
            },
        ),
    ],
)
def test_predict_json_says_how_the_context_was_read(context, expected):
    result = runner.invoke(app, ["predict", "--text", "Bears win in Chicago", "--context", context, "--json"])
    assert result.exit_code == 0, result.output
    read_as = json.loads(result.stdout)["read_as"]
    assert {k: read_as[k] for k in expected} == expected
    assert read_as["path"].startswith(
        {"typed": "the context model", "untyped": "the untyped path"}.get(read_as["route"], "the text path")
    )


def test_read_as_is_left_out_without_a_context_or_for_a_model_that_reads_none():
    for args in (["--context", LIST, "--model", "text"], []):
        result = runner.invoke(app, ["predict", "--text", "Bears win in Chicago", "--json", *args])
        assert result.exit_code == 0, result.output
        assert "read_as" not in json.loads(result.stdout)


def test_predict_prints_the_reading_of_the_context():
    result = runner.invoke(app, ["predict", "--text", "Bears win in Chicago", "--context", LIST])
    assert result.exit_code == 0, result.output
    assert (
        "context read as: Bears (sports team → ORG), Chicago (city → LOC), Soldier Field (stadium → LOC, not in the "
        "post); route: typed (the context model: the list names words of the post with kinds that give their types)"
    ) in result.stdout


def test_the_service_answers_how_the_context_was_read():
    from fastapi.testclient import TestClient

    from mner.serving.pipeline import Pipeline
    from mner.serving.service import create_app

    with TestClient(create_app(Pipeline())) as client:
        body = client.post("/v1/tag", json={"text": "Bears win in Chicago", "context": LIST}).json()
        plain = client.post("/v1/tag", json={"text": "Bears win in Chicago"}).json()
    assert {k: body["read_as"][k] for k in READ_AS_TYPED} == READ_AS_TYPED
    assert "read_as" not in plain


def test_data_check_says_what_is_missing_what_needs_it_and_where_to_look(tmp_path):
    (tmp_path / "data" / "twitter2015").mkdir(parents=True)
    (tmp_path / "data" / "twitter2015" / "test.txt").write_text(GOLD)
    (tmp_path / "data" / "twitter2015" / "llm_knowledge.tsv").write_text("id\tknowledge\n")
    (tmp_path / "kg" / "codex").mkdir(parents=True)
    (tmp_path / "kg" / "codex" / "types.json").write_text("{}")
    result = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert f"ok       {tmp_path}/data/twitter2015/test.txt  Twitter-2015 test posts (CoNLL)" in lines
    assert f"ok       {tmp_path}/kg/codex  CoDEx entity classes (entity2types.json, types.json)" in lines
    at = lines.index(f"missing  {tmp_path}/data/twitter2015/train.txt  Twitter-2015 training posts (CoNLL)")
    assert lines[at + 1] == "         needed for: mner train on it"
    at = lines.index(
        f"bad      {tmp_path}/data/twitter2015/llm_knowledge.tsv  Twitter-2015 LLM knowledge (train and test)"
    )
    assert lines[at + 1] == "         expected a first line 'image_id<TAB>...'"
    assert result.stderr.startswith(
        "12 of 14 not in place: tagging with the shipped models works without any of them;"
    )
    assert 'README.md, "Data"' in result.stderr


def test_data_check_passes_on_a_complete_layout(tmp_path):
    from mner.cli.data import LAYOUT

    for piece in LAYOUT:
        path = tmp_path / piece.path
        if piece.path.startswith("kg/"):
            path.mkdir(parents=True)
            (path / "x").write_text("x")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{piece.header or 'IMGID:1'}\tx\n")
    result = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "everything is in place: the README's commands run as written"


def test_benchmarks_write_under_runs_unless_told_to_update(tmp_path, monkeypatch):
    """No benchmark rewrites a tracked table by default: ``--update`` says so, ``--report`` names a file."""
    import argparse
    import re

    tracked_default = re.compile(r"default=[^\n]*(?:with_name\(|\"benchmarks)[^\n]*\.md")
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(scripts) > 15
    for script in scripts:
        assert not tracked_default.search(script.read_text(encoding="utf-8")), script.name
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import runs

    monkeypatch.setattr(runs, "ROOT", tmp_path)
    parser = argparse.ArgumentParser()
    runs.report_option(parser, "tokenizer.md")
    assert runs.report_path(parser.parse_args([]), "tokenizer.md") == tmp_path / "runs" / "tokenizer.md"
    assert (tmp_path / "runs").is_dir()
    update = parser.parse_args(["--update"])
    assert runs.report_path(update, "tokenizer.md") == tmp_path / "benchmarks" / "tokenizer.md"
    given = parser.parse_args(["--report", "x.md"])
    assert runs.report_path(given, "tokenizer.md").name == "x.md"
