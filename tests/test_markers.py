"""Issue #23: a mention or hashtag written as two tokens (`@` `name`, Twitter-2017) or as one (`@name`,
Twitter-2015) reaches a model the same way; tags and spans stay on the input's own tokens."""

from __future__ import annotations

import dataclasses

import pytest

from mner.data import spans_from_tags
from mner.inputs.markers import MARKERS, join, join_tags, split
from mner.labels import read_gold
from mner.runtime.runners import load_runner
from mner.serving.pipeline import Pipeline
from tests.conftest import TWITTER2017, needs_twitter2017


def _names(result) -> list[tuple[str, str]]:
    """(type, name without its @/#) of each entity of a tagged post."""
    return [(e.type, e.text.lstrip("@#").strip()) for e in result.entities]


@pytest.mark.parametrize(
    ("apart", "joined"),
    [
        (
            "RT @ jehnnybgoode : Kobe Bryant lands in Paris # NBA",
            "RT @jehnnybgoode : Kobe Bryant lands in Paris #NBA",
        ),
        ("Go # Raiders ! @ Oakland tonight", "Go #Raiders ! @Oakland tonight"),
    ],
)
def test_both_spellings_give_the_same_entities_on_their_own_tokens(apart, joined):
    pipeline = Pipeline("text", threads=1)
    a, b = pipeline.tag(apart), pipeline.tag(joined)
    assert _names(a) == _names(b) and a.entities
    for result, text in ((a, apart), (b, joined)):
        assert (
            result.tokens == tuple(text.split()) or list(result.tokens) == text.split()
        )  # the input's tokens
        for e in result.entities:
            assert text[e.start_char : e.end_char] == e.text  # characters of the text as given
            assert " ".join(result.tokens[e.start : e.end]) == e.text


@pytest.mark.slow
@needs_twitter2017
def test_twitter2017_test_gives_the_same_entities_written_apart_and_joined():
    posts = read_gold(TWITTER2017 / "test.txt")
    assert sum(len(spans_from_tags(p.tags)) for p in posts) == 1351  # scored on the file's own tokens
    runner = load_runner("text", "onnx", 1)
    joined, groups = [], []
    for p in posts:
        tokens, found = join(p.tokens)
        groups.append(found)
        joined.append(dataclasses.replace(p, tokens=tokens, tags=join_tags(p.tags, found)))
    assert sum(len(g) == 2 for found in groups for g in found) > 400  # the file writes markers apart
    apart_tags = runner.predict_tags(posts)
    back = [
        split(t, g, len(p.tokens)) for t, g, p in zip(runner.predict_tags(joined), groups, posts, strict=True)
    ]
    assert apart_tags == back
    after_marker = [
        s
        for p, t in zip(posts, apart_tags, strict=True)
        for s in spans_from_tags(t)
        if p.tokens[s.start - 1 : s.start] and p.tokens[s.start - 1] in MARKERS
    ]
    assert after_marker  # entities after a lone marker are found in the file's spelling
