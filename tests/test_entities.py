"""The entity-list parser (mner.channels.entities): each form a context writer uses → the exact list; any text → a
list, fast, without raising."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mner.channels.entities import MAX_CHARS, prose_names, prose_text, read_entities

BEARS = [("Bears", "sports team"), ("Chicago", "city")]

CASES = {
    # the published numbered list, its spacing variants
    "published": (
        "Named entities:1. Bears (sports team)2. Chicago (city)Reasoning: The Bears play in Chicago.",
        BEARS,
    ),
    "spaced": ("Named entities: 1. Bears (sports team) 2. Chicago (city) Reasoning: The Bears ...", BEARS),
    "newlines": (
        "Named entities:\n1. Bears (sports team)\n2. Chicago (city)\n\nReasoning:\nThe Bears ...",
        BEARS,
    ),
    "no header": ("1. Bears (sports team)\n2. Chicago (city)", BEARS),
    "no header one line": ("1. Bears (sports team) 2. Chicago (city)", BEARS),
    "lower-cased": (
        "named entities:1. bears (sports team)2. chicago (city)reasoning: the bears",
        [("bears", "sports team"), ("chicago", "city")],
    ),
    "paren numbers": ("Named entities:1) Bears (sports team)2) Chicago (city)Reasoning: x", BEARS),
    "no space before bracket": ("Named entities:1. Bears(sports team)2. Chicago(city)", BEARS),
    "a number skipped": ("Named Entities: 1. Bears (sports team) 3. Chicago (city) Reasoning: x", BEARS),
    "items without kinds": (
        "Named entities: 1. Daily Cal (newspaper) 2. Police 3. Eshleman Hall (building) Reasoning: x",
        [("Daily Cal", "newspaper"), ("Police", None), ("Eshleman Hall", "building")],
    ),
    "commas between items": (
        "Named entities:1. Bears (team),2. Chicago (city)",
        [("Bears", "team"), ("Chicago", "city")],
    ),
    "alias in brackets": (
        "Named entities:1. Royal Mail (@royalmailnews) (company/handle)",
        [("Royal Mail", "company/handle")],
    ),
    "quoted name": (
        "Named entities:1. \"True Detective\" (TV show)2. 'Veep' (TV show)",
        [("True Detective", "TV show"), ("Veep", "TV show")],
    ),
    "abbreviation dots kept": (
        "Named entities:1. U.S. (location)2. Phil H. (person)",
        [("U.S.", "location"), ("Phil H.", "person")],
    ),
    "single unnumbered": (
        "Named entity: David Burnett (person) Reasoning: The only named entity ...",
        [("David Burnett", "person")],
    ),
    "none": ("Named entities: None. Reasoning: The sentence has no proper nouns.", []),
    "there are none": (
        "Named entities: There are no named entities mentioned in the sentence. Reasoning: x",
        [],
    ),
    # JSON
    "json array": ('[{"name": "Bears", "type": "sports team"}, {"name": "Chicago", "type": "city"}]', BEARS),
    "json other keys": (
        '[{"entity": "Bears", "kind": "sports team"}, {"text": "Chicago", "label": "city"}]',
        BEARS,
    ),
    "json under a key": (
        '{"entities": [{"name": "Bears", "type": "sports team"}, {"name": "Chicago", "type": "city"}]}',
        BEARS,
    ),
    "json under any key": (
        '{"result": {"named_entities": [{"Name": "Bears", "Type": "sports team"}, {"Name": "Chicago", "Type": "city"}]}}',
        BEARS,
    ),
    "json fenced": (
        'Here you go:\n```json\n[{"name": "Bears", "type": "sports team"},\n {"name": "Chicago", "type": "city"}]\n```\nReasoning: x',
        BEARS,
    ),
    "json strings": ('["Bears (sports team)", "Chicago (city)"]', BEARS),
    "json kind to names": ('{"sports team": ["Bears"], "city": ["Chicago"]}', BEARS),
    "json name to kind": ('{"Bears": "sports team", "Chicago": "city"}', BEARS),
    "json no kind": ('[{"name": "Bears"}]', [("Bears", None)]),
    "truncated json salvaged": (
        '[{"name": "Bears", "type": "sports team"}, {"name": "Chi',
        [("Bears", "sports team")],
    ),
    "json without entities": ('{"entities": []}', []),
    "json under entities key": ('{"entities": ["Bears (sports team)", "Chicago (city)"]}', BEARS),
    # one a line
    "dash lines": ("Bears - sports team\nChicago - city", BEARS),
    "colon lines": ("Bears: sports team\nChicago: city", BEARS),
    "bulleted": ("- Bears (sports team)\n- Chicago (city)", BEARS),
    "starred": ("* Bears (sports team)\n* Chicago (city)", BEARS),
    "bold bullets": ("- **Bears** (sports team)\n- **Chicago** (city)", BEARS),
    "header then lines": ("Entities:\nBears - sports team\nChicago - city\n\nReasoning: x", BEARS),
    "plain lines under a header": ("Named entities:\nBears\nChicago", [("Bears", None), ("Chicago", None)]),
    "table": ("| Name | Type |\n|---|---|\n| Bears | sports team |\n| Chicago | city |", BEARS),
    "table kind first": (
        "| type | entity |\n| --- | --- |\n| sports team | Bears |\n| city | Chicago |",
        BEARS,
    ),
    # one line
    "semicolons": ("Entities: Bears - sports team; Chicago - city", BEARS),
    "semicolons brackets": ("Entities: Bears (sports team); Chicago (city)", BEARS),
    "commas with kinds": ("Entities: Bears (sports team), Chicago (city)", BEARS),
    # prose and nothing
    "prose": ("The sentence mentions the Bears, a sports team from Chicago. The image shows a stadium.", []),
    "reasoning only": ("Reasoning: The Bears play in Chicago.", []),
    "empty": ("", []),
    "blank": ("  \n\t ", []),
    "numbers glued to names": (
        "Named entities:1. Paris2. France3. Eiffel Tower (landmark)",
        [("Paris", None), ("France", None), ("Eiffel Tower", "landmark")],
    ),
    "full-width brackets": (
        "Named entities:1. Tokyo（location）2. Olympics (event)",
        [("Tokyo", "location"), ("Olympics", "event")],
    ),
    "a decimal is no bullet": (
        "Donald Trump - person\n10.9 million voters - group",
        [("Donald Trump", "person"), ("10.9 million voters", "group")],
    ),
    "reasoning glued": ("Named entities: NoneReasoning: nothing named here", []),
    "repeats once": ("1. Bears (team)\n2. Bears (team)", [("Bears", "team")]),
}


@pytest.mark.parametrize("text, expected", list(CASES.values()), ids=list(CASES))
def test_forms(text, expected):
    assert read_entities(text) == expected


def test_not_a_string_gives_nothing():
    assert read_entities(None) == []
    assert read_entities(42) == []  # type: ignore[arg-type]


def test_reads_the_first_max_chars_only():
    text = "x" * MAX_CHARS + "1. Bears (sports team)"
    assert read_entities(text) == []
    assert read_entities("1. Bears (sports team) " + "x" * (2 * MAX_CHARS))[0] == ("Bears", "sports team")


@pytest.mark.parametrize(
    "text",
    [
        "Named entities:" + "1. a " * 200_000,
        "(" * 1_000_000,
        ")" * 1_000_000,
        "[" * 1_000_000,
        "{" * 1_000_000,
        '[{"name": ' * 100_000,
        "1. " * 300_000,
        "| a " * 250_000,
        "Named entities:" + "1. a (" * 150_000,
        ("x" * 30 + "\n") * 30_000,
    ],
    ids=[
        "numbered ones",
        "open brackets",
        "close brackets",
        "arrays",
        "objects",
        "json prefix",
        "markers",
        "table",
        "open kinds",
        "lines",
    ],
)
def test_linear_time_on_hostile_text(text):
    start = time.perf_counter()
    found = read_entities(text)
    assert isinstance(found, list)
    assert time.perf_counter() - start < 0.5


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_a_list(text):
    found = read_entities(text)
    assert isinstance(found, list)
    for name, kind in found:
        assert isinstance(name, str) and name
        assert kind is None or (isinstance(kind, str) and kind)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="1234567890.)(:;-|*#@[]{}\"'\n abcABC", max_size=300))
def test_any_structured_looking_text_gives_a_list(text):
    assert isinstance(read_entities(text), list)


def test_prose_names_finds_the_posts_names_in_the_prose():
    tokens = [
        "RT",
        "@JayKenMinaj",
        ":",
        "outside",
        "where",
        "George",
        "Zimmerman",
        "was",
        "shot",
        "The",
        "end",
    ]
    prose = prose_text(
        "Named entities:1. X (y)Reasoning:The sentence mentions JayKenMinaj and George Zimmerman. The end."
    )
    assert prose_names(tokens, prose) == [("@JayKenMinaj", None), ("George Zimmerman", None)]


def test_prose_names_of_nothing():
    assert prose_names(["Hello", "World"], "") == []
    assert prose_names(["Hello", "World"], None) == []
    assert prose_names([], "Hello World") == []
