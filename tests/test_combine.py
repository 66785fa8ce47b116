"""``mner combine``: an ensemble is one network whose emissions and CRF scores are its members' means, on both
runtimes; a text path tags exactly the posts whose context names nothing in them."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.data import MnerInputError, Post
from mner.model.combine import combine
from mner.model.torch_model import load_torch_model
from mner.runtime.runners import OnnxRunner, RoutedRunner, load_runner
from mner.training.runconfig import RunConfig, TrainConfig
from mner.training.trainer import train

CONTEXT = "Named entities:1. Kobe Bryant (person)2. Paris (city)"
POSTS = [
    Post(
        ("Kobe", "Bryant", "lands", "in", "Paris"),
        id="1",
        tags=("B-PER", "I-PER", "O", "O", "B-LOC"),
        context=CONTEXT,
    ),
    Post(
        ("flying", "to", "Paris"), id="2", tags=("O", "O", "B-LOC"), context="Named entities:1. Paris (city)"
    ),
    Post(("Bears", "win", "again"), id="3", tags=("B-ORG", "O", "O")),
]
SMALL = {"char_dim": 8, "char_filters": 8, "hidden": 8}


def trained(tmp_path, name: str, seed: int, context: bool = True):
    model = {**SMALL, "channels": ["text", "context"], "context": {"alignment": True}} if context else SMALL
    run = RunConfig(model, TrainConfig(epochs=2, batch_size=2, min_word_count=1, progress=False, seed=seed))
    return train(POSTS, POSTS, run)[0].save(tmp_path / name)


def test_an_ensemble_is_the_mean_of_its_members_on_both_runtimes(tmp_path):
    from mner.runtime.export import export_model

    folders = [trained(tmp_path, f"s{seed}", seed) for seed in (1, 2, 3)]
    members = [load_torch_model(f) for f in folders]
    ensemble = combine(folders, tmp_path / "ens")
    export_model(ensemble, tmp_path / "ens")  # raises if the graph's emissions differ from PyTorch's
    assert ensemble.config.ensemble == 3 and len(ensemble.record["members"]) == 3
    batch = ensemble.batches.build(POSTS)
    want = np.mean([m.emissions(batch) for m in members], axis=0)
    assert np.allclose(ensemble.emissions(batch), want, atol=1e-6)
    scores = [m.network.crf.scores() for m in members]
    got = ensemble.crf_scores()
    mean = lambda name: np.mean([getattr(s, name) for s in scores], axis=0)
    assert all(np.allclose(getattr(got, n), mean(n), atol=1e-4) for n in ("start", "end", "transitions"))
    onnx = load_runner(tmp_path / "ens", "onnx")
    assert isinstance(onnx, OnnxRunner)
    longer = [*POSTS, Post(("Kobe",), context=CONTEXT), Post(("a", "b", "c", "d", "Paris"))]
    assert onnx.predict_tags(longer) == load_torch_model(tmp_path / "ens").predict_tags(longer)


def test_the_text_path_tags_the_posts_whose_context_names_nothing_in_them(tmp_path):
    context_model = trained(tmp_path, "ctx", 1)
    text_model = trained(tmp_path, "text", 2, context=False)
    result = CliRunner().invoke(
        app,
        [
            "combine",
            "--member",
            str(context_model),
            "--text-model",
            str(text_model),
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.output
    routed = load_runner(tmp_path / "c", "onnx")
    assert isinstance(routed, RoutedRunner) and routed.runtime == "onnx"
    posts = [
        POSTS[0],  # its context names Kobe Bryant and Paris: the context model
        Post(("Kobe", "lands"), context="Named entities:1. Lionel Messi (person)"),  # another post's: text
        Post(("Kobe", "lands"), context="Reasoning: the post is about basketball."),  # nothing readable: text
        Post(("Kobe", "lands")),  # no context: text
        Post(("RT", "@", "Kobe", "lands"), context="Named entities:1. Kobe (person)"),  # @ joined: context
    ]
    assert [routed.uses_context(p) for p in posts] == [True, False, False, False, True]
    ctx, txt = load_runner(tmp_path / "c", "onnx").context, load_runner(tmp_path / "c" / "text", "onnx")
    want = [
        ctx.predict_tags([p])[0] if use else txt.predict_tags([p])[0]
        for p, use in zip(posts, [1, 0, 0, 0, 1])
    ]
    assert routed.predict_tags(posts) == want
    assert load_runner(tmp_path / "c", "torch").predict_tags(posts) == want
    assert (
        "- Text path: a post whose context lists no name found in it"
        in (tmp_path / "c" / "README.md").read_text()
    )


def test_members_must_share_one_config_and_out_is_never_an_input(tmp_path):
    a = trained(tmp_path, "a", 1)
    b = trained(tmp_path, "b", 2, context=False)
    with pytest.raises(
        MnerInputError, match=r"its config differs from .*a's in 'channels': members must share one"
    ):
        combine([a, b], tmp_path / "out")
    with pytest.raises(MnerInputError, match="--out is one of the models combined or a packaged model"):
        combine([a], a)
    with pytest.raises(MnerInputError, match="a text path must read text alone"):
        combine([a], tmp_path / "out", text_model=a)


def test_the_untyped_path_tags_the_posts_whose_context_gives_names_without_types(tmp_path):
    typed, untyped = trained(tmp_path, "typed", 1), trained(tmp_path, "untyped", 2)
    text = trained(tmp_path, "t", 3, context=False)
    combine([typed], tmp_path / "c", text_model=text, untyped_model=untyped)
    routed = load_runner(tmp_path / "c", "torch")
    posts = [
        Post(("Kobe", "lands"), context="Named entities:1. Kobe (person)"),  # typed
        Post(("Kobe", "lands"), context="Named entities:1. Kobe (entity)"),  # untyped: no kind names a type
        Post(("Kobe", "lands"), context='[{"name": "Kobe"}]'),  # untyped: no kind at all
        Post(("Kobe", "lands"), context="Named entities:1. Paris (city)"),  # names nothing here: text
    ]
    assert [routed.route(p) for p in posts] == ["typed", "untyped", "untyped", "none"]
    runners = {"typed": routed.context, "untyped": routed.untyped, "none": routed.text}
    assert routed.predict(posts) == [runners[routed.route(p)].predict([p])[0] for p in posts]
    assert routed.predict_tags(posts) == [runners[routed.route(p)].predict_tags([p])[0] for p in posts]
    card = (tmp_path / "c" / "README.md").read_text()
    assert "- Untyped path: a post whose context names something in it but gives no kind" in card
    with pytest.raises(MnerInputError, match="an untyped path must read the context"):
        combine([typed], tmp_path / "d", untyped_model=text)


def test_float16_weights_halve_the_folder_and_tag_alike_on_both_runtimes(tmp_path):
    from safetensors.numpy import load_file

    from mner.model.folder import read_config

    folders = [trained(tmp_path, f"s{seed}", seed) for seed in (1, 2)]
    result = CliRunner().invoke(
        app, ["combine", *(a for f in folders for a in ("--member", str(f))), "--out", str(tmp_path / "f32")]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app,
        [
            "combine",
            *(a for f in folders for a in ("--member", str(f))),
            "--float16",
            "--out",
            str(tmp_path / "f16"),
        ],
    )
    assert result.exit_code == 0, result.output
    full, half = tmp_path / "f32", tmp_path / "f16"
    weights = load_file(str(half / "model.safetensors"))
    assert {str(v.dtype) for v in weights.values()} <= {"float16", "int64"} and "float16" in {
        str(v.dtype) for v in weights.values()
    }
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    import onnx

    def weight_bytes(graph):  # the initializers: the graph's structure dominates so small a model's file
        return {
            i.data_type: sum(len(x.raw_data) for x in graph.graph.initializer if x.data_type == i.data_type)
            for i in graph.graph.initializer
        }

    f32, f16 = (weight_bytes(onnx.load(str(f / "model.onnx"))) for f in (full, half))
    assert sum(f16.values()) < 0.6 * sum(f32.values())
    assert f16[onnx.TensorProto.FLOAT16] > f16.get(onnx.TensorProto.FLOAT, 0)
    record = read_config(half / "config.json")
    assert record["weights_dtype"] == "float16" and "--float16" in record["training"]["command"]
    assert "float16" in (half / "README.md").read_text(encoding="utf-8")
    # the stored weights are the float32 ensemble's rounded once: emissions within float16's rounding
    rounded, exact = load_torch_model(half), load_torch_model(full)
    batch = exact.batches.build(POSTS)
    assert np.allclose(rounded.emissions(batch), exact.emissions(batch), atol=2e-2)
    assert not np.array_equal(rounded.emissions(batch), exact.emissions(batch))
    # ONNX Runtime reads the same float16 weights (cast back to float32): PyTorch's emissions and tags
    onnx = load_runner(half, "onnx")
    assert isinstance(onnx, OnnxRunner)
    assert np.allclose(onnx.emissions(batch), rounded.emissions(batch), atol=1e-5)
    longer = [*POSTS, Post(("Kobe",), context=CONTEXT), Post(("a", "b", "c", "d", "Paris"))]
    assert onnx.predict_tags(longer) == rounded.predict_tags(longer)
    again = tmp_path / "again"  # a re-save keeps float16
    rounded.save(again)
    assert load_file(str(again / "model.safetensors")).keys() == weights.keys()
    assert all(str(v.dtype) != "float32" for v in load_file(str(again / "model.safetensors")).values())


def test_a_weights_dtype_mner_does_not_know_is_refused(tmp_path):
    import json

    folder = trained(tmp_path, "s1", 1)
    record = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    record["weights_dtype"] = "bfloat16"
    (folder / "config.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(MnerInputError, match="weights_dtype 'bfloat16'"):
        load_torch_model(folder)
