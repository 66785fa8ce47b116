"""Reading a context (``mner.channels.reading``): any form a chat model writes gives the same list, prose gives
none, each post is read once, kinds outside the table are read as words, and a model of its own label set reads
contexts too."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from mner.channels import reading
from mner.channels.context import alignment_ids, context_route, entity_type
from mner.channels.reading import read_context
from mner.data import Post
from mner.labels import BENCHMARK_LABELS, LabelSet

TOKENS = ("RT", "@KobeBryant", ":", "Bears", "win", "in", "Chicago", "at", "Crypto", ".", "com", "Arena")
LISTED = [("Kobe Bryant", "person"), ("Bears", "sports team"), ("Obama", "politician"), ("Chicago", "city")]
WANT = {"Kobe Bryant": "person", "Bears": "sports team", "Chicago": "city"}

# the same list as chat models write it when no schema holds them, each on one line (a context file keeps line
# breaks as spaces): Markdown, names-with-dashes runs, YAML, tables, kinds first, XML, arrows, sentences, ...
FORMS = {
    "markdown bullets, bold names": "Here are the named entities: - **Kobe Bryant** – person - **Bears** – sports "
    "team - **Obama** – politician - **Chicago** – city",
    "Name - kind; runs": "Kobe Bryant - person; Bears - sports team; Obama - politician; Chicago - city;",
    "YAML on one line": "entities: - name: Kobe Bryant type: person - name: Bears type: sports team - name: Obama "
    "type: politician - name: Chicago type: city",
    "Markdown table": "| Entity | Type | |---|---| | Kobe Bryant | person | | Bears | sports team | | Obama | "
    "politician | | Chicago | city |",
    "kinds first": "- person: Kobe Bryant - sports team: Bears - politician: Obama - city: Chicago",
    "numbered, bold, colon": "1. **Kobe Bryant**: person 2. **Bears**: sports team 3. **Obama**: politician "
    "4. **Chicago**: city",
    "XML": '<entities><entity type="person">Kobe Bryant</entity><entity type="sports team">Bears</entity>'
    '<entity type="politician">Obama</entity><entity type="city">Chicago</entity></entities>',
    "arrows": "Kobe Bryant → person | Bears → sports team | Obama → politician | Chicago → city",
    "sentences": "Kobe Bryant is a person. Bears is a sports team. Obama is a politician. Chicago is a city.",
    "kinds in brackets first": "[person] Kobe Bryant [sports team] Bears [politician] Obama [city] Chicago",
    "JSON, kind key first": json.dumps([{"category": k, "entity": n} for n, k in LISTED]),
    "published": "Named entities:1. Kobe Bryant (person)2. Bears (sports team)3. Obama (politician)4. Chicago "
    "(city)Reasoning: Kobe Bryant and the Bears are in Chicago.",
}


@pytest.mark.parametrize("form", list(FORMS))
def test_any_form_of_the_list_gives_the_posts_names_and_kinds(form):
    found = dict(read_context(TOKENS, FORMS[form]).entities)
    assert {name: found.get(name) for name in WANT} == WANT
    assert alignment_ids(TOKENS, FORMS[form]) == alignment_ids(TOKENS, FORMS["published"])


def test_names_without_kinds_are_read_as_names():
    found = read_context(TOKENS, "Kobe Bryant, Bears, Barack Obama, Chicago")
    assert found.how == "aligned"
    assert found.entities == (("Kobe Bryant", None), ("Bears", None), ("Chicago", None))
    assert context_route(TOKENS, "Kobe Bryant, Bears, Barack Obama, Chicago") == "untyped"


@pytest.mark.parametrize(
    "prose",
    [
        "The Bears won in Chicago today.",
        "Reasoning: The sentence mentions the Bears and Chicago.",
        (
            "The post mentions Kobe Bryant, a basketball player, and the Bears who play in Chicago, a city in Illinois "
            "where many fans gather."
        ),
    ],
)
def test_prose_is_not_a_list(prose):
    assert read_context(TOKENS, prose).entities == ()
    assert context_route(TOKENS, prose) == "none"


def test_a_domain_like_name_is_found_across_the_posts_tokens():
    found = read_context(TOKENS, "- **Crypto.com Arena** – arena - **Chicago** – city")
    assert ("Crypto.com Arena", "arena") in found.entities
    assert (
        alignment_ids(TOKENS, "- **Crypto.com Arena** – venue")[8:]
        == alignment_ids(TOKENS, "Named entities:1. Crypto.com Arena (venue)")[8:]
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("airline", "ORG"),
        ("coffee chain", "ORG"),
        ("band", "ORG"),
        ("TV show", "OTHER"),
        ("team", "ORG"),
        ("streaming service", "ORG"),
        ("video game", "OTHER"),
        ("hashtag", None),
        ("date", None),
        ("entity", None),
        ("sports team", "ORG"),  # the table still reads first
        ("person/handle", "PER"),
    ],
)
def test_kinds_outside_the_table_are_read_as_words(kind, expected):
    assert entity_type(kind) == expected


def test_a_label_set_of_its_own_maps_kinds_onto_its_types():
    labels = LabelSet.of(["FOOD", "ANIMAL", "SPORTS_TEAM"])
    assert labels.types == ("ANIMAL", "FOOD", "SPORTS_TEAM") and labels.tags[:3] == [
        "O",
        "B-ANIMAL",
        "I-ANIMAL",
    ]
    assert labels.kind_type("animal") == "ANIMAL" and labels.kind_type("dog breed") == "ANIMAL"
    assert labels.kind_type("sports team") == "SPORTS_TEAM" and labels.kind_type("food") == "FOOD"
    # a type named after one of the benchmark's reads that type's kind words too; its own name's words stay its own
    named = LabelSet.of(["person", "location", "organization", "miscellaneous"])
    assert [named.kind_type(k) for k in ("sports team", "city", "TV show", "person/handle", "hashtag")] == [
        "organization",
        "location",
        "miscellaneous",
        "person",
        None,
    ]
    assert BENCHMARK_LABELS.types == ("PER", "LOC", "ORG", "OTHER")
    assert LabelSet.from_tags(["O", "B-LOC", "I-LOC", "B-PER"]).types == ("LOC", "PER")  # the tags' own order
    from mner.config import ModelConfig

    assert ModelConfig(tags=LabelSet.of(["b", "a"]).tags, words=[], chars=[]).labels.types == ("a", "b")


def test_each_post_is_read_once_per_prediction(monkeypatch):
    from mner.runtime.runners import load_runner

    runner = load_runner(None, "onnx")  # the default: routing, alignment and kind vectors all read the list
    posts = [
        Post(("Bears", "win", "in", "Chicago", str(i)), context=FORMS["published"].replace("Obama", f"X{i}"))
        for i in range(6)
    ]
    before = reading.PARSES
    runner.predict(posts)
    assert reading.PARSES - before == len(posts)
    runner.predict(posts)  # the same posts again: read already
    assert reading.PARSES - before == len(posts)


def test_a_json_list_with_kinds_outside_the_table_gives_their_types():
    from mner.channels.context import align
    from mner.runtime.runners import load_runner

    tokens = ("Flying", "Delta", "to", "see", "Metallica", "and", "Friends", "with", "the", "Bears", "#tbt")
    listed = [("Delta", "airline"), ("Metallica", "band"), ("Friends", "TV show"), ("Bears", "team")]
    listed.append(("#tbt", "hashtag"))
    context = json.dumps([{"name": n, "type": k} for n, k in listed])
    tags = align(tokens, post_entities_of(tokens, context))
    assert [t for t in tags if t != "O"] == ["B-ORG", "B-ORG", "B-OTHER", "B-ORG", "B-UNK"]
    # a GloVe model follows them where its text alone is wrong: a coffee chain is no place
    runner = load_runner("fast", "onnx")
    post = Post(("Morning", "coffee", "at", "Starbucks", "before", "work"))
    with_list = dataclasses.replace(post, context=json.dumps([{"name": "Starbucks", "type": "coffee chain"}]))
    assert [(s.text, s.type) for s in runner.predict([post])[0]] == [("Starbucks", "LOC")]
    assert [(s.text, s.type) for s in runner.predict([with_list])[0]] == [("Starbucks", "ORG")]
    # the default's text path, on MPNet's features, knows the brand without a list (issue #31)
    default = load_runner(None, "onnx")
    assert [(s.text, s.type) for s in default.predict([post, with_list])[1]] == [("Starbucks", "ORG")]
    assert [(s.text, s.type) for s in default.predict([post])[0]] == [("Starbucks", "ORG")]


def post_entities_of(tokens, context):
    return list(read_context(tokens, context).entities)


def _made_up_posts(rng: random.Random, count: int, with_context: bool) -> list[Post]:
    """Posts naming a made-up word that is an animal or a food: only the context says which."""
    posts = []
    for i in range(count):
        name = "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3)).capitalize()
        etype = rng.choice(["ANIMAL", "FOOD"])
        kind = "animal" if etype == "ANIMAL" else "food"
        verb = rng.choice(["saw", "met", "found", "got"])
        context = f"Named entities:1. {name} ({kind})" if with_context else None
        posts.append(
            Post(("I", verb, name, "today"), id=str(i), tags=("O", "O", f"B-{etype}", "O"), context=context)
        )
    return posts


def _train_tiny_context_model(train_posts, dev, hidden: int, epochs: int):
    """A tiny BiLSTM-CRF reading the context aligned to the post, trained on the posts given."""
    from mner.training.runconfig import RunConfig, TrainConfig
    from mner.training.trainer import train

    model = {"char_dim": 8, "char_filters": 8, "hidden": hidden, "channels": ["text", "context"]}
    run = RunConfig(
        {**model, "context": {"alignment": True}},
        TrainConfig(epochs=epochs, batch_size=8, min_word_count=1, progress=False, seed=1),
    )
    return train(train_posts, dev, run)[0]


def test_a_model_of_its_own_label_set_reads_a_context():
    from mner.evaluate import entity_scores

    rng = random.Random(7)
    train_posts, dev = _made_up_posts(rng, 160, True), _made_up_posts(rng, 60, True)
    tagger = _train_tiny_context_model(train_posts, dev, hidden=16, epochs=6)
    assert tagger.config.context.types == ["ANIMAL", "FOOD"]
    gold = [list(p.tags) for p in dev]
    with_context = entity_scores(gold, tagger.predict_tags(dev)).f1
    without = entity_scores(gold, tagger.predict_tags([dataclasses.replace(p, context=None) for p in dev])).f1
    assert with_context > without + 0.2, (with_context, without)


def test_training_reads_each_post_once_whatever_the_epochs():

    rng = random.Random(3)
    train_posts, dev = _made_up_posts(rng, 40, True), _made_up_posts(rng, 12, True)
    before = reading.PARSES
    _train_tiny_context_model(train_posts, dev, hidden=8, epochs=3)
    # every post read once: by the first epoch's batches (and the dev scoring), never again in later epochs
    assert 0 < reading.PARSES - before <= len(train_posts) + len(dev)


def test_how_a_long_context_was_read_takes_one_pass_over_the_post(monkeypatch):
    """N8: ``read_as`` aligned each listed name to the whole post on its own (30,000 words × 1,500 names took 35 s)."""
    from mner.serving.reading import context_reading

    calls = []
    aligned = reading._aligned
    monkeypatch.setattr(reading, "_aligned", lambda *args: calls.append(1) or aligned(*args))

    class OneModel:  # a model that reads the context and has no paths
        from mner.model.folder import open_model_folder

        config = open_model_folder(None).config

    listed = "Named entities:" + "".join(f"{i % 999 + 1}. n{i} (person)" for i in range(1500))
    read = context_reading(OneModel(), ("ab",) * 30_000 + ("n7",), listed)
    assert len(read["entities"]) > 1000 and [e["name"] for e in read["entities"] if e["in_post"]] == ["n7"]
    assert len(calls) == 1


def test_names_in_prose_are_found_in_time_linear_in_the_post():
    """N9: a run of capitalised tokens was searched in cubic time (4,000 tokens: 59 s); now it is one pass."""
    import time

    from mner.channels.entities import prose_names

    tokens = [f"Cap{i}" for i in range(4000)]
    start = time.perf_counter()
    found = prose_names(tokens, "Reasoning: some prose naming Cap7, Cap8 and Cap3999")
    assert found == [("Cap7 Cap8", None), ("Cap3999", None)]
    assert time.perf_counter() - start < 5  # a generous bound: the cubic search took minutes here
