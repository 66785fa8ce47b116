"""Readers, writers and the tokenizer: round trips, real files, and exact error messages."""

import hashlib
import json
import unicodedata

import pytest
import regex

from mner.channels.posts import iter_jsonl_posts, post_to_json
from mner.data import (
    MnerInputError,
    Post,
    Span,
    read_conll,
    read_keyed_tsv,
    spans_from_tags,
    tags_from_spans,
    tokenize,
    tokenize_with_offsets,
    write_captions,
    write_conll,
    write_jsonl,
)
from tests.conftest import TWITTER2015, needs_twitter2015

EXPECTED_TAG = "expected 'O' or 'B-TYPE'/'I-TYPE' (BIO; IOB1 and BIOES/BILOU tags are read too)"
GOOD = "IMGID:11\nKobe\tB-PER\nBryant\tI-PER\nrules\tO\n\nIMGID:12\nNew\tB-LOC\nYork\tI-LOC\n"


def write(tmp_path, text, name="data.txt", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_conll_reads_posts_and_round_trips(tmp_path):
    posts = read_conll(write(tmp_path, GOOD))
    assert [p.tokens for p in posts] == [("Kobe", "Bryant", "rules"), ("New", "York")]
    assert [p.image for p in posts] == ["11", "12"]
    assert posts[0].tags == ("B-PER", "I-PER", "O")
    out = tmp_path / "out.txt"
    write_conll(posts, out)
    assert read_conll(out) == posts


def test_conll_accepts_crlf_bom_and_missing_final_blank(tmp_path):
    text = "\ufeff" + GOOD.replace("\n", "\r\n").rstrip()
    assert [p.tokens for p in read_conll(write(tmp_path, text))] == [
        ("Kobe", "Bryant", "rules"),
        ("New", "York"),
    ]


def test_conll_keeps_tags_as_written(tmp_path):
    posts = read_conll(write(tmp_path, "IMGID:1\nWorld\tB-MISC\nCup\tE-MISC\nSeattle\tS-geo-loc\n"))
    assert posts[0].tags == ("B-MISC", "E-MISC", "S-geo-loc")  # mner.labels.read_gold reads them as BIO


def test_conll_without_imgid_lines(tmp_path):
    posts = read_conll(write(tmp_path, "a\tO\nParis\tB-LOC\n\nb\tO\n"))
    assert [p.tokens for p in posts] == [("a", "Paris"), ("b",)]
    assert posts[0].image is None


@pytest.mark.parametrize(
    "text,message",
    [
        ("IMGID:1\nKobe\n", "data.txt:2: expected 'token<TAB>tag', got 1 field"),
        ("IMGID:1\nKobe\tB-PER\textra\n", "data.txt:2: expected 'token<TAB>tag', got 3 fields"),
        ("IMGID:1\nx\tO\nKobe\tQ-PER\n", "data.txt:3: tag 'Q-PER' fits no tagging scheme: " + EXPECTED_TAG),
        ("IMGID:1\nKobe\tB-\n", "data.txt:2: tag 'B-' fits no tagging scheme: " + EXPECTED_TAG),
        ("IMGID:1\nKobe\tPER\n", "data.txt:2: tag 'PER' fits no tagging scheme: " + EXPECTED_TAG),
        ("IMGID:1\n\nIMGID:2\nx\tO\n", "data.txt:1: IMGID:1 has no tokens after it"),
        ("IMGID:1\nx\tO\n\nIMGID:2\n", "data.txt:4: IMGID:2 has no tokens after it"),
        ("IMGID:\nx\tO\n", "data.txt:1: expected 'IMGID:<id>', got an empty id"),
        ("\tO\n", "data.txt:1: expected 'token<TAB>tag', got an empty token"),
        ("", "data.txt: file is empty: expected CoNLL posts ('IMGID:<id>' then 'token<TAB>tag' lines)"),
        ("\n\n", "data.txt: file is empty: expected CoNLL posts ('IMGID:<id>' then 'token<TAB>tag' lines)"),
    ],
)
def test_conll_errors_name_file_line_and_expectation(tmp_path, text, message):
    with pytest.raises(MnerInputError) as err:
        read_conll(write(tmp_path, text))
    assert str(err.value) == message


def test_conll_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "IMGID:1\nx\tO\nM\xfcnchen\tB-LOC\n".encode("latin-1"))
    with pytest.raises(MnerInputError, match=r"^data.txt:3: not UTF-8 \(byte 0xfc at column 2\)$"):
        read_conll(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(MnerInputError, match="^nope.txt: file not found$"):
        read_conll(tmp_path / "nope.txt")


def test_captions_round_trip_and_errors(tmp_path):
    captions = {"11": "a man holding a ball", "12": "a city\tat night"}
    path = tmp_path / "captions.tsv"
    write_captions(captions, path)
    assert read_keyed_tsv(path, ("image_id",), "caption")[0] == {
        "11": "a man holding a ball",
        "12": "a city at night",
    }
    with pytest.raises(
        MnerInputError, match=r"^c.tsv:1: expected the header 'image_id<TAB>caption', got '11\\ta'$"
    ):
        read_keyed_tsv(write(tmp_path, "11\ta\n", "c.tsv"), ("image_id",), "caption")[0]
    with pytest.raises(MnerInputError, match=r"^c.tsv:3: expected 'image_id<TAB>caption', got no tab$"):
        read_keyed_tsv(
            write(tmp_path, "image_id\tcaption\n1\tok\nbroken\n", "c.tsv"), ("image_id",), "caption"
        )[0]


def test_jsonl_posts_good_and_bad_lines(tmp_path):
    lines = [
        json.dumps({"id": "a", "text": "Kobe Bryant in LA", "image": "a.jpg"}),
        json.dumps({"id": "b", "tokens": ["New", "York"], "caption": "a city"}),
        "{not json",
        json.dumps({"id": "c"}),
        json.dumps({"id": "d", "text": "   "}),
        json.dumps(["a list"]),
        "",
        json.dumps({"text": "no id here"}),
    ]
    results = list(iter_jsonl_posts(write(tmp_path, "\n".join(lines), "posts.jsonl")))
    assert [n for n, _ in results] == [1, 2, 3, 4, 5, 6, 8]
    good = {n: r for n, r in results if isinstance(r, Post)}
    bad = {n: str(r) for n, r in results if isinstance(r, MnerInputError)}
    assert good[1].tokens == ("Kobe", "Bryant", "in", "LA") and good[1].image == "a.jpg"
    assert good[2].caption == "a city" and good[8].id == "posts-8"
    assert bad == {
        3: "posts.jsonl:3: not JSON (Expecting property name enclosed in double quotes at column 2)",
        4: "posts.jsonl:4: expected 'text' (a string) or 'tokens' (a list of strings)",
        5: "posts.jsonl:5: the post is empty: 'text' has no tokens",
        6: "posts.jsonl:6: expected a JSON object, got list",
    }


def test_jsonl_output_shape(tmp_path):
    post = Post(("Kobe", "Bryant", "rules"), id="x", extra={"text": "Kobe Bryant rules"})
    obj = post_to_json(post, [Span(0, 2, "PER", "Kobe Bryant", 0.75, 0, 11)])
    assert obj == {
        "id": "x",
        "text": "Kobe Bryant rules",
        "tokens": ["Kobe", "Bryant", "rules"],
        "entities": [
            {
                "start": 0,
                "end": 2,
                "type": "PER",
                "text": "Kobe Bryant",
                "score": 0.75,
                "start_char": 0,
                "end_char": 11,
            }
        ],
    }
    gold = post_to_json(post, [Span(0, 2, "PER", "Kobe Bryant")])["entities"][0]
    assert gold == {"start": 0, "end": 2, "type": "PER", "text": "Kobe Bryant", "score": None} | {
        "start_char": None,
        "end_char": None,
    }  # the same keys always; a gold span has no score, a post given as tokens no characters
    write_jsonl([obj], tmp_path / "o.jsonl")
    assert json.loads((tmp_path / "o.jsonl").read_text(encoding="utf-8")) == obj


@pytest.mark.parametrize(
    "text,tokens",
    [
        (
            "RT @JayKenMinaj: Me outside of where George Zimmerman got shot at.",
            [
                "RT",
                "@JayKenMinaj",
                ":",
                "Me",
                "outside",
                "of",
                "where",
                "George",
                "Zimmerman",
                "got",
                "shot",
                "at",
                ".",
            ],
        ),
        (
            "Loving #NewYork!! http://t.co/Z3neVBQ7vF",
            ["Loving", "#NewYork", "!", "!", "http://t.co/Z3neVBQ7vF"],
        ),
        (
            "I've a record-breaking day... 🙌🏽 wow &amp fun",
            ["I", "'", "ve", "a", "record-breaking", "day", "...", "🙌🏽", "wow", "&amp", "fun"],
        ),
        ("family 👨‍👩‍👧 time", ["family", "👨‍👩‍👧", "time"]),
        ("@ThisKid_Erik (Tower Bridge)", ["@ThisKid_Erik", "(", "Tower", "Bridge", ")"]),
        ("", []),
    ],
)
def test_tokenizer_splits_like_twitter2015(text, tokens):
    assert tokenize(text) == tokens


def test_decomposed_accents_scripts_flags_and_joiners_stay_inside_their_tokens():
    """Issue #16's reproductions: NFD text, Devanagari, flags and zero-width joiners are never split."""
    nfd = unicodedata.normalize("NFD", "José Mourinho arrives in München")
    assert nfd != "José Mourinho arrives in München"  # really decomposed
    assert tokenize(nfd) == ["José", "Mourinho", "arrives", "in", "München"]  # composed (NFC) tokens
    assert tokenize(unicodedata.normalize("NFD", "Besançon")) == ["Besançon"]
    assert tokenize("नरेंद्र मोदी") == ["नरेंद्र", "मोदी"]
    assert tokenize("Go 🇩🇪 Germany") == ["Go", "🇩🇪", "Germany"]
    assert tokenize("a\u200db") == ["a\u200db"]


def test_the_text_model_tags_decomposed_names_whole():
    from mner.serving.pipeline import Pipeline

    nfd = unicodedata.normalize("NFD", "José Mourinho arrives in München")
    result = Pipeline("text").tag(nfd)
    assert [(result.tokens[e.start : e.end], e.type) for e in result.entities] == [
        (("José", "Mourinho"), "PER"),  # composed (NFC) tokens
        (("München",), "LOC"),
    ]
    # each entity's text is the post's own characters, decomposed as they were sent
    assert (
        [e.text for e in result.entities]
        == [nfd[0:14], nfd[-8:]]
        == [
            unicodedata.normalize("NFD", "José Mourinho"),
            unicodedata.normalize("NFD", "München"),
        ]
    )


# SHA-256 over the JSON token lists of every Twitter-2015 post (train, valid, test, in file order) tokenized from
# its tokens joined by spaces, as the tokenizer before issue #16 (commit 970bf49^) split them, but for the one post
# with an invisible character: its left-to-right mark (test.txt, "#\u200edarmageddon") is dropped, no longer a
# token of its own (issue #25, item 22). The grapheme-aware tokenizer must split every other post exactly as that one did.
TWITTER2015_TOKENS_SHA256 = "1f904019031c3cb142f9a3b4eae87a6e4fe2fc124d6a152e4a2ebd8bad81159a"


@pytest.mark.slow
@needs_twitter2015
def test_every_twitter2015_post_tokenizes_as_it_did_before_the_grapheme_tokenizer():
    digest, same = hashlib.sha256(), 0
    for split in ("train", "valid", "test"):
        for post in read_conll(TWITTER2015 / f"{split}.txt"):
            tokens = tokenize(" ".join(post.tokens))
            digest.update(json.dumps(tokens).encode("utf-8") + b"\n")
            same += tokens == list(post.tokens)
    assert digest.hexdigest() == TWITTER2015_TOKENS_SHA256
    # the rest hold the files' own splits of raw text ("//t", "co/w7rk…"; "development.") that no tokenizer redoes
    assert same == 7674
    assert tokenize("#\u200edarmageddon") == ["#darmageddon"]  # before: "#", "\u200e", "darmageddon"


def test_spans_follow_conlleval_rules():
    tags = ["I-PER", "I-PER", "O", "B-LOC", "I-ORG", "B-ORG", "B-ORG", "I-ORG"]
    spans = spans_from_tags(tags, list("abcdefgh"))
    assert [(s.start, s.end, s.type) for s in spans] == [
        (0, 2, "PER"),
        (3, 4, "LOC"),
        (4, 5, "ORG"),
        (5, 6, "ORG"),
        (6, 8, "ORG"),
    ]
    assert spans[0].text == "a b"
    assert tags_from_spans(spans, 8) == ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-ORG", "B-ORG", "I-ORG"]


@pytest.mark.slow
@needs_twitter2015
def test_reads_the_real_twitter2015_files():
    counts = {name: len(read_conll(TWITTER2015 / f"{name}.txt")) for name in ("train", "valid", "test")}
    assert counts == {"train": 4000, "valid": 1000, "test": 3257}
    captions = read_keyed_tsv(TWITTER2015 / "image_captions.tsv", ("image_id",), "caption")[0]
    test_ids = {p.image for p in read_conll(TWITTER2015 / "test.txt")}
    assert test_ids <= set(captions)


def test_zero_width_nul_and_control_characters_are_never_tokens():
    """Issue #25, item 22: they became tokens and ended up inside entities ("Barack", "\\u200b", "Obama")."""
    from mner.serving.pipeline import Pipeline

    text = "Barack\u200b Obama\u200e visits\x00 Ber\u00adlin \u200d\ufeff today\x07 \u2060"
    tokens, offsets = tokenize_with_offsets(text)
    assert tokens == ["Barack", "Obama", "visits", "Berlin", "today"]
    assert [text[s:e] for s, e in offsets] == ["Barack", "Obama", "visits", "Ber\u00adlin", "today"]
    result = Pipeline("text").tag(text)
    assert [(result.tokens[e.start : e.end], e.type) for e in result.entities] == [
        (("Barack", "Obama"), "PER"),
        (("Berlin",), "LOC"),
    ]
    # an entity's text is the characters sent between its first and last token, as they were sent
    assert [e.text for e in result.entities] == ["Barack\u200b Obama", "Ber\u00adlin"]
    # what builds words and emoji stays: ZWNJ inside a Persian word, a ZWJ family, a variation selector
    assert tokenize("می\u200cخواهم 👨\u200d👩\u200d👧 ❤\ufe0f") == [
        "می\u200cخواهم",
        "👨\u200d👩\u200d👧",
        "❤\ufe0f",
    ]


def test_a_line_of_flags_is_clustered_without_the_quadratic_scan(monkeypatch):
    """Issue #25, item 4: the ``regex`` module's \\X scans each run of regional indicators back to its start, so
    a 400 KB line of flags took 18.9 s; the tokenizer never gives it such a run (benchmarks/bench_tokenizer.py
    times it), and flags still pair up."""
    import mner.tokenizer

    seen_by_cluster_rule = []
    real = mner.tokenizer._CLUSTER_RE

    class Recording:
        def finditer(self, text):
            seen_by_cluster_rule.append(text)
            return real.finditer(text)

    monkeypatch.setattr(mner.tokenizer, "_CLUSTER_RE", Recording())
    flags = "🇩🇪🇫🇷🇺🇸" * 1000 + "🇮"  # 3,000 flags and a lone indicator, no space
    tokens, offsets = tokenize_with_offsets(f"go {flags}!\u0301")
    assert tokens == ["go", *["🇩🇪", "🇫🇷", "🇺🇸"] * 1000, "🇮", "!\u0301"]
    assert offsets[1] == (3, 5) and offsets[-2] == (6003, 6004)
    assert seen_by_cluster_rule and not any(
        regex.search("[\U0001f1e6-\U0001f1ff]{2}", t) for t in seen_by_cluster_rule
    )


def test_json_nested_too_deep_is_refused_before_the_decoder_recurses(monkeypatch):
    """A RecursionError inside the C decoder can leave Python 3.11's recursion count askew (a later ``ast`` call then
    raises SystemError): deep nesting is refused by a linear scan, the decoder never sees it."""
    import json

    from mner import data

    calls = []
    loads = json.loads
    monkeypatch.setattr(data.json, "loads", lambda text: calls.append(len(text)) or loads(text))
    with pytest.raises(ValueError, match="not usable JSON: nested too deeply"):
        data.parse_json("[" * 100_000 + "]" * 100_000)
    assert calls == []
    deep_enough = "[" * data.MAX_JSON_DEPTH + "]" * data.MAX_JSON_DEPTH
    assert (
        data.parse_json(deep_enough) is not None and data.parse_json('["[[[[' + "[" * 600 + '"]') is not None
    )
