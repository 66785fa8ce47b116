"""Inference on ONNX Runtime: the same tags and attributes as PyTorch, no torch imported, stale or damaged
exports never used, the batch layout an export was made with checked on load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.data import MnerInputError, Post, read_conll
from mner.model.folder import MODELS
from mner.runtime.images import load_image_encoder
from mner.runtime.runners import OnnxRunner, load_runner
from tests.conftest import TWITTER2015, needs_twitter2015

runner = CliRunner()


@pytest.mark.slow
@needs_twitter2015
@pytest.mark.parametrize("name", ["default", "paper-full"])
def test_onnx_and_pytorch_give_the_same_tags_on_twitter2015_dev(name):
    from mner.channels.sources import ChannelSources

    posts = read_conll(TWITTER2015 / "valid.txt")
    onnx, torch_model = load_runner(name, "onnx"), load_runner(name, "torch")
    # the default routes posts between its ensemble and its text and untyped paths, each on the runtime asked for
    for one, other in zip(
        getattr(onnx, "paths", {"": onnx}).values(), getattr(torch_model, "paths", {"": torch_model}).values()
    ):
        assert isinstance(one, OnnxRunner) and type(other).__name__ == "TorchModel"
    channels = onnx.config.channels
    if "context" in channels:  # the default: with the LLM knowledge, so that every path tags some posts
        posts = (
            ChannelSources.open({"context": TWITTER2015 / "llm_knowledge.tsv"}).fill(posts, channels).posts
        )
    if "caption" in channels:  # paper-full reads the caption (and knowledge, masked here: no KG in this test)
        posts = (
            ChannelSources.open({"caption": TWITTER2015 / "image_captions.tsv"}).fill(posts, channels).posts
        )
    assert onnx.predict_tags(posts) == torch_model.predict_tags(posts)


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


def test_a_stale_or_damaged_export_is_never_used(tmp_path, caplog):
    from mner.model.torch_model import load_torch_model as load_torch

    folder = tmp_path / "m"
    shutil.copytree(MODELS["text"].folder, folder)  # one folder, no paths (the default routes between three)
    torch_model = load_torch(folder)
    bias = next(p for name, p in torch_model.network.named_parameters() if name.endswith("emit.bias"))
    with __import__("torch").no_grad():
        bias[0] += 1.0  # other weights, saved without a new export
    torch_model.save(folder, card="# changed\n")
    with caplog.at_level("WARNING", logger="mner.runtime"):
        assert type(load_runner(folder)).__name__ == "TorchModel"  # auto: PyTorch, the export is stale
        assert type(load_runner(folder)).__name__ == "TorchModel"
    said = [r.getMessage() for r in caplog.records if r.name == "mner.runtime"]
    assert said == [
        (
            f"{folder}: runs on PyTorch: its ONNX export was made from other weights (renew it with: "
            f"mner export {folder})"
        )
    ]  # once, however often it is loaded
    result = runner.invoke(app, ["predict", "--model", str(folder), "--text", "Paris", "--runtime", "onnx"])
    assert result.exit_code == 2
    assert "cannot run on ONNX Runtime: its ONNX export was made from other weights" in result.stderr
    exported = runner.invoke(app, ["export", "--model", str(folder)])
    assert exported.exit_code == 0, exported.output
    assert isinstance(load_runner(folder), OnnxRunner)
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
        {"channels": ["text", "context"], "context": {"alignment": True}, "hidden": 8},
        {
            "encoder": "minilm",
            "encoder_lstm": True,
            "hidden": 8,
            "channels": ["text", "context"],
            "words_after_post": True,
            "context": {"alignment": True, "form": "entities"},
        },
    ):
        run = RunConfig(
            {"char_dim": 8, "char_filters": 8, **model},
            TrainConfig(epochs=1, batch_size=2, min_word_count=1, progress=False),
        )
        trained = train(posts, posts, run)[0]
        folder = trained.save(tmp_path / model.get("encoder", "bilstm"))
        export_model(trained, folder)  # raises if its emissions differ from PyTorch's
        onnx = load_runner(folder, "onnx")
        longer = [
            *posts,
            Post(("a", "b", "c", "d", "e", "f", "g", "Paris")),
            Post(("Kobe",), context=context),
        ]
        assert onnx.predict_tags(longer, batch_size=3) == trained.predict_tags(longer, batch_size=3)


def test_the_packaged_models_carry_a_current_export():
    from mner.model.folder import open_model_folder
    from mner.runtime.runners import onnx_export_state

    for name in MODELS.names():
        assert onnx_export_state(open_model_folder(name)) is None, name


def test_onnx_sessions_use_their_threads_and_never_spin():
    """Idle ORT worker threads sleep: spinning ones took the cores that decoding and HTTP needed (serve 51 → 74
    req/s with 2 threads, BENCHMARKS.md). Threads are the caller's, never a global setting."""
    from mner.model.folder import open_model_folder
    from mner.runtime.ort import onnx_session

    session = onnx_session(open_model_folder("default").path / "model.onnx", 2)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert load_runner("text", "onnx", threads=3).session.get_session_options().intra_op_num_threads == 3


