"""The command line, through Typer's CliRunner: the contract's flags, JSON shapes and clear errors."""

import json

import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.model.folder import DEFAULT_MODEL, MODELS
from tests.conftest import TWITTER2015, needs_twitter2015

runner = CliRunner()

TRAIN = """IMGID:1
Kobe\tB-PER
Bryant\tI-PER
scores\tO

IMGID:2
flying\tO
to\tO
Paris\tB-LOC

IMGID:3
Google\tB-ORG
hires\tO
Sarah\tB-PER
"""
CONFIG = """[model]
hidden = 16
char_dim = 8
char_filters = 8
dropout = 0.0
[train]
epochs = 40
lr = 0.03
batch_size = 3
min_word_count = 1
progress = false
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "train.txt").write_text(TRAIN)
    (d / "c.toml").write_text(CONFIG)
    result = runner.invoke(
        app,
        [
            "train",
            "--train",
            str(d / "train.txt"),
            "--dev",
            str(d / "train.txt"),
            "--test",
            str(d / "train.txt"),
            "--out",
            str(d / "model"),
            "--seed",
            "4",
            "--config",
            str(d / "c.toml"),
        ],
    )
    assert result.exit_code == 0, result.output
    return d


def test_train_on_several_files_with_a_context_file_each(tmp_path):
    """Two data sets (say Twitter-2015 and 2017), each with its context file: read as one; the card lists every
    file; a key two context files both give is refused, naming the second file."""
    first, second = TRAIN.split("\n\nIMGID:3\n")
    (tmp_path / "a.txt").write_text(first + "\n")
    (tmp_path / "b.txt").write_text("IMGID:3\n" + second)
    (tmp_path / "a.tsv").write_text("image_id\ttext\n1\tNamed entities:1. Kobe Bryant (person)\n")
    (tmp_path / "b.tsv").write_text("image_id\ttext\n3\tNamed entities:1. Google (company)\n")
    (tmp_path / "c.toml").write_text(
        CONFIG.replace("[model]\n", '[model]\nchannels = ["text", "context"]\ncontext_alignment = true\n')
    )
    args = [
        "train",
        "--train",
        str(tmp_path / "a.txt"),
        "--train",
        str(tmp_path / "b.txt"),
        "--dev",
        str(tmp_path / "a.txt"),
        "--dev",
        str(tmp_path / "b.txt"),
        "--test",
        str(tmp_path / "a.txt"),
        "--test",
        str(tmp_path / "b.txt"),
        "--config",
        str(tmp_path / "c.toml"),
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "m"),
    ]
    both = ["--context-file", str(tmp_path / "a.tsv"), "--context-file", str(tmp_path / "b.tsv")]
    result = runner.invoke(app, [*args, *both])
    assert result.exit_code == 0, result.output
    assert "train: 3 posts, 2 with context matched by image_id (1 without one)" in result.stderr
    record = json.loads((tmp_path / "m" / "config.json").read_text())
    assert record["training"]["data"]["train"] == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    assert [s["file"] for s in record["scores"].values()] == [
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.txt"),
    ]
    card = (tmp_path / "m" / "README.md").read_text()
    assert f"- Data: train `{tmp_path / 'a.txt'}`, `{tmp_path / 'b.txt'}`;" in card
    assert card.count("## Test scores of") == 2
    assert record["training"]["command"].count("--context-file") == 2
    (tmp_path / "b.tsv").write_text("image_id\ttext\n1\tanother text for post 1\n")
    clash = runner.invoke(app, [*args, *both])
    assert clash.exit_code == 2
    assert clash.stderr == (
        f"error: {tmp_path / 'b.tsv'}: image_id '1' is in {tmp_path / 'a.tsv'} too: a key may be given by one "
        "file only\n"
    )


def test_train_writes_a_model_folder_with_card(trained):
    card = (trained / "model" / "README.md").read_text()
    config = json.loads((trained / "model" / "config.json").read_text())
    assert config["training"]["train"]["seed"] == 4
    assert (
        config["training"]["hardware"].startswith("CPU, ") and config["training"]["train"]["device"] == "cpu"
    )
    assert f"s per epoch on {config['training']['hardware']}." in card
    assert "--seed 4" in card and "| overall | 100.00 | 100.00 | 100.00 | 4 |" in card


def test_evaluate_json_contract(trained):
    result = runner.invoke(
        app, ["evaluate", "--model", str(trained / "model"), "--data", str(trained / "train.txt"), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"precision", "recall", "f1", "gold_entities", "per_type"}
    assert out["gold_entities"] == 4 and out["f1"] == 100.0
    assert out["per_type"]["PER"] == {"precision": 100.0, "recall": 100.0, "f1": 100.0, "support": 2}


def test_evaluate_human_table(trained):
    result = runner.invoke(
        app, ["evaluate", "--model", str(trained / "model"), "--data", str(trained / "train.txt")]
    )
    assert result.exit_code == 0 and "overall" in result.output and "100.00" in result.output


def test_predict_json_contract(trained):
    result = runner.invoke(
        app, ["predict", "--model", str(trained / "model"), "--text", "Kobe Bryant scores", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    score = out["entities"][0].pop("score")
    assert 0.0 < score <= 1.0  # the model's probability of the entity (mner.decoding)
    assert out == {
        "tokens": ["Kobe", "Bryant", "scores"],
        "entities": [
            {"start": 0, "end": 2, "type": "PER", "text": "Kobe Bryant", "start_char": 0, "end_char": 11}
        ],
        "attributes": [],
        "knowledge": None,
        "caption": None,
        "context": None,
        "warnings": [],
    }


def test_predict_human_output(trained):
    result = runner.invoke(app, ["predict", "--model", str(trained / "model"), "--text", "flying to Paris"])
    assert result.exit_code == 0
    assert "[Paris LOC]" in result.output and "LOC    Paris" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["predict", "--text", "   "], "error: --text is empty: expected the words of a post"),
        (
            ["predict", "--text", "hi", "--model", "/nonexistent/m"],
            "error: /nonexistent/m: model folder not found (packaged models: default",
        ),
        (
            ["evaluate", "--model", "MODEL", "--data", "/nonexistent/x.txt"],
            "error: /nonexistent/x.txt: file not found",
        ),
        (
            ["train", "--train", "BAD", "--dev", "BAD", "--out", "OUT"],
            ("error: BAD:2: expected 'token<TAB>tag', got 3 fields"),
        ),
        (["train", "--train", "EMPTY", "--dev", "EMPTY", "--out", "OUT"], "error: EMPTY: file is empty"),
        (
            [
                "train",
                "--train",
                "TRAIN",
                "--dev",
                "TRAIN",
                "--out",
                "OUT",
                "--config",
                "/nonexistent/c.toml",
            ],
            "error: /nonexistent/c.toml: config file not found",
        ),
        (
            ["train", "--train", "TRAIN", "--dev", "TRAIN", "--out", "OUT", "--device", "tpu"],
            "error: device 'tpu': expected 'cpu' or 'cuda' (or 'cuda:N')",
        ),
    ],
)
def test_errors_are_one_clear_line(trained, tmp_path, args, message):
    (tmp_path / "bad.txt").write_text("IMGID:1\nKobe\tB-PER\tx\n")
    (tmp_path / "empty.txt").write_text("")
    subst = {
        "MODEL": str(trained / "model"),
        "BAD": str(tmp_path / "bad.txt"),
        "EMPTY": str(tmp_path / "empty.txt"),
        "TRAIN": str(trained / "train.txt"),
        "OUT": str(tmp_path / "out"),
    }
    result = runner.invoke(app, [subst.get(a, a) for a in args])
    assert result.exit_code == 2
    assert result.stderr.startswith(message.replace("BAD", subst["BAD"]).replace("EMPTY", subst["EMPTY"]))
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    for command in ("train", "evaluate", "predict", "demo"):
        assert command in result.output


def test_a_kg_or_cache_written_in_the_repository_root_is_ignored_by_git():
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "kg.sqlite", "features.sqlite", "src/mner/kg.sqlite"],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.splitlines() == ["kg.sqlite", "features.sqlite"]


def every_command(group, path=()):
    """The command paths of the app: ("train",), ("kg", "lookup"), ..."""
    import typer.main

    click_group = typer.main.get_command(group)
    for name, command in click_group.commands.items():
        if hasattr(command, "commands"):
            for sub in command.commands:
                yield (*path, name, sub)
        else:
            yield (*path, name)


def test_help_is_plain_text_with_flags_as_flags_and_arguments_in_capitals():
    helps = {}
    for command in every_command(app):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, result.output
        helps[command] = result.output
        usage = result.output.splitlines()[0]
        assert "{" not in usage and "}" not in usage, usage
        assert "<bool>" not in result.output, command  # a flag takes no value
    assert len(helps) >= 14
    assert "TOML file with [model] and [train] tables." in helps["train",]
    assert helps["kg", "lookup"].splitlines()[0].endswith(" [OPTIONS] TEXT")
    assert helps["images", "attributes"].splitlines()[0].endswith(" [OPTIONS] PATH")
    for command in (("evaluate",), ("predict",), ("tag",), ("serve",)):
        assert "packaged model by name" in helps[command], command
    flag = next(line for line in helps["predict",].splitlines() if line.strip().startswith("--json"))
    assert flag.split()[:2] == ["--json", "Print"]


def test_a_boolean_flag_takes_no_value(trained):
    result = runner.invoke(
        app, ["predict", "--model", str(trained / "model"), "--text", "Kobe Bryant", "--json", "true"]
    )
    assert result.exit_code == 2 and "unexpected extra argument(s) (true)" in result.stderr


def test_errors_name_the_path_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["predict", "--text", "Kobe", "--model", "runs/my-model"])
    assert (result.exit_code, result.stderr.split(" (")[0]) == (
        2,
        "error: runs/my-model: model folder not found",
    )
    result = runner.invoke(app, ["predict", "--text", "Kobe", "--kg", "/nonexistent/dir/foo.sqlite"])
    assert (result.exit_code, result.stderr) == (2, "error: /nonexistent/dir/foo.sqlite: KG file not found\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.txt").write_text("IMGID:1\nKobe\tB-PER\tx\n")
    result = runner.invoke(app, ["evaluate", "--data", "data/bad.txt"])
    assert (result.exit_code, result.stderr) == (
        2,
        "error: data/bad.txt:2: expected 'token<TAB>tag', got 3 fields\n",
    )


@pytest.mark.skipif(
    not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="no shipped model in the package"
)
def test_a_folder_named_like_a_packaged_model_comes_first_and_pkg_forces_the_packaged_one(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    packaged = runner.invoke(
        app,
        [
            "predict",
            "--text",
            "Kobe Bryant scores",
            "--model",
            "default",
            "--context",
            "1. Kobe Bryant (person)",
        ],
    )
    assert packaged.exit_code == 0 and packaged.stderr == ""  # no folder ./default: the packaged model
    (tmp_path / "default").mkdir()  # a folder here with the packaged model's name, not a model
    local = runner.invoke(app, ["predict", "--text", "Kobe Bryant scores", "--model", "default"])
    assert local.exit_code == 2
    assert local.stderr.splitlines() == [
        (
            "note: model 'default': the folder ./default here, not the packaged model of that name "
            "(--model pkg:default loads that one)"
        ),
        "error: default/config.json: missing: expected the model config here",
    ]
    forced = runner.invoke(app, ["predict", "--text", "Kobe Bryant scores", "--model", "pkg:default"])
    assert forced.exit_code == 0 and "[Kobe Bryant PER]" in forced.stdout
    unknown = runner.invoke(app, ["predict", "--text", "Kobe", "--model", "pkg:nope"])
    assert unknown.stderr == (
        "error: pkg:nope: no packaged model of that name (packaged models: default, text, fast, paper-full)\n"
    )


@pytest.mark.skipif(
    not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="no shipped model in the package"
)
def test_shipped_model_tags_a_sentence_without_model_flag():
    result = runner.invoke(
        app, ["predict", "--text", "Barack Obama visits Paris with the New York Yankees", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    found = {(e["text"], e["type"]) for e in out["entities"]}
    assert ("Barack Obama", "PER") in found and ("Paris", "LOC") in found
    assert out["warnings"] == [
        "the model was trained with 'context', absent for this post (tagged without it; give it with --context)"
    ]


@pytest.mark.skipif(
    not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="no shipped model in the package"
)
def test_demo_tags_the_example_posts():
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "Kobe Bryant → PER" in result.output


@pytest.mark.slow
@needs_twitter2015
@pytest.mark.skipif(
    not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="no shipped model in the package"
)
def test_the_text_model_reproduces_its_model_card_on_twitter2015_test():
    text_model = MODELS["text"].folder
    recorded = json.loads((text_model / "config.json").read_text())["scores"]["test"]
    result = runner.invoke(
        app, ["evaluate", "--model", "text", "--data", str(TWITTER2015 / "test.txt"), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["gold_entities"] == 5207
    assert recorded.pop("file").endswith("twitter2015/test.txt")  # the file training scored, then its scores
    assert out == recorded
    assert (
        f"| overall | {out['precision']:.2f} | {out['recall']:.2f} | {out['f1']:.2f} | 5207 |"
        in (text_model / "README.md").read_text()
    )


@pytest.mark.slow
@needs_twitter2015
@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_the_default_model_reproduces_its_card_with_and_without_context(runtime):
    card = (DEFAULT_MODEL / "README.md").read_text()
    for extra, row in (
        (
            ["--context-file", str(TWITTER2015 / "llm_knowledge.tsv")],
            "| text + context (the LLM knowledge, `llm_knowledge.tsv`)",
        ),
        ([], "| text alone (no context)"),
    ):
        result = runner.invoke(
            app,
            [
                "evaluate",
                "--data",
                str(TWITTER2015 / "test.txt"),
                "--model",
                "default",
                "--json",
                "--runtime",
                runtime,
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        cells = [out["per_type"][t]["f1"] for t in ("PER", "LOC", "ORG", "OTHER")]
        cells += [out["precision"], out["recall"], out["f1"]]
        line = next(line for line in card.splitlines() if line.startswith(row))
        assert [float(c.strip(" *")) for c in line.split("|")[2:-1]] == cells, line


PAPER_FULL = DEFAULT_MODEL.parent / "paper-full"


@pytest.mark.slow
@needs_twitter2015
@pytest.mark.skipif(
    not (PAPER_FULL / "model.safetensors").is_file(), reason="no paper-full model in the package"
)
def test_paper_full_model_reproduces_its_card_with_captions_and_knowledge(tmp_path):
    """The committed full model (text + caption + knowledge), with the KG rebuilt from ../shared/kg."""
    kg_dir = TWITTER2015.parents[1] / "kg"
    built = runner.invoke(
        app,
        [
            "kg",
            "build",
            "--fb15k237",
            str(kg_dir / "fb15k237"),
            "--db15k",
            str(kg_dir / "db15k"),
            "--mmkb",
            str(kg_dir / "mmkb"),
            "--codex",
            str(kg_dir / "codex"),
            "--out",
            str(tmp_path / "kg.sqlite"),
        ],
    )
    assert built.exit_code == 0, built.output
    recorded = json.loads((PAPER_FULL / "config.json").read_text())["scores"]["test"]
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            "paper-full",
            "--data",
            str(TWITTER2015 / "test.txt"),
            "--captions",
            str(TWITTER2015 / "image_captions.tsv"),
            "--kg",
            str(tmp_path / "kg.sqlite"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert recorded.pop("file").endswith("twitter2015/test.txt")  # the file training scored, then its scores
    assert out == recorded
    assert (
        f"| overall | {out['precision']:.2f} | {out['recall']:.2f} | {out['f1']:.2f} | 5207 |"
        in (PAPER_FULL / "README.md").read_text()
    )


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA device")
def test_training_on_cuda_without_one_is_a_clear_error(trained, tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            "--train",
            str(trained / "train.txt"),
            "--dev",
            str(trained / "train.txt"),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cuda",
            "--config",
            str(trained / "c.toml"),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: device 'cuda': this torch build sees no CUDA device")
    assert not (tmp_path / "out").exists()


PAPER_FULL_WARNING = (
    "the model was trained with 'caption' and 'knowledge', absent for this post (tagged without them; give "
    "them with --caption or --image, and --kg)"
)


@pytest.mark.skipif(
    not (PAPER_FULL / "model.safetensors").is_file(), reason="no paper-full model in the package"
)
def test_predict_warns_when_a_channel_of_the_model_has_no_source():
    result = runner.invoke(
        app, ["predict", "--model", "paper-full", "--text", "Kobe Bryant scores", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == f"warning: {PAPER_FULL_WARNING}\n"
    assert json.loads(result.stdout)["warnings"] == [PAPER_FULL_WARNING]
    given = runner.invoke(
        app,
        ["predict", "--model", "paper-full", "--text", "Kobe Bryant scores", "--caption", "a man", "--json"],
    )
    assert given.stderr == (
        "warning: the model was trained with 'knowledge', absent for this post (tagged without it; give it "
        "with --kg)\n"
    )


@pytest.mark.skipif(
    not (PAPER_FULL / "model.safetensors").is_file(), reason="no paper-full model in the package"
)
def test_tag_warns_once_of_a_channel_without_a_source_and_a_finished_rerun_has_nothing_to_do(tmp_path):
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        "".join(json.dumps({"id": f"p{i}", "text": "Kobe Bryant scores"}) + "\n" for i in range(70))
    )
    out = tmp_path / "out.jsonl"
    first = runner.invoke(app, ["tag", "--in", str(posts), "--out", str(out), "--model", "paper-full"])
    assert first.exit_code == 0, first.output
    warning = (
        "warning: the model was trained with 'caption', and no captions file is given (--captions): a post "
        "without its own caption or an image is tagged without it; 'knowledge', and no KG is given (--kg): "
        "every post is tagged without it"
    )
    assert first.stderr.splitlines()[0] == warning and first.stderr.count("warning:") == 1  # 3 batches
    # a finished job: nothing to tag, so the model is never loaded (this one does not even exist)
    again = runner.invoke(
        app, ["tag", "--in", str(posts), "--out", str(out), "--model", str(tmp_path / "gone")]
    )
    assert again.exit_code == 0, again.output
    assert (
        again.stderr.splitlines()[-1] == "nothing to do: all 70 posts of the input are in the output already"
    )
    assert "posts/s" not in again.stderr and len(out.read_text().splitlines()) == 70


def test_evaluate_draws_a_progress_bar_on_a_terminal_and_keeps_stdout_clean(trained):
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a width
    command = [sys.executable, "-m", "mner", "evaluate", "--model", str(trained / "model")]
    command += ["--data", str(trained / "train.txt"), "--json", "--threads", "1"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    os.close(slave)
    terminal = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    stdout = process.stdout.read()
    assert process.wait(timeout=60) == 0
    assert json.loads(stdout)["f1"] == 100.0
    assert b"evaluating: " in terminal and b"/3 [" in terminal  # 3 posts
    piped = subprocess.run(
        command, capture_output=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert b"evaluating" not in piped.stderr
