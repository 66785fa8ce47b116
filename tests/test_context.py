"""The context channel: free text per post (an LLM's notes), its entity list, the list aligned to the post, and
a model that reads it as text or aligned, with and without context at tagging time."""

import json

import pytest
import torch
from typer.testing import CliRunner

from mner.channels.context import (
    ALIGN_TAGS,
    NO_CONTEXT,
    align,
    alignment_ids,
    compact,
    entity_type,
)
from mner.channels.entities import read_entities
from mner.channels.sources import ChannelSources
from mner.cli import app
from mner.config import ModelConfig
from mner.data import MnerInputError, Post, read_keyed_tsv
from mner.model.torch_model import load_torch_model
from mner.training.runconfig import RunConfig, TrainConfig
from mner.training.trainer import Trainer, train
from tests.conftest import TWITTER2015, needs_twitter2015

LLM = (
    "Named entities:1. Bears (sports team)2. Chicago (city)3. Jay Cutler (person/player)4. 2015 (year)"
    "Reasoning:The sentence mentions the Bears, a team from Chicago (2. not a list item)."
)
SMALL = {"hidden": 24, "char_dim": 8, "char_filters": 8, "dropout": 0.0}


def test_the_entity_list_is_read_and_its_kinds_mapped():
    assert read_entities(LLM) == [
        ("Bears", "sports team"),
        ("Chicago", "city"),
        ("Jay Cutler", "person/player"),
        ("2015", "year"),
    ]
    assert [entity_type(kind) for _, kind in read_entities(LLM)] == ["ORG", "LOC", "PER", None]
    assert (
        compact(LLM)
        == "Bears ( sports team ) ; Chicago ( city ) ; Jay Cutler ( person/player ) ; 2015 ( year )"
    )
    assert read_entities("no list here") == [] and compact("no list here") == "no list here"
    assert read_entities(None) == [] and compact(None) is None


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("person/handle", "PER"),
        ("handle/organization", "ORG"),
        ("brand/company", "ORG"),
        ("tv show", "OTHER"),
        ("geographic location", "LOC"),
        ("news organization", "ORG"),
        ("hashtag", None),
        ("date", None),
        ("event/competition", "OTHER"),
        ("location/country", "LOC"),
        ("Sports Teams", "ORG"),
    ],
)
def test_llm_kinds_map_to_the_four_types(kind, expected):
    assert entity_type(kind) == expected


def test_alignment_finds_whole_tokens_hashtags_and_handles():
    tokens = ["RT", "@JayCutler", ":", "#Bears", "win", "in", "Chicago", "again", "2015"]
    assert align(tokens, read_entities(LLM)) == ["O", "B-PER", "O", "B-ORG", "O", "O", "B-LOC", "O", "B-UNK"]
    # longer names first, no overlap, a name must cover whole tokens
    assert align(["New", "York", "Knicks", "York"], [("New York", "city"), ("New York Knicks", "team")]) == [
        "B-ORG",
        "I-ORG",
        "I-ORG",
        "O",
    ]
    assert align(["Chicagoland"], [("Chicago", "city")]) == ["O"]
    assert alignment_ids(["Chicago", "rocks"], None) == [NO_CONTEXT, NO_CONTEXT]
    assert alignment_ids(["Chicago", "rocks"], LLM) == [
        1 + ALIGN_TAGS.index("B-LOC"),
        1 + ALIGN_TAGS.index("O"),
    ]


def test_context_files_are_keyed_by_image_id_or_post_id(tmp_path):
    (tmp_path / "a.tsv").write_text(
        "image_id\tknowledge\n11\tabout eleven\n12\tabout\ttwelve\n", encoding="utf-8"
    )
    assert read_keyed_tsv(tmp_path / "a.tsv", ("image_id", "id")) == (
        {"11": "about eleven", "12": "about twelve"},
        "image_id",
    )
    (tmp_path / "b.tsv").write_text("id\ttext\np1\tsomething\n", encoding="utf-8")
    assert read_keyed_tsv(tmp_path / "b.tsv", ("image_id", "id")) == ({"p1": "something"}, "id")
    for content, message in [
        (
            "post\ttext\n",
            "c.tsv:1: expected a header 'image_id<TAB>text' or 'id<TAB>text', got 'post\\ttext'",
        ),
        ("id\ttext\np1 no tab\n", "c.tsv:2: expected 'id<TAB>text', got no tab"),
        ("id\ttext\np1\ta\np1\tb\n", "c.tsv:3: id 'p1' is given twice (first on an earlier line)"),
        ("", "c.tsv: file is empty: expected a header 'image_id<TAB>text' or 'id<TAB>text'"),
    ]:
        (tmp_path / "c.tsv").write_text(content, encoding="utf-8")
        with pytest.raises(MnerInputError) as err:
            read_keyed_tsv(tmp_path / "c.tsv", ("image_id", "id"))
        assert str(err.value) == message


