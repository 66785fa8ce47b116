"""Inference on ONNX Runtime: the same tags and attributes as PyTorch, no torch imported, stale or damaged
exports never used."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.data import Post, read_conll
from mner.model.folder import DEFAULT_MODEL, MODELS
from mner.runtime.runners import OnnxTagger, load_image_encoder, load_tagger
from tests.conftest import TWITTER2015, needs_twitter2015

runner = CliRunner()


@pytest.mark.slow
@needs_twitter2015
@pytest.mark.parametrize("name", ["default", "paper-full"])
def test_onnx_and_pytorch_give_the_same_tags_on_twitter2015_dev(name):
    from mner.channels.sources import ChannelSources

    posts = read_conll(TWITTER2015 / "valid.txt")
    onnx, torch_tagger = load_tagger(name, "onnx"), load_tagger(name, "torch")
    assert isinstance(onnx, OnnxTagger) and type(torch_tagger).__name__ == "Tagger"
    channels = onnx.config.channels
    if "caption" in channels:  # paper-full reads the caption (and knowledge, masked here: no KG in this test)
        posts = ChannelSources.open(captions=TWITTER2015 / "image_captions.tsv").fill(posts, channels).posts
    assert onnx.predict_tags(posts) == torch_tagger.predict_tags(posts)


def test_attributes_on_onnx_runtime_match_pytorch_on_real_photos():
    from PIL import Image
    from skimage import data

    from mner.vision import EncoderConfig, load_encoder
    from mner.vision.decode import pixels_from_image

    config = EncoderConfig()
    pixels = np.stack(
        [
            pixels_from_image(Image.fromarray(getattr(data, name)()), config)
            for name in ("chelsea", "coffee", "astronaut", "rocket")
        ]
    )
    onnx, pytorch = (
        load_image_encoder(config, "onnx").encode_pixels(pixels),
        load_encoder(config).encode_pixels(pixels),
    )
    for a, b in zip(onnx, pytorch, strict=True):
        assert [label for label, _ in a.attributes] == [label for label, _ in b.attributes]
        assert np.allclose([p for _, p in a.attributes], [p for _, p in b.attributes], atol=1e-4)
        assert np.allclose(a.regions, b.regions, atol=1e-3) and np.allclose(a.vector, b.vector, atol=1e-4)


def test_predict_and_tag_run_without_torch(tmp_path):
    """With torch unimportable, the shipped model tags a post (its ONNX export) and says so nowhere."""
    posts = tmp_path / "posts.jsonl"
    posts.write_text(json.dumps({"id": "a", "text": "Barack Obama visits Paris"}) + "\n", encoding="utf-8")
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "from mner.cli import main; main()"
    )
    predicted = subprocess.run(
        [sys.executable, "-c", code, "predict", "--text", "Barack Obama visits Paris", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [e["text"] for e in json.loads(predicted.stdout)["entities"]] == ["Barack Obama", "Paris"]
    subprocess.run(
        [sys.executable, "-c", code, "tag", "--in", str(posts), "--out", str(tmp_path / "out.jsonl")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))["entities"][1]["text"] == "Paris"
    refused = subprocess.run(
        [sys.executable, "-c", code, "predict", "--text", "Paris", "--runtime", "torch"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "PyTorch is not installed" in refused.stderr


def test_a_stale_or_damaged_export_is_never_used(tmp_path):
    from mner.model.torch_model import load_tagger as load_torch

    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL, folder)
    tagger = load_torch(folder)
    with __import__("torch").no_grad():
        tagger.network.emit.bias[0] += 1.0  # other weights, saved without a new export
    tagger.save(folder, card="# changed\n")
    assert type(load_tagger(folder)).__name__ == "Tagger"  # auto: PyTorch, the export is stale
    result = runner.invoke(app, ["predict", "--model", str(folder), "--text", "Paris", "--runtime", "onnx"])
    assert result.exit_code == 2
    assert "cannot run on ONNX Runtime: the ONNX export was made from other weights" in result.stderr
    exported = runner.invoke(app, ["export", "--model", str(folder)])
    assert exported.exit_code == 0, exported.output
    assert isinstance(load_tagger(folder), OnnxTagger)
    onnx = bytearray((folder / "model.onnx").read_bytes())
    onnx[-10] ^= 1
    (folder / "model.onnx").write_bytes(bytes(onnx))
    result = runner.invoke(
        app, ["evaluate", "--model", str(folder), "--data", str(folder / "x.txt"), "--runtime", "onnx"]
    )
    assert result.exit_code == 2 and "model.onnx differs from the one exported" in result.stderr


def test_models_with_context_and_transformer_encoders_export_and_match(tmp_path):
    pytest.importorskip("transformers")
    from mner.runtime.export import export_model
    from mner.training.runconfig import RunConfig, TrainConfig
    from mner.training.trainer import train

    context = "Named entities:1. Kobe Bryant (person)2. Paris (city)"
    posts = [
        Post(
            ("Kobe", "Bryant", "lands", "in", "Paris"),
            id="1",
            tags=("B-PER", "I-PER", "O", "O", "B-LOC"),
            context=context,
        ),
        Post(("flying", "to", "Paris"), id="2", tags=("O", "O", "B-LOC")),
    ]
    for model in (
        {"channels": ["text", "context"], "context_alignment": True, "hidden": 8},
        {
            "encoder": "minilm",
            "encoder_lstm": True,
            "hidden": 8,
            "channels": ["text", "context"],
            "context_as_text": True,
            "context_alignment": True,
            "context_form": "entities",
        },
    ):
        run = RunConfig(
            {"char_dim": 8, "char_filters": 8, **model},
            TrainConfig(epochs=1, batch_size=2, min_word_count=1, progress=False),
        )
        tagger = train(posts, posts, run)[0]
        folder = tagger.save(tmp_path / model.get("encoder", "bilstm"))
        export_model(tagger, folder)  # raises if its emissions differ from PyTorch's
        onnx = load_tagger(folder, "onnx")
        longer = [
            *posts,
            Post(("a", "b", "c", "d", "e", "f", "g", "Paris")),
            Post(("Kobe",), context=context),
        ]
        assert onnx.predict_tags(longer, batch_size=3) == tagger.predict_tags(longer, batch_size=3)


def test_the_packaged_models_carry_a_current_export():
    from mner.model.folder import open_model_folder
    from mner.runtime.runners import onnx_export_state

    for name in MODELS.names():
        assert onnx_export_state(open_model_folder(name)) is None, name


def test_onnx_sessions_use_the_thread_setting_and_never_spin():
    """Idle ORT worker threads sleep: spinning ones took the cores that decoding and HTTP needed (serve 51 → 74
    req/s with 2 threads, BENCHMARKS.md)."""
    from mner.model.folder import open_model_folder
    from mner.runtime.ort import onnx_session, set_threads, threads

    before = threads()
    try:
        set_threads(2)
        session = onnx_session(open_model_folder("default").path / "model.onnx")
    finally:
        set_threads(before)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
