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