def test_filling_takes_the_posts_own_context_first_and_reports_what_is_missing():
    posts = [
        Post(("a",), id="p1", image="1"),
        Post(("b",), id="p2", image="2"),
        Post(("c",), id="p3", image="3", context="its own"),
    ]
    by_image = ChannelSources(texts={"context": {"1": "one", "3": "three"}}, keys={"context": "image_id"})
    filled = by_image.fill(posts, ["text", "context"])
    assert [p.context for p in filled.posts] == ["one", None, "its own"]
    assert filled.report.summary() == "3 posts, 2 with context matched by image_id (1 without one)"
    assert filled.report.absent(["text", "context"]) == {"context": 1}
    by_id = ChannelSources(texts={"context": {"p2": "two"}}, keys={"context": "id"}).fill(
        posts, ["text", "context"]
    )
    assert [p.context for p in by_id.posts] == [None, "two", "its own"]
    with pytest.raises(MnerInputError, match="enables the 'context' channel: pass --context-file FILE"):
        ChannelSources().require(["text", "context"])


def test_context_configs_are_checked():
    with pytest.raises(ValueError, match=r"channel\(s\) \['context'\] need fusion = true"):
        ModelConfig(tags=[], words=[], chars=[], channels=["text", "context"])
    with pytest.raises(
        ValueError, match=r"\[model.context\] reads the 'context' channel: add it to channels"
    ):
        ModelConfig(tags=[], words=[], chars=[], context={"alignment": True})
    with pytest.raises(ValueError, match=r"context form 'summary': expected one of \['full', 'entities'\]"):
        ModelConfig(
            tags=[],
            words=[],
            chars=[],
            channels=["text", "context"],
            words_after_post=True,
            context={"form": "summary"},
        )
    ModelConfig(
        tags=[], words=[], chars=[], channels=["text", "context"], context={"alignment": True}
    )  # no fusion needed
    with pytest.raises(ValueError, match=r"context_dropout 1.0: expected a fraction in \[0, 1\)"):
        TrainConfig(context_dropout=1.0)


# The same words are a person or a team depending only on what the context says.
POSTS = [
    Post(
        ("Bears", "won", "again"),
        id="1",
        tags=("B-ORG", "O", "O"),
        context="Named entities:1. Bears (sports team)",
    ),
    Post(
        ("Bears", "won", "again"),
        id="2",
        tags=("B-PER", "O", "O"),
        context="Named entities:1. Bears (person)",
    ),
    Post(
        ("Bears", "won", "again"),
        id="3",
        tags=("B-ORG", "O", "O"),
        context="Named entities:1. Bears (company)",
    ),
    Post(
        ("Bears", "won", "again"),
        id="4",
        tags=("B-PER", "O", "O"),
        context="Named entities:1. Bears (person/player)",
    ),
]


def fit(epochs=60, lr=0.02, dropout=0.0, **model):
    torch.manual_seed(0)
    run = RunConfig(
        {**SMALL, "channels": ["text", "context"], **model},
        TrainConfig(
            epochs=epochs,
            lr=lr,
            batch_size=4,
            patience=epochs,
            min_word_count=1,
            progress=False,
            seed=2,
            context_dropout=dropout,
        ),
    )
    return train(POSTS, POSTS, run)[0]