def test_an_export_made_for_another_batch_layout_asks_to_be_renewed(tmp_path, monkeypatch):
    """A renamed batch field (or another layout version) makes an old export fail with the message that says how
    to renew it, never a KeyError when the first post is tagged."""
    from mner.inputs import batching
    from mner.runtime import runners

    folder = tmp_path / "m"
    shutil.copytree(MODELS["text"].folder, folder)
    renewal = f"renew it with: mner export {folder}"
    renamed = lambda config: [
        n.replace("text.char_ids", "text.characters") for n in batching.batch_layout(config)
    ]
    monkeypatch.setattr(runners, "batch_layout", renamed)  # a field renamed, the version not bumped
    with pytest.raises(MnerInputError, match="its ONNX export reads inputs this mner does not build") as err:
        load_runner(folder, "onnx")
    assert "text.char_ids" in str(err.value) and renewal in str(err.value)
    monkeypatch.undo()
    meta = json.loads((folder / "onnx.json").read_text())
    (folder / "onnx.json").write_text(json.dumps({**meta, "layout": meta["layout"] - 1}))
    with pytest.raises(MnerInputError, match=f"batch layout {meta['layout'] - 1}; this mner reads") as err:
        load_runner(folder, "onnx")
    assert renewal in str(err.value)
    assert type(load_runner(folder, "auto")).__name__ == "TorchModel"  # auto: PyTorch, told once on stderr
    assert runner.invoke(app, ["export", "--model", str(folder)]).exit_code == 0
    assert isinstance(load_runner(folder, "onnx"), OnnxRunner)


def test_the_batch_layout_is_pinned():
    """What a batch holds for each kind of config: changing it (a field renamed, added or removed) changes this
    list and must bump BATCH_LAYOUT, so that older exports are refused with the renew message."""
    from mner.config import ModelConfig
    from mner.inputs.batching import BATCH_LAYOUT, BatchBuilder, batch_layout, flat_arrays, input_builder
    from mner.runtime.export import sample_posts

    full = ModelConfig(
        tags=["O", "B-PER", "I-PER"],
        words=["<pad>", "<unk>"],
        chars=["<pad>", "<unk>"],
        channels=["text", "caption", "knowledge", "context", "attributes", "image"],
        fusion=True,
        context={"alignment": True},
    )
    after = ModelConfig(
        tags=["O"],
        words=["<pad>", "<unk>"],
        chars=["<pad>", "<unk>"],
        channels=["text", "caption"],
        words_after_post=True,
    )
    for config in (full, after):
        posts, images = sample_posts(config)
        built = flat_arrays(BatchBuilder(config, input_builder(config)).build(posts, images=images))
        assert sorted(built) == sorted(batch_layout(config))
    assert BATCH_LAYOUT == 2
    assert batch_layout(full) == [
        "text.char_ids",
        "text.shape_ids",
        "text.mask",
        "text.word_vectors",
        "text.word_ids",
        "text.alignment_ids",
        "mask",
        *(
            f"memory.{c}.{n}"
            for c in ("caption", "knowledge", "context")
            for n in ("char_ids", "shape_ids", "mask", "word_vectors", "word_ids")
        ),
        "image.has_image",
        *(
            f"image.attribute_words.{n}"
            for n in ("char_ids", "shape_ids", "mask", "word_vectors", "word_ids")
        ),
        "image.attribute_probs",
        "image.regions",
    ]
    assert "text.separator" in batch_layout(after)


