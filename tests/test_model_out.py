"""Where a model is written (``mner train --out``, ``mner combine --out``, ``TorchModel.save``): a folder holding
a file of a name a model writes that mner did not write is refused, untouched, before any training (issue #32 N12:
``--out .`` replaced a project's README.md with the model card)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.data import MnerInputError, Post
from mner.model.combine import combine
from mner.model.folder import check_model_out
from mner.training.runconfig import RunConfig, TrainConfig
from mner.training.trainer import train

runner = CliRunner()
POSTS = [
    Post(("Kobe", "Bryant", "lands", "in", "Paris"), id="1", tags=("B-PER", "I-PER", "O", "O", "B-LOC")),
    Post(("Bears", "win", "again"), id="2", tags=("B-ORG", "O", "O")),
]
README = "# My project\n\nNothing to do with mner.\n"


def trained(folder, seed: int = 1):
    run = RunConfig(
        {"char_dim": 8, "char_filters": 8, "hidden": 8},
        TrainConfig(epochs=1, batch_size=2, min_word_count=1, progress=False, seed=seed),
    )
    return train(POSTS, POSTS, run)[0].save(folder)


def contents(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_train_refuses_a_folder_holding_a_readme_or_config_of_someone_else_before_training(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("Kobe\tB-PER\nlands\tO\n", encoding="utf-8")
    ud = tmp_path / "ud"
    ud.mkdir()
    (ud / "README.md").write_text(README, encoding="utf-8")
    before = contents(ud)
    args = ["train", "--train", str(data), "--dev", str(data), "--epochs", "1", "--no-onnx", "--out", str(ud)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: {ud / 'README.md'}: exists in a folder that holds no mner model (no config.json): "
        "mner never overwrites a file it did not write; give another --out\n"
    )
    (ud / "config.json").write_text('{"mine": true}', encoding="utf-8")
    before = contents(ud)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {ud / 'config.json'}: exists and is not an mner model's config")
    assert contents(ud) == before  # nothing replaced, nothing added
    assert "epoch" not in result.stderr  # refused before any training


def test_combine_refuses_out_dot_in_a_project_and_leaves_its_readme(tmp_path, monkeypatch):
    member = trained(tmp_path / "m1")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "README.md").write_text(README, encoding="utf-8")
    monkeypatch.chdir(project)
    result = runner.invoke(app, ["combine", "--member", str(member), "--out", "."])
    assert result.exit_code == 2, result.output
    assert "README.md: exists in a folder that holds no mner model (no config.json)" in result.stderr
    assert contents(project) == {"README.md": README.encode()}


def test_a_model_folder_is_written_again_and_the_files_beside_it_are_kept(tmp_path):
    folder = trained(tmp_path / "m")
    (folder / "train.log").write_text(
        "epoch 1 ...\n", encoding="utf-8"
    )  # what benchmarks/runs.py leaves there
    trained(folder, seed=2)  # mner's own model folder: replaced
    assert (folder / "train.log").read_text() == "epoch 1 ...\n"
    assert json.loads((folder / "config.json").read_text())["training"]["train"]["seed"] == 2
    check_model_out(tmp_path / "absent")  # an absent folder is made on save
    beside = tmp_path / "notes"
    beside.mkdir()
    (beside / "notes.txt").write_text("mine", encoding="utf-8")
    trained(beside)  # no name a model writes: nothing of the user's is replaced
    assert (beside / "notes.txt").read_text() == "mine" and (beside / "config.json").is_file()


@pytest.mark.parametrize(
    "make,name,reason",
    [
        (
            lambda f: (f / "model.safetensors").write_bytes(b"weights"),
            "model.safetensors",
            "holds no mner model",
        ),
        (lambda f: (f / "README.md").symlink_to(f.parent / "theirs.md"), "README.md", "is not a file of"),
        (lambda f: (f / "config.json").mkdir(), "config.json", "is not a file of"),
    ],
)
def test_other_files_of_a_model_s_names_are_refused(tmp_path, make, name, reason):
    (tmp_path / "theirs.md").write_text(README, encoding="utf-8")
    folder = tmp_path / "out"
    folder.mkdir()
    make(folder)
    with pytest.raises(MnerInputError, match=reason) as err:
        check_model_out(folder)
    assert err.value.path == str(folder / name)
    assert (tmp_path / "theirs.md").read_text() == README


def test_a_model_folder_whose_readme_is_not_a_card_is_refused(tmp_path):
    folder = trained(tmp_path / "m")
    (folder / "README.md").write_text(README, encoding="utf-8")
    with pytest.raises(MnerInputError, match="exists and is not an mner model card"):
        trained(folder)
    assert (folder / "README.md").read_text() == README
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(MnerInputError, match="exists and is not a folder"):
        check_model_out(file)


def test_combine_never_replaces_a_text_folder_that_is_not_an_mner_model(tmp_path):
    member, text = trained(tmp_path / "m1"), trained(tmp_path / "t", seed=2)
    out = tmp_path / "out"
    (out / "text").mkdir(parents=True)
    (out / "text" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(MnerInputError, match="holds 'notes.txt', which is not an mner model's file"):
        combine([member], out, text_model=text)
    assert (out / "text" / "notes.txt").read_text() == "mine"
    assert not (out / "config.json").exists()
    (out / "text" / "notes.txt").unlink()
    combine([member], out, text_model=text)  # an empty one is fine, and the combined folder can be rewritten
    combine([member], out, text_model=text)
    assert (out / "text" / "config.json").is_file()
