"""Property-based tests (Hypothesis): the tokenizer, the JSONL and CoNLL readers and span decoding hold their
promises on any input, not only the cases someone thought of."""

from __future__ import annotations

import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mner.channels.posts import iter_jsonl_posts
from mner.data import (
    MnerInputError,
    Post,
    iter_conll,
    spans_from_tags,
    tags_from_spans,
    tokenize,
    tokenize_with_offsets,
)
from mner.serving.jobs import read_lines

# Text a tweet may hold: ASCII, accents (composed and combining), Devanagari, emoji with skin tones and ZWJ,
# flags (regional indicators), zero-width characters, URLs and handles, and any other code point.
PIECES = st.sampled_from(
    [
        "a",
        "Z",
        "é",
        "e\u0301",
        "n\u0303",
        "ü",
        "ß",
        "न",
        "\u094d",
        "\u0947",
        "ी",
        "😀",
        "👩",
        "\U0001f3fd",
        "\u200d",
        "\u200c",
        "\u200b",
        "🇩",
        "🇪",
        "#",
        "@",
        "-",
        "--",
        "...",
        "…",
        "&amp;",
        "http://t.co/x",
        ":",
        "'",
        " ",
        "  ",
        "\t",
        "\n",
        "\u00a0",
        "1",
        "_",
        "．",
        "＃",
    ]
)
TEXT = st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=30).map("".join))
SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def nfc(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFC", text)


INVISIBLE = regex.compile(r"[[\p{Cf}\p{Default_Ignorable_Code_Point}]--\s]", regex.V1)
CONTROL = regex.compile(r"[\p{Cc}--\s]", regex.V1)


def seen(text: str) -> str:
    """What a reader sees of a text: controls as spaces, format and default-ignorable characters left out, NFC."""
    return nfc(INVISIBLE.sub("", CONTROL.sub(" ", text)))


@SETTINGS
@given(TEXT)
def test_tokenizing_its_own_output_changes_nothing(text):
    tokens = tokenize(text)
    assert tokenize(" ".join(tokens)) == tokens


@SETTINGS
@given(TEXT)
def test_every_visible_character_is_kept_in_order_and_no_invisible_one_makes_a_token(text):
    tokens = tokenize(text)
    assert "".join(seen(t) for t in tokens) == regex.sub(r"\s+", "", seen(text))
    for token in tokens:
        assert token and not CONTROL.search(token) and not regex.search(r"\s", token)
        assert not INVISIBLE.match(token) and not token.endswith(("\u200c", "\u200d")), ascii(token)


@SETTINGS
@given(TEXT)
def test_offsets_index_the_text_as_given(text):
    tokens, offsets = tokenize_with_offsets(text)
    assert len(tokens) == len(offsets)
    covered = [False] * len(text)
    previous_end = 0
    for token, (start, end) in zip(tokens, offsets, strict=True):
        assert previous_end <= start < end <= len(text)
        assert seen(text[start:end]) == seen(token), (ascii(token), ascii(text[start:end]))
        assert (
            not INVISIBLE.match(text[start])
            and not INVISIBLE.match(text[end - 1])
            or text[start:end] == token
        )  # the span's edges are visible, but for characters kept in the token
        covered[start:end] = [True] * (end - start)
        previous_end = end
    lost = [c for c, kept in zip(text, covered, strict=True) if not kept and seen(c).strip()]
    assert not lost, ascii(lost)  # every character outside the tokens is a space or invisible


@SETTINGS
@given(TEXT)
def test_no_token_boundary_falls_inside_a_grapheme_cluster(text):
    normal = seen(text)
    boundaries = {len(normal)}
    for cluster in regex.finditer(r"\X", normal):
        boundaries.add(cluster.start())
        # a mark after a space belongs to the space's cluster: the token can only start after the space
        boundaries.add(cluster.start() + len(cluster.group()) - len(cluster.group().lstrip()))
    position = 0
    for token in tokenize(text):
        token = seen(token)
        start = normal.index(token, position)
        assert start in boundaries and start + len(token) in boundaries, (token, normal)
        position = start + len(token)


@SETTINGS
@given(
    st.binary(max_size=400),
    st.lists(
        st.sampled_from(
            [
                b"\n",
                b"\r\n",
                b"{",
                b"}",
                b'"text"',
                b":",
                b'"x"',
                b'"tokens"',
                b"[",
                b"]",
                b",",
                b"\xff",
                b"\xef\xbb\xbf",
            ]
        ),
        max_size=40,
    ).map(b"".join),
)
def test_any_bytes_in_jsonl_give_a_post_or_an_error_naming_the_line(tmp_path_factory, noise, shaped):
    path = tmp_path_factory.mktemp("jsonl") / "posts.jsonl"
    path.write_bytes(noise + b"\n" + shaped)
    for number, item in iter_jsonl_posts(path):
        assert isinstance(item, Post | MnerInputError)
        if isinstance(item, MnerInputError):
            assert str(item).startswith(f"posts.jsonl:{number}: ")
    for line in read_lines(path):  # what `mner tag` makes of it: a post to tag, or the line's error record
        assert (line.post is None) != (line.error is None)
        if line.error is not None:
            assert line.error.startswith(f"{path}:{line.number}: ")


@SETTINGS
@given(
    st.lists(
        st.sampled_from(
            [
                b"IMGID:1",
                b"IMGID:",
                b"Kobe\tB-PER",
                b"x\tO",
                b"x\tI-LOC",
                b"bad",
                b"a\tb\tc",
                b"\tO",
                b"x\tB-MISC",
                b"",
                b"\r",
                b"\xff\tO",
                b"y\tQ-PER",
            ]
        ),
        max_size=30,
    ),
    st.binary(max_size=50),
)
def test_any_bytes_in_conll_give_posts_or_one_error_naming_the_line(tmp_path_factory, lines, tail):
    path = tmp_path_factory.mktemp("conll") / "data.txt"
    path.write_bytes(b"\n".join(lines) + tail)
    try:
        posts = list(iter_conll(path))
    except MnerInputError as err:
        assert str(err).startswith("data.txt:")
    else:
        assert all(p.tokens and len(p.tokens) == len(p.tags) for p in posts)


TAGS = st.lists(
    st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-OTHER"]),
    max_size=40,
)


@SETTINGS
@given(TAGS)
def test_spans_are_disjoint_in_bounds_and_survive_a_round_trip(tags):
    spans = spans_from_tags(tags)
    previous_end = 0
    for span in spans:
        assert previous_end <= span.start < span.end <= len(tags)
        assert tags[span.start] != "O" and all(t[2:] == span.type for t in tags[span.start : span.end])
        previous_end = span.end
    rewritten = tags_from_spans(spans, len(tags))
    assert spans_from_tags(rewritten) == spans
    assert sum(t != "O" for t in rewritten) == sum(t != "O" for t in tags)  # no tagged token is lost


NAMES = st.sampled_from(
    ["Barack Obama", "Obama", "Paris", "Berlin", "Kobe Bryant", "Angela Merkel", "NASA", "José"]
)
POST_TEXT = st.lists(st.one_of(NAMES, PIECES, st.text(max_size=3)), min_size=1, max_size=20).map(" ".join)
_PIPELINE = []


def text_pipeline():
    from mner.serving.pipeline import Pipeline

    if not _PIPELINE:
        _PIPELINE.append(Pipeline("text"))
    return _PIPELINE[0]


@settings(max_examples=300, deadline=None)
@given(st.one_of(POST_TEXT, TEXT))
def test_every_entity_of_raw_text_is_the_text_s_own_characters_at_its_offsets(text):
    """An entity's surface (``Span.text``) is ``text[start_char:end_char]``, the exact characters sent, and they
    are its tokens' characters: what a reader sees of it, spaces aside, is what its tokens hold."""
    from mner.data import MnerInputError

    try:
        result = text_pipeline().tag(text)
    except MnerInputError:  # no token in the text: nothing to tag
        assert not tokenize(text)
        return
    _, offsets = tokenize_with_offsets(text)
    for span in result.entities:
        assert span.text == text[span.start_char : span.end_char]
        assert (span.start_char, span.end_char) == (offsets[span.start][0], offsets[span.end - 1][1])
        tokens = result.tokens[span.start : span.end]
        assert regex.sub(r"\s+", "", seen(span.text)) == "".join(seen(t) for t in tokens)
        assert 0.0 < span.score <= 1.0
