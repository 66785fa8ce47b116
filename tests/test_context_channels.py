"""Context channels through the paper's fusion: a caption decides what the text alone cannot."""

import json

import pytest
import torch
from typer.testing import CliRunner

from mner.channels.sources import ChannelSources
from mner.cli import app
from mner.config import ModelConfig
from mner.data import MnerInputError, Post
from mner.model.network import TaggingNetwork
from mner.model.torch_model import TorchModel, load_torch_model
from mner.training.runconfig import RunConfig, TrainConfig
from mner.training.trainer import make_model_config, train

SMALL = {"hidden": 24, "char_dim": 8, "char_filters": 8, "dropout": 0.0}
# The same sentence is a person or a thing depending only on what the image shows (here: its caption).
POSTS = [
    Post(
        ("Chelsea", "is", "sleeping"), id="1", tags=("B-PER", "O", "O"), caption="a woman asleep on a couch"
    ),
    Post(
        ("Chelsea", "is", "sleeping"), id="2", tags=("B-OTHER", "O", "O"), caption="a cat curled up on a rug"
    ),
    Post(("Chelsea", "is", "sleeping"), id="3", tags=("B-PER", "O", "O"), caption="a young man in bed"),
    Post(("Chelsea", "is", "sleeping"), id="4", tags=("B-OTHER", "O", "O"), caption="a kitten in a basket"),
]


def fit(channels, fusion, epochs=80, lr=0.02, **model):
    torch.manual_seed(0)
    run = RunConfig(
        {**SMALL, "channels": channels, "fusion": fusion, **model},
        TrainConfig(
            epochs=epochs, lr=lr, batch_size=4, patience=epochs, min_word_count=1, progress=False, seed=2
        ),
    )
    return train(POSTS, POSTS, run)[0]


@pytest.fixture(scope="module")
def caption_model():
    return fit(["text", "caption"], True)


def test_caption_channel_learns_what_text_alone_cannot(caption_model):
    assert caption_model.predict_tags(POSTS) == [list(p.tags) for p in POSTS]
    text_only = fit(["text"], True)
    predicted = text_only.predict_tags(POSTS)
    assert len({tuple(p) for p in predicted}) == 1  # identical inputs, identical outputs
    assert sum(p == list(g.tags) for p, g in zip(predicted, POSTS)) == 2


def test_caption_as_text_learns_it_too_without_the_fusion():
    # The BiLSTM carries the caption back to "Chelsea" across the separator: slower than attention.
    model = fit(["text", "caption"], False, epochs=120, lr=0.01, words_after_post=True)
    assert model.predict_tags(POSTS) == [list(p.tags) for p in POSTS]
    assert not hasattr(model.network, "fusion") and model.network.encoder.separator.shape == (50 + 8 + 10,)


def test_words_after_post_tags_the_post_only():
    posts = [
        Post(
            ("Kobe", "Bryant", "scores"),
            tags=("B-PER", "I-PER", "O"),
            caption="a basketball player",
            knowledge=("Kobe", "isA", "person"),
        ),
        Post(("hello",), tags=("O",), caption="a dog"),
    ]
    config = make_model_config(
        posts,
        {**SMALL, "channels": ["text", "caption", "knowledge"], "words_after_post": True},
        min_word_count=1,
    )
    net = TaggingNetwork(config).eval()
    tagger = TorchModel(net)
    batch = tagger.batch(posts, with_tags=True)
    marks = batch.text.separator[0].tolist()
    assert [i for i, m in enumerate(marks) if m] == [3, 7]  # post, SEPARATOR caption, SEPARATOR knowledge
    assert batch.text.mask.sum(1).tolist() == [11, 4] and batch.mask.sum(1).tolist() == [3, 1]
    longer = [Post(p.tokens, tags=p.tags, caption="a crowd cheering in a stadium at night") for p in posts]
    other = tagger.batch(longer, with_tags=True)
    with torch.inference_mode():
        assert net.emissions(batch).shape == net.emissions(other).shape == (2, 3, len(config.tags))
        assert [len(t) for t in net.crf.decode(net.emissions(other), other.mask)] == [3, 1]
        assert not torch.allclose(net.emissions(batch)[0], net.emissions(other)[0])  # the post reads it
        loss = net.loss(batch)
        batch.tags[1, 1:] = (
            len(config.tags) - 1
        )  # past the second post's end (its context's positions): never read
        assert torch.equal(net.loss(batch), loss)
        alone = torch.stack([net.loss(tagger.batch([p], with_tags=True)) for p in posts])
    assert torch.allclose(loss, alone.mean(), atol=1e-5)


def test_words_after_post_needs_a_context_channel():
    with pytest.raises(
        ValueError,
        match=r"words_after_post needs a word channel: some of \['caption', "
        r"'knowledge', 'context'\]",
    ):
        ModelConfig(tags=[], words=[], chars=[], words_after_post=True)
    with pytest.raises(ValueError, match=r"channel\(s\) \['attributes'\] need fusion = true$"):
        ModelConfig(
            tags=[], words=[], chars=[], channels=["text", "caption", "attributes"], words_after_post=True
        )


def test_caption_as_one_attribute_like_item_learns_it_too():
    model = fit(["text", "caption"], True, caption_mode="attribute", fusion_dim=12)
    assert model.predict_tags(POSTS) == [list(p.tags) for p in POSTS]
    assert hasattr(model.network, "caption_fc") and model.network.fusion.align.w_x.in_features == 12