@pytest.mark.parametrize(
    "model",
    [
        {"context": {"alignment": True}},
        # the BiLSTM carries the context back to "Bears" across the separator: slower than the aligned feature
        {"words_after_post": True, "context": {"form": "entities"}, "epochs": 120, "lr": 0.01},
    ],
    ids=["aligned", "as-text"],
)
def test_the_context_decides_what_the_text_cannot(model, tmp_path):
    tagger = fit(**model)
    assert tagger.predict_tags(POSTS) == [list(p.tags) for p in POSTS]
    without = tagger.predict_tags([Post(p.tokens) for p in POSTS])  # no context: still tagged, one answer
    assert len({tuple(t) for t in without}) == 1 and len(without[0]) == 3
    loaded = load_torch_model(tagger.save(tmp_path / "m"))
    assert loaded.predict_tags(POSTS) == tagger.predict_tags(POSTS)
    card = (tmp_path / "m" / "README.md").read_text(encoding="utf-8")
    assert "- Channel context: the post's context text, else the context file's" in card


def test_context_dropout_hides_the_context_of_that_share_of_posts():
    run = RunConfig(
        {**SMALL, "channels": ["text", "context"], "context": {"alignment": True}},
        TrainConfig(epochs=1, batch_size=4, min_word_count=1, progress=False, context_dropout=0.5),
    )
    trainer = Trainer(POSTS * 50, POSTS, run)
    seen = [p.context is None for p in map(trainer._without_context, POSTS * 50)]
    assert 0.35 < sum(seen) / len(seen) < 0.65
    assert all(p.context is not None for p in POSTS)  # the posts themselves are untouched


def test_cli_trains_evaluates_predicts_and_tags_with_context(tmp_path):
    conll = "".join(
        f"IMGID:{p.id}\n" + "".join(f"{t}\t{g}\n" for t, g in zip(p.tokens, p.tags, strict=True)) + "\n"
        for p in POSTS
    )
    (tmp_path / "d.txt").write_text(conll, encoding="utf-8")
    (tmp_path / "c.tsv").write_text(
        "image_id\tknowledge\n" + "".join(f"{p.id}\t{p.context}\n" for p in POSTS[:3]), encoding="utf-8"
    )
    (tmp_path / "m.toml").write_text(
        '[model]\nchannels = ["text", "context"]\nhidden = 24\n'
        "dropout = 0.0\n[model.context]\nalignment = true\n[train]\nepochs = 60\nlr = 0.02\nbatch_size = 4\n"
        "min_word_count = 1\nprogress = false\npatience = 60\n",
        encoding="utf-8",
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
    assert missing.exit_code == 2 and "pass --context-file FILE" in missing.stderr
    result = runner.invoke(app, [*args, "--context-file", str(tmp_path / "c.tsv")])
    assert result.exit_code == 0, result.output
    assert "train: 4 posts, 3 with context matched by image_id (1 without one)" in result.stderr
    record = json.loads((tmp_path / "out" / "config.json").read_text(encoding="utf-8"))
    assert (
        record["model"]["channels"] == ["text", "context"] and record["model"]["context"]["alignment"] is True
    )
    scored = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tmp_path / "out"),
            "--data",
            str(tmp_path / "d.txt"),
            "--context-file",
            str(tmp_path / "c.tsv"),
            "--json",
        ],
    )
    assert scored.exit_code == 0, scored.output
    assert (
        scored.stderr.splitlines()[-1]
        == "warning: the model was trained with 'context', absent for 1 of 4 posts (tagged without it)"
    )
    one = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(tmp_path / "out"),
            "--text",
            "Bears won again",
            "--context",
            POSTS[1].context,
            "--json",
        ],
    )
    out = json.loads(one.stdout)
    assert out["entities"][0]["type"] == "PER" and out["context"] == POSTS[1].context
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"id": "x", "text": "Bears won again", "context": POSTS[0].context})
        + "\n"
        + json.dumps({"id": "2", "text": "Bears won again"})
        + "\n",
        encoding="utf-8",
    )
    tsv = tmp_path / "by-id.tsv"
    tsv.write_text(f"id\ttext\n2\t{POSTS[1].context}\n", encoding="utf-8")
    tagged = runner.invoke(
        app,
        [
            "tag",
            "--model",
            str(tmp_path / "out"),
            "--in",
            str(tmp_path / "in.jsonl"),
            "--out",
            str(tmp_path / "out.jsonl"),
            "--context-file",
            str(tsv),
        ],
    )
    assert tagged.exit_code == 0, tagged.output
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["entities"][0]["type"], r["context"]) for r in records] == [
        ("x", "ORG", POSTS[0].context),
        ("2", "PER", POSTS[1].context),
    ]


