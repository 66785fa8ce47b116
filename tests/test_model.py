"""The tagger: it can learn, it saves and loads exactly, and bad model folders fail clearly."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mner.config import ModelConfig
from mner.data import MnerInputError, Post, spans_from_tags
from mner.model.network import TaggingNetwork
from mner.model.torch_model import TorchModel, load_torch_model
from mner.training.runconfig import RunConfig, TrainConfig, read_run_config
from mner.training.trainer import make_schedule, train

SMALL = {"hidden": 32, "char_dim": 16, "char_filters": 16, "dropout": 0.0}

POSTS = [
    Post(("Kobe", "Bryant", "scores", "again"), id="1", tags=("B-PER", "I-PER", "O", "O")),
    Post(("flying", "to", "Paris", "today"), id="2", tags=("O", "O", "B-LOC", "O")),
    Post(("Google", "hires", "Sarah"), id="3", tags=("B-ORG", "O", "B-PER")),
    Post(("watching", "Game", "of", "Thrones"), id="4", tags=("O", "B-OTHER", "I-OTHER", "I-OTHER")),
    Post(("RT", "@nasa", ":", "Mars", "looks", "red"), id="5", tags=("O", "O", "O", "B-LOC", "O", "O")),
]


@pytest.fixture(scope="module")
def overfit():
    torch.manual_seed(0)
    run = RunConfig(
        dict(SMALL),
        TrainConfig(epochs=60, lr=0.02, batch_size=5, patience=60, min_word_count=1, progress=False, seed=3),
    )
    tagger, history = train(POSTS, POSTS, run)
    return tagger, history


def test_tiny_model_overfits_five_posts(overfit):
    tagger, history = overfit
    assert history[-1]["loss"] < history[0]["loss"] / 5
    assert tagger.predict_tags(POSTS) == [list(p.tags) for p in POSTS]
    assert tagger.record["training"]["dev_f1"] == 100.0


def test_predict_returns_spans_and_does_not_mutate_input(overfit):
    tagger, _ = overfit
    posts = [Post(p.tokens, id=p.id) for p in POSTS]
    before = [Post(p.tokens, id=p.id) for p in POSTS]
    spans = tagger.predict(posts)
    assert posts == before
    assert spans[0][0].text == "Kobe Bryant" and spans[0][0].type == "PER"
    assert [[(s.start, s.end, s.type) for s in row] for row in spans] == [
        [(s.start, s.end, s.type) for s in spans_from_tags(p.tags)] for p in POSTS
    ]


def test_save_load_gives_identical_predictions(overfit, tmp_path):
    tagger, _ = overfit
    tagger.save(tmp_path / "m")
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    loaded = load_torch_model(tmp_path / "m")
    posts = POSTS + [Post(("unseen", "Words", "from", "Berlin", "#Wow"))]
    assert loaded.predict_tags(posts) == tagger.predict_tags(posts)
    with torch.inference_mode():
        batch = loaded.batch(posts)
        assert torch.equal(loaded.network.emissions(batch), tagger.network.emissions(batch))


def test_same_seed_same_model():
    run = RunConfig(
        dict(SMALL), TrainConfig(epochs=3, batch_size=2, progress=False, seed=5, min_word_count=1)
    )
    a, ha = train(POSTS, POSTS, run)
    b, hb = train(POSTS, POSTS, run)
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]
    for (ka, va), (kb, vb) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_long_post_is_tagged_in_windows_not_truncated(overfit, caplog):
    tagger, _ = overfit
    limit = tagger.config.max_post_tokens
    tokens = ("Kobe", "Bryant", "scores", "again") * (limit // 2)  # 2 × limit tokens
    tags = tagger.predict_tags([Post(tokens, id="long")])[0]
    assert len(tags) == len(tokens)
    assert tags[-4:] == ["B-PER", "I-PER", "O", "O"]
    assert "has 400 tokens (model limit 200): tagged in 2 windows" in caplog.text


def test_training_rejects_posts_over_the_limit():
    run = RunConfig({**SMALL, "max_post_tokens": 3}, TrainConfig(epochs=1, progress=False))
    with pytest.raises(MnerInputError, match=r"4 training post\(s\) exceed max_post_tokens=3"):
        train(POSTS, POSTS, run)


def test_empty_post_is_an_error(overfit):
    tagger, _ = overfit
    with pytest.raises(MnerInputError, match="post 'e' is empty: expected at least one token"):
        tagger.predict([Post((), id="e")])


@pytest.fixture()
def saved(overfit, tmp_path):
    return overfit[0].save(tmp_path / "m")


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(MnerInputError, match="model.safetensors: missing: expected the model weights here"):
        load_torch_model(saved)


def test_corrupt_weights(saved):
    (saved / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(MnerInputError, match=r"^model.safetensors: corrupt safetensors file"):
        load_torch_model(saved)


def test_truncated_weights(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(MnerInputError, match=r"^model.safetensors: corrupt safetensors file"):
        load_torch_model(saved)


def test_config_with_unknown_keys(saved):
    config = json.loads((saved / "config.json").read_text())
    config["model"]["hiden"] = 3
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        MnerInputError,
        match=r"config.json: bad 'model' section: unknown model config key\(s\) "
        r"\['hiden'\]",
    ):
        load_torch_model(saved)
    config["model"].pop("hiden")
    config["extra"] = 1
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(MnerInputError, match=r"config.json: unknown key\(s\) \['extra'\]"):
        load_torch_model(saved)


def test_config_weights_mismatch(saved):
    config = json.loads((saved / "config.json").read_text())
    config["model"]["hidden"] = 8
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        MnerInputError,
        match=r"^config.json: the model config does not match its weights: 'encoder.lstm.weight_ih_l0' is "
        r"\[128, 76\] in model.safetensors, \[32, 76\] by the config",
    ):
        load_torch_model(saved)


def test_packaged_models_load_by_name(tmp_path, monkeypatch):
    from mner.model.folder import DEFAULT_MODEL, packaged_models, resolve_model

    assert "default" in packaged_models()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("default") == DEFAULT_MODEL and resolve_model(None) == DEFAULT_MODEL
    (tmp_path / "default").mkdir()  # a folder of that name here wins over the packaged one
    assert resolve_model("default") == Path("default")
    assert resolve_model("no-such-model") == Path("no-such-model")


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(
        MnerInputError, match=r"^nowhere: model folder not found \(packaged models: default[,)]"
    ):
        load_torch_model(tmp_path / "nowhere")
    (tmp_path / "m").mkdir()
    with pytest.raises(MnerInputError, match="^config.json: missing: expected the model config here$"):
        load_torch_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{broken")
    with pytest.raises(MnerInputError, match=r"^config.json: not valid JSON"):
        load_torch_model(tmp_path / "m")


def test_model_config_rejects_unknown_keys_and_channels():
    with pytest.raises(ValueError, match=r"unknown model config key\(s\) \['colour'\]"):
        ModelConfig.from_dict({"tags": [], "words": [], "chars": [], "colour": 1})
    with pytest.raises(ValueError, match=r"unknown channel\(s\) \['smell'\]"):
        ModelConfig(tags=[], words=[], chars=[], channels=["text", "smell"])


@pytest.mark.parametrize(
    "text,message",
    [
        ("[model]\nhiden = 3\n", r"c.toml: unknown \[model\] key\(s\) \['hiden'\]"),
        ("[train]\nepochz = 3\n", r"c.toml: unknown train config key\(s\) \['epochz'\]"),
        ("[optim]\nlr = 3\n", r"c.toml: unknown section\(s\) \['optim'\]"),
        ("[model\n", r"c.toml: not valid TOML"),
        ("[model]\nwords = []\n", r"c.toml: unknown \[model\] key\(s\) \['words'\]"),
    ],
)
def test_run_config_errors(tmp_path, text, message):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(MnerInputError, match=message):
        read_run_config(tmp_path / "c.toml")


def test_run_config_reads_model_and_train(tmp_path):
    (tmp_path / "c.toml").write_text("[model]\nhidden = 64\n[train]\nepochs = 7\nlr = 0.01\n")
    run = read_run_config(tmp_path / "c.toml")
    assert run.model == {"hidden": 64} and run.train.epochs == 7 and run.train.lr == 0.01


def test_linear_schedule_warms_up_then_decays_to_zero():
    net = torch.nn.Linear(2, 2)
    cfg = TrainConfig(lr=1.0, schedule="linear", warmup=0.2)
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    schedule = make_schedule(optimiser, cfg, total_steps=10)
    rates = []
    for _ in range(10):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    assert rates == pytest.approx([1 / 3, 2 / 3, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    assert optimiser.param_groups[0]["lr"] == 0.0


def test_constant_schedule_and_bad_schedules():
    net = torch.nn.Linear(2, 2)
    cfg = TrainConfig(lr=0.5)
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    schedule = make_schedule(optimiser, cfg, total_steps=3)
    for _ in range(3):
        optimiser.step()
        schedule.step()
    assert optimiser.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match=r"schedule 'cosine': expected one of \['constant', 'linear'\]"):
        TrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match=r"warmup 1.5: expected a fraction of the steps in \[0, 1\)"):
        TrainConfig(warmup=1.5)


def _tensors(value, path="batch"):
    """Every tensor inside a batch, with where it sits."""
    import dataclasses

    if isinstance(value, torch.Tensor | np.ndarray):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors(v, f"{path}[{k!r}]")
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _tensors(getattr(value, f.name), f"{path}.{f.name}")


def test_as_tensors_moves_every_nested_array():
    from mner.model.network import as_tensors
    from mner.training.trainer import make_model_config

    posts = [
        Post(
            ("Kobe", "Bryant"),
            tags=("B-PER", "I-PER"),
            caption="a basketball player",
            knowledge=("Kobe", "isA", "player"),
        ),
        Post(("Paris",), tags=("B-LOC",)),
    ]
    options = {
        "hidden": 4,
        "char_dim": 4,
        "char_filters": 4,
        "channels": ["text", "caption", "knowledge"],
        "fusion": True,
        "fusion_dim": 8,
    }
    config = make_model_config(posts, options, min_word_count=1)
    tagger = TorchModel(TaggingNetwork(config))
    batch = tagger.batches.build(posts, with_tags=True)  # NumPy arrays
    on_cpu = as_tensors(batch)
    assert all(isinstance(t, torch.Tensor) for _, t in _tensors(on_cpu))
    assert on_cpu.mask.data_ptr() == batch.mask.ctypes.data  # no copy on the CPU
    moved = as_tensors(batch, "meta")  # a device every torch build has: shapes without storage
    found = dict(_tensors(moved))
    assert {
        "batch.tags",
        "batch.mask",
        "batch.memory['caption'].char_ids",
        "batch.memory['knowledge'].mask",
        "batch.text.word_vectors",
    } <= set(found)
    assert {p: t.device.type for p, t in found.items()} == {p: "meta" for p in found}
    assert {p: tuple(t.shape) for p, t in found.items()} == {p: t.shape for p, t in _tensors(batch)}
    assert all(isinstance(t, np.ndarray) for _, t in _tensors(batch))  # the original is left alone


def test_a_glove_model_has_one_optimiser_group_at_lr():
    config = ModelConfig(
        tags=["O", "B-PER", "I-PER"], words=["<pad>", "<unk>"], chars=["<pad>", "<unk>"], **SMALL
    )
    net = TaggingNetwork(config)
    groups = net.configure_optimiser(lr=0.01, encoder_lr=5e-5).param_groups
    assert [g["lr"] for g in groups] == [0.01]
    assert sum(p.numel() for p in groups[0]["params"]) == sum(p.numel() for p in net.parameters())


def test_the_default_sends_a_list_without_types_to_its_text_path():
    """The default's untyped path is its text path (one folder, loaded once): with MPNet features the text alone
    beats a GloVe model reading names without types (issue #31)."""
    from mner.runtime.runners import load_runner

    runner = load_runner(None, "onnx")
    assert runner.paths["untyped"] is runner.paths["none"] is runner.text
    assert runner.text.config.features == "mpnet" and runner.context.config.features is None
