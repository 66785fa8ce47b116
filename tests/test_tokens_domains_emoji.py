"""Raw text keeps domain-like names whole (``Crypto.com Arena`` is not ``Crypto . com Arena``), and an emoji is
never part of an entity, whatever the model's emissions say (``Paris 😍`` gives ``Paris``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mner.decoding import CrfScores, is_emoji, never_entity, viterbi
from mner.tokenizer import tokenize, tokenize_with_offsets


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Lakers win at Crypto.com Arena", ["Lakers", "win", "at", "Crypto.com", "Arena"]),
        ("BOOKING.COM and Booking.Com", ["BOOKING.COM", "and", "Booking.Com"]),
        ("shop at amazon.co.uk today", ["shop", "at", "amazon.co.uk", "today"]),
        ("T-Mobile.com deals", ["T-Mobile.com", "deals"]),
        ("read bit.ly/3xYz now", ["read", "bit.ly/3xYz", "now"]),
        ("visit example.com.", ["visit", "example.com", "."]),
        ("Crypto.com's arena", ["Crypto.com", "'", "s", "arena"]),
        ("José.com", ["José.com"]),
        # not domains: a missing space before a common word, initials, a decimal number, an e-mail's @name
        ("Paris.It was great", ["Paris", ".", "It", "was", "great"]),
        ("the U.S. Open", ["the", "U", ".", "S", ".", "Open"]),
        ("home.in the morning", ["home", ".", "in", "the", "morning"]),
        ("won 2.5 points", ["won", "2", ".", "5", "points"]),
        ("https://www.crypto.com/arena now", ["https://www.crypto.com/arena", "now"]),
    ],
)
def test_domain_like_names_stay_whole(text, tokens):
    assert tokenize(text) == tokens


def test_a_domain_tokens_offsets_are_its_characters():
    text = "Lakers at  Crypto.com Arena"
    tokens, offsets = tokenize_with_offsets(text)
    assert [text[s:e] for s, e in offsets] == tokens == ["Lakers", "at", "Crypto.com", "Arena"]


@pytest.mark.parametrize(
    ("token", "emoji"),
    [("😍", True), ("👍🏽", True), ("🇫🇷", True), ("👨\u200d👩\u200d👧", True), ("❤️", True), ("😍😍", True)],
)
def test_emoji_tokens(token, emoji):
    assert is_emoji(token) is emoji


@pytest.mark.parametrize("token", ["Paris", "#😍", "@paris", "1", "#", "*", "️", "Paris😍", ""])
def test_not_emoji_tokens(token):
    assert is_emoji(token) is False


TAGS = ["O", "B-LOC", "I-LOC"]


def test_never_entity_forbids_every_tag_but_o_at_an_emoji_and_leaves_the_rest():
    emissions = np.array([[[0.0, 5.0, 0.0], [0.0, 0.0, 9.0], [1.0, 2.0, 3.0]]], dtype=np.float32)
    scores = CrfScores(np.zeros(3), np.zeros(3), np.zeros((3, 3))).constrained(TAGS)
    assert viterbi(emissions, np.ones((1, 3), dtype=bool), scores) == [[1, 2, 2]]  # "Paris 😍 x" swallowed
    out = never_entity(emissions, [["Paris", "😍", "x"]], TAGS)
    assert viterbi(out, np.ones((1, 3), dtype=bool), scores) == [[1, 0, 1]]  # "Paris", then "x" begins anew
    assert np.array_equal(out[0, [0, 2]], emissions[0, [0, 2]]) and out[0, 1, 0] == emissions[0, 1, 0]
    assert never_entity(emissions, [["Paris", "is", "x"]], TAGS) is emissions  # nothing to change


SWALLOWED = "".join(
    f"IMGID:{i}\n{city}\tB-LOC\n😍\tI-LOC\n\nIMGID:{i}b\nflying\tO\nto\tO\n{city}\tB-LOC\n\n"
    for i, city in enumerate(["Paris", "London", "Berlin", "Rome", "Madrid", "Vienna"])
)
CONFIG = """[model]
hidden = 16
char_dim = 8
char_filters = 8
dropout = 0.0
[train]
epochs = 40
lr = 0.03
batch_size = 4
min_word_count = 1
progress = false
"""


def test_a_tiny_model_taught_to_swallow_a_trailing_emoji_still_tags_the_name_alone(tmp_path):
    """Trained on "Paris 😍" as one LOC, a model's emissions put the emoji inside the entity; decoding keeps it
    out, on PyTorch and on ONNX Runtime alike, and the name keeps its type."""
    from mner.cli import app
    from mner.data import Post
    from mner.model.torch_model import load_torch_model

    runner = CliRunner()
    (tmp_path / "train.txt").write_text(SWALLOWED)
    (tmp_path / "c.toml").write_text(CONFIG)
    args = ["train", "--train", str(tmp_path / "train.txt"), "--dev", str(tmp_path / "train.txt")]
    trained = runner.invoke(app, [*args, "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "m")])
    assert trained.exit_code == 0, trained.output

    model = load_torch_model(tmp_path / "m")
    post = Post(("Paris", "😍"))
    batch = model.batches.build([post])
    raw = model.emissions(batch)[0]
    assert raw[1].argmax() == model.config.tags.index(
        "I-LOC"
    )  # what it learned: the emoji continues the name
    for runtime in ("torch", "onnx"):
        out = runner.invoke(
            app,
            ["predict", "--model", str(tmp_path / "m"), "--text", "Paris 😍", "--json", "--runtime", runtime],
        )
        assert out.exit_code == 0, out.output
        entities = json.loads(out.stdout)["entities"]
        assert [(e["text"], e["type"], e["start"], e["end"]) for e in entities] == [("Paris", "LOC", 0, 1)], (
            runtime
        )