def test_unknown_caption_mode_is_refused():
    with pytest.raises(
        ValueError, match=r"caption_mode 'sentence': expected one of \['words', 'attribute'\]"
    ):
        ModelConfig(
            tags=[], words=[], chars=[], channels=["text", "caption"], fusion=True, caption_mode="sentence"
        )


def test_unseen_captions_generalise_by_their_words(caption_model):
    new = [
        Post(("Chelsea", "is", "sleeping"), caption="a cat on a rug"),
        Post(("Chelsea", "is", "sleeping"), caption="a woman on a couch"),
    ]
    assert [t[0] for t in caption_model.predict_tags(new)] == ["B-OTHER", "B-PER"]


def test_a_post_without_caption_is_still_tagged(caption_model):
    tags = caption_model.predict_tags([Post(("Chelsea", "is", "sleeping"))])[0]
    assert len(tags) == 3 and tags[0] in ("B-PER", "B-OTHER")


def test_fusion_model_saves_and_loads_identically(caption_model, tmp_path):
    caption_model.save(tmp_path / "m")
    loaded = load_torch_model(tmp_path / "m")
    assert loaded.config.channels == ["text", "caption"] and loaded.config.fusion
    assert loaded.predict_tags(POSTS) == caption_model.predict_tags(POSTS)


def test_context_channels_need_fusion_and_text():
    with pytest.raises(ValueError, match=r"channel\(s\) \['caption'\] need fusion = true"):
        ModelConfig(tags=[], words=[], chars=[], channels=["text", "caption"])
    with pytest.raises(ValueError, match="the 'text' channel cannot be switched off"):
        ModelConfig(tags=[], words=[], chars=[], channels=["caption"], fusion=True)


def test_filling_joins_captions_and_counts_missing_ones():
    posts = [
        Post(("a",), id="p1", image="1"),
        Post(("b",), id="p2", image="2"),
        Post(("c",), id="p3", image="3", caption="own caption"),
    ]
    filled = ChannelSources(texts={"caption": {"1": "a dog", "3": "ignored"}}).fill(
        posts, ["text", "caption"]
    )
    assert [p.caption for p in filled.posts] == ["a dog", None, "own caption"]
    assert posts[0].caption is None  # inputs untouched
    report = filled.report
    assert report.found == {"caption": 2} and report.missing == {"caption": ["2"]}
    assert report.summary() == "3 posts, 2 with a caption (1 image ids without one)"
    assert report.absent(["text", "caption"]) == {"caption": 1}


def test_channels_without_data_fail_at_the_start():
    with pytest.raises(MnerInputError, match="enables the 'caption' channel: pass --captions FILE"):
        ChannelSources().require(["text", "caption"])
    with pytest.raises(MnerInputError, match="enables the 'knowledge' channel: pass --kg FILE"):
        ChannelSources(texts={"caption": {}}).require(["text", "knowledge"])


def test_cli_trains_and_evaluates_with_captions(tmp_path):
    conll = "".join(
        f"IMGID:{p.id}\n" + "".join(f"{t}\t{g}\n" for t, g in zip(p.tokens, p.tags)) + "\n" for p in POSTS
    )
    (tmp_path / "d.txt").write_text(conll)
    (tmp_path / "c.tsv").write_text("image_id\tcaption\n" + "".join(f"{p.id}\t{p.caption}\n" for p in POSTS))
    (tmp_path / "m.toml").write_text(
        '[model]\nchannels = ["text", "caption"]\nfusion = true\nhidden = 24\n'
        "dropout = 0.0\n[train]\nepochs = 60\nlr = 0.02\nbatch_size = 4\n"
        "min_word_count = 1\nprogress = false\npatience = 60\n"
    )
    runner = CliRunner()
    args = [
        "train",
        "--train",
        str(tmp_path / "d.txt"),
        "--dev",
        str(tmp_path / "d.txt"),
        "--out",
        str(tmp_path / "out"),
        "--config",
        str(tmp_path / "m.toml"),
    ]
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2
    assert "error: the model config enables the 'caption' channel: pass --captions FILE" in missing.stderr
    result = runner.invoke(app, [*args, "--captions", str(tmp_path / "c.tsv")])
    assert result.exit_code == 0, result.output
    assert "train: 4 posts, 4 with a caption (0 image ids without one)" in result.stderr
    scored = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tmp_path / "out"),
            "--data",
            str(tmp_path / "d.txt"),
            "--captions",
            str(tmp_path / "c.tsv"),
            "--json",
        ],
    )
    assert scored.exit_code == 0 and json.loads(scored.stdout)["f1"] == 100.0
    one = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(tmp_path / "out"),
            "--text",
            "Chelsea is sleeping",
            "--caption",
            "a cat curled up on a rug",
            "--json",
        ],
    )
    assert json.loads(one.stdout)["entities"][0]["type"] == "OTHER"


def test_cli_train_with_a_missing_kg_file_fails_before_training(tmp_path):
    (tmp_path / "d.txt").write_text("IMGID:1\nChelsea\tB-PER\n\n")
    (tmp_path / "m.toml").write_text('[model]\nchannels = ["text", "knowledge"]\nfusion = true\n')
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--train",
            str(tmp_path / "d.txt"),
            "--dev",
            str(tmp_path / "d.txt"),
            "--out",
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "m.toml"),
            "--kg",
            str(tmp_path / "gone.sqlite"),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'gone.sqlite'}: KG file not found\n"
    assert not (tmp_path / "out").exists()