@needs_twitter2015
@pytest.mark.slow
def test_the_llm_knowledge_covers_twitter2015_and_its_list_scores_as_a_tagger():
    from mner.data import read_conll
    from mner.evaluate import entity_scores

    sources = ChannelSources.open({"context": TWITTER2015 / "llm_knowledge.tsv"})
    filled = sources.fill(read_conll(TWITTER2015 / "test.txt"), ["text", "context"])
    assert filled.report.summary() == "3257 posts, 3256 with context matched by image_id (1 without one)"
    predicted = [
        [t if not t.endswith("-UNK") else "O" for t in align(p.tokens, read_entities(p.context))]
        for p in filled.posts
    ]
    scores = entity_scores([list(p.tags) for p in filled.posts], predicted)
    assert (
        0.60 < scores.f1 < 0.67
    )  # the LLM's list alone, exact spans and mapped kinds: a floor, not a tagger


def test_alignment_does_not_depend_on_the_process():
    """Two names of one length that overlap: the LLM's order decides, in every process (hash seeds differ)."""
    import subprocess
    import sys

    code = (
        "from mner.channels.context import align; "
        "print(align(['New', 'York', 'City'], [('York City', 'city'), ('New York', 'state')]))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout
        for seed in range(6)
    }
    assert outputs == {"['O', 'B-LOC', 'I-LOC']\n"}


def test_a_context_that_lists_nothing_readable_is_reported_and_tagged_as_without_context(tmp_path):
    """Issue #22 item 1: evaluate and tag count such posts, predict and the service warn, and the post is tagged
    as one without context (its alignment feature is that of no context)."""
    from mner.serving.pipeline import Pipeline
    from mner.serving.service import create_app
    from tests.serving import running_server

    prose = "Reasoning: the post is about a football game in the rain."
    assert alignment_ids(("Bears", "win"), prose) == [NO_CONTEXT, NO_CONTEXT]
    model = fit(epochs=2, context={"alignment": True}).save(tmp_path / "m")
    conll = "".join(
        f"IMGID:{p.id}\n" + "".join(f"{t}\t{g}\n" for t, g in zip(p.tokens, p.tags, strict=True)) + "\n"
        for p in POSTS
    )
    (tmp_path / "d.txt").write_text(conll, encoding="utf-8")
    (tmp_path / "c.tsv").write_text(
        f"image_id\ttext\n{POSTS[0].id}\t{POSTS[0].context}\n{POSTS[1].id}\t{prose}\n"
    )
    scored = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(model),
            "--data",
            str(tmp_path / "d.txt"),
            "--context-file",
            str(tmp_path / "c.tsv"),
        ],
    )
    assert scored.exit_code == 0, scored.output
    assert "1 whose context lists no entity that can be read (tagged without it)" in scored.stderr
    assert "the context of 1 of 4 posts lists no entity that can be read (tagged without it)" in scored.stderr
    one = CliRunner().invoke(
        app, ["predict", "--model", str(model), "--text", "Bears won", "--context", prose, "--json"]
    )
    assert json.loads(one.stdout)["warnings"] == [
        "the post's context lists no entity that can be read (tagged without it)"
    ]
    posts = tmp_path / "in.jsonl"
    posts.write_text(json.dumps({"id": "a", "text": "Bears won", "context": prose}) + "\n")
    tagged = CliRunner().invoke(
        app, ["tag", "--model", str(model), "--in", str(posts), "--out", str(tmp_path / "o.jsonl")]
    )
    assert "1 tagged with a warning (a context that lists no entity that can be read" in tagged.stderr
    assert json.loads((tmp_path / "o.jsonl").read_text())["warnings"] == [
        "the context lists no entity that can be read: tagged as a post without it"
    ]
    with running_server(create_app(Pipeline(model))) as base:
        answer = __import__("httpx").post(
            base + "/v1/tag", json={"text": "Bears won", "context": prose}, timeout=30
        )
    assert answer.json()["warnings"] == [
        "the context lists no entity that can be read: tagged as a post without it"
    ]