def test_every_byte_of_onnx_json_is_checked_or_unused(tmp_path):
    """The CRF's scores are read from the hash-checked weights, not onnx.json: a changed onnx.json is refused
    or changes nothing (issue #25: a one-byte change in its scores once gave F1 3.31 with exit 0)."""
    folder = tmp_path / "m"
    shutil.copytree(MODELS["text"].folder, folder)
    posts = [
        Post(("Kobe", "Bryant", "lands", "in", "Paris")),
        Post(("RT", "@NASA", ":", "back", "in", "Houston")),
    ]
    want = load_runner(folder, "onnx").predict_tags(posts)
    meta = json.loads((folder / "onnx.json").read_text())
    assert set(meta) == {"format", "layout", "inputs", "tags", "weights_sha256", "onnx_sha256"}
    changes = {
        "format": 1,
        "layout": 1,
        "tags": meta["tags"][::-1],
        "weights_sha256": "0" * 64,
        "onnx_sha256": "0" * 64,
        "inputs": ["text.nowhere"],
    }
    for key, value in changes.items():
        (folder / "onnx.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(MnerInputError, match="renew it with: mner export"):
            load_runner(folder, "onnx")
    (folder / "onnx.json").write_text(json.dumps({**meta, "inputs": meta["inputs"][:1]}))
    assert load_runner(folder, "onnx").predict_tags(posts) == want  # the graph's own inputs are read


def _product_graph(path, seed: int = 0):
    """A graph with one 64×64 weight (16 KB, kept in weights.bin by optimized_session): x @ W + x."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "x"], ["y"])],
        "product",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])],
        [numpy_helper.from_array(weight, "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return weight


def test_a_large_graph_keeps_its_optimized_form_and_opens_it_unoptimized(tmp_path, monkeypatch):
    """MPNet's optimized form, kept, is what brought start-up under 1 s: the form is kept the first
    time, opened as it is after, gives the same outputs, and is made again when stale, damaged or unwritable."""
    from mner.runtime import ort as runtime_ort

    source = tmp_path / "graph.onnx"
    weight = _product_graph(source)
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    expected = x @ weight + x
    opened = []
    real = runtime_ort.onnx_session
    monkeypatch.setattr(
        runtime_ort, "onnx_session", lambda p, t=1, **kw: opened.append((Path(p), kw)) or real(p, t, **kw)
    )
    folder = runtime_ort.optimized_path(source)
    first = runtime_ort.optimized_session(source, 2)
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "weights.bin"]
    assert (folder / "weights.bin").stat().st_size >= weight.nbytes
    assert opened[-1][0] == source and "save_to" in opened[-1][1]
    second = runtime_ort.optimized_session(source, 2)
    assert opened[-1] == (folder / "model.onnx", {"optimize": False})
    assert second.get_session_options().intra_op_num_threads == 2
    for session in (first, second):
        np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []

    # a newer source (re-exported with other weights): optimized anew, never the stale form
    weight = _product_graph(source, seed=2)
    os.utime(source, (time.time() + 5, time.time() + 5))
    fresh = runtime_ort.optimized_session(source, 1)
    np.testing.assert_allclose(fresh.run(None, {"x": x})[0], x @ weight + x, rtol=1e-5, atol=1e-5)
    assert opened[-1][0] == source
    os.utime(source, (time.time() - 100, time.time() - 100))

    # a damaged kept form: opened from the source and kept again
    (folder / "model.onnx").write_bytes(b"not a graph")
    again = runtime_ort.optimized_session(source, 1)
    np.testing.assert_allclose(again.run(None, {"x": x})[0], x @ weight + x, rtol=1e-5, atol=1e-5)
    assert runtime_ort.optimized_session(source, 1) is not None and opened[-1][1] == {"optimize": False}

    # where nothing can be written: the session of the source itself
    monkeypatch.setattr(runtime_ort, "optimized_path", lambda p: Path("/proc/mner-cannot-write") / p.stem)
    plain = runtime_ort.optimized_session(source, 1)
    np.testing.assert_allclose(plain.run(None, {"x": x})[0], x @ weight + x, rtol=1e-5, atol=1e-5)
    assert opened[-1] == (source, {})
