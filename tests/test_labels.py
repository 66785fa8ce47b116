"""Label sets from the data, tagging schemes read as BIO, label maps, and scoring types a model does not tag."""

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mner.data import MnerInputError, Post
from mner.evaluate import entity_scores
from mner.labels import entity_types, read_gold, read_label_map, scheme, tag_set, to_bio


def write(tmp_path, text, name="data.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def conll(*posts: list[tuple[str, str]]) -> str:
    return "\n".join("".join(f"{token}\t{tag}\n" for token, tag in post) for post in posts)


def test_the_label_set_is_the_training_data_s_types_sorted_the_benchmark_s_in_its_own_order():
    wnut = [Post(("a", "b", "c"), tags=("B-product", "B-geo-loc", "I-geo-loc"))]
    assert entity_types(wnut) == ["geo-loc", "product"]
    assert tag_set(["product", "geo-loc", "company"]) == [
        "O",
        "B-company",
        "I-company",
        "B-geo-loc",
        "I-geo-loc",
        "B-product",
        "I-product",
    ]
    # Twitter's four (and any part of them) keep the order every benchmark model was trained with
    assert tag_set(["OTHER", "PER", "ORG", "LOC"]) == [
        "O",
        *("B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-OTHER"),
    ]
    assert tag_set(["LOC", "PER"]) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_iob1_and_bioes_files_are_read_as_bio_and_say_so_once(tmp_path):
    notes = []
    iob1 = write(
        tmp_path,
        conll(
            [("Kobe", "I-PER"), ("Bryant", "I-PER"), ("in", "O"), ("LA", "I-LOC")],
            [("A", "I-ORG"), ("B", "B-ORG"), ("c", "O")],
        ),
        "iob1.txt",
    )
    posts = read_gold(iob1, note=notes.append)
    assert [p.tags for p in posts] == [("B-PER", "I-PER", "O", "B-LOC"), ("B-ORG", "B-ORG", "O")]
    bioes = write(
        tmp_path,
        conll(
            [("Kobe", "B-PER"), ("Bryant", "E-PER"), ("in", "O"), ("LA", "S-LOC")],
            [("New", "B-LOC"), ("York", "I-LOC"), ("City", "E-LOC")],
        ),
        "bioes.txt",
    )
    posts = read_gold(bioes, note=notes.append)
    assert [p.tags for p in posts] == [("B-PER", "I-PER", "O", "B-LOC"), ("B-LOC", "I-LOC", "I-LOC")]
    bilou = write(tmp_path, conll([("Kobe", "B-PER"), ("Bryant", "L-PER"), ("LA", "U-LOC")]), "bilou.txt")
    assert read_gold(bilou, note=notes.append)[0].tags == ("B-PER", "I-PER", "B-LOC")
    assert notes == [
        f"{iob1}: tags read as IOB1 and converted to BIO",
        f"{bioes}: tags read as BIOES and converted to BIO",
        f"{bilou}: tags read as BIOES and converted to BIO",
    ]


def test_bio_with_entities_opening_with_i_stays_as_written():
    # Twitter-2015 test has 135 entities that open with I-; a B- after O makes the file BIO, read as it is
    posts = [Post(("a", "b", "c", "d"), tags=("B-PER", "O", "I-LOC", "I-LOC"))]
    assert scheme(posts) == "BIO"
    notes = []
    assert to_bio(posts, "x.txt", note=notes.append) == posts and notes == []


def test_misc_is_other_only_when_the_file_s_types_are_the_benchmark_s(tmp_path):
    notes = []
    twitter2017 = write(
        tmp_path, conll([("World", "B-MISC"), ("Cup", "I-MISC"), ("Rio", "B-LOC")]), "t17.txt"
    )
    assert read_gold(twitter2017, note=notes.append)[0].tags == ("B-OTHER", "I-OTHER", "B-LOC")
    conll2003_like = write(tmp_path, conll([("World", "B-MISC"), ("Cup", "I-MISC"), ("Apple", "B-company")]))
    assert read_gold(conll2003_like, note=notes.append)[0].tags == ("B-MISC", "I-MISC", "B-company")
    assert notes == [
        f"{twitter2017}: the Twitter benchmark's types: MISC as OTHER (a --label-map file changes that)"
    ]


def test_a_label_map_renames_merges_and_drops_types(tmp_path):
    names = read_label_map(
        write(
            tmp_path,
            "# WNUT-17 to the benchmark's\ncompany\tORG\ngroup\tORG\nperson\tPER\ncreative-work\tO\n",
            "map.tsv",
        )
    )
    assert names == {"company": "ORG", "group": "ORG", "person": "PER", "creative-work": "O"}
    data = write(
        tmp_path,
        conll(
            [
                ("Apple", "B-company"),
                ("Beatles", "B-group"),
                ("Ulysses", "B-creative-work"),
                ("Joyce", "B-person"),
                ("Jr", "I-person"),
            ]
        ),
    )
    notes = []
    posts = read_gold(data, names, note=notes.append)
    assert posts[0].tags == ("B-ORG", "B-ORG", "O", "B-PER", "I-PER")
    assert notes == [f"{data}: label map applied to company, creative-work, group, person"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("a\tb\tc\n", "map.tsv:1: expected 'from<TAB>to' (two entity types, no spaces), got 'a\\tb\\tc'"),
        ("a b\tORG\n", "map.tsv:1: expected 'from<TAB>to' (two entity types, no spaces), got 'a b\\tORG'"),
        ("a\tORG\na\tPER\n", "map.tsv:2: type 'a' is mapped twice"),
        ("# nothing\n\n", "map.tsv: file is empty: expected 'from<TAB>to' lines"),
        (
            "PER\tB-LOC\n",
            (
                "map.tsv:1: 'to' 'B-LOC' is a tag, not an entity type: write 'LOC' (the B-/I- prefixes come from "
                "the tagging scheme)"
            ),
        ),
        (
            "# ok\nI-person\tPER\n",
            (
                "map.tsv:2: 'from' 'I-person' is a tag, not an entity type: write 'person' (the B-/I- prefixes come "
                "from the tagging scheme)"
            ),
        ),
        (
            "PER\tPER\x00\n",
            (
                "map.tsv:1: 'to' 'PER\\x00' holds the control character U+0000: expected an entity type (letters, "
                "digits, punctuation)"
            ),
        ),
        (
            "P\u200bER\tPER\n",
            (
                "map.tsv:1: 'from' 'P\\u200bER' holds the control character U+200B: expected an entity type "
                "(letters, digits, punctuation)"
            ),
        ),
    ],
)
def test_label_map_errors_name_file_line_and_expectation(tmp_path, text, message):
    with pytest.raises(MnerInputError) as err:
        read_label_map(write(tmp_path, text, "map.tsv"))
    assert str(err.value) == message


def test_a_gold_type_the_model_does_not_tag_is_scored_with_recall_zero():
    gold = [["B-PER", "O", "B-product", "I-product"], ["B-geo-loc"]]
    predicted = [["B-PER", "O", "O", "O"], ["B-geo-loc"]]
    scores = entity_scores(gold, predicted, ["geo-loc", "PER"])
    assert list(scores.per_type) == ["geo-loc", "PER", "product"]  # the model's types first, then the rest
    assert scores.per_type["product"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores.recall == pytest.approx(2 / 3) and scores.precision == 1.0


def test_a_type_named_o_is_kept_with_or_without_a_map_unless_the_map_names_it(tmp_path):
    """Issue #32 N10: any label map dropped the entities of a type literally named "O" (``B-O``) without a note."""
    data = write(tmp_path, conll([("Kobe", "B-PER"), ("World", "B-O"), ("Cup", "I-O"), ("in", "O")]))
    kept = ("B-PER", "B-O", "I-O", "O")
    assert read_gold(data)[0].tags == kept
    assert read_gold(data, {"PER": "person"})[0].tags == ("B-person", "B-O", "I-O", "O")
    assert read_gold(data, {"O": "OTHER"})[0].tags == ("B-PER", "B-OTHER", "I-OTHER", "O")
    assert read_gold(data, {"O": "O"})[0].tags == ("B-PER", "O", "O", "O")  # dropped only when named


def test_evaluate_counts_a_type_named_o_the_same_with_an_unrelated_label_map(tmp_path):
    import json

    from typer.testing import CliRunner

    from mner.cli import app

    data = write(tmp_path, conll([("Obama", "B-PER"), ("visits", "O"), ("Berlin", "B-O")]))
    label_map = write(tmp_path, "LOC\tplace\n", "map.tsv")
    runs = [
        CliRunner().invoke(app, ["evaluate", "--model", "text", "--data", str(data), "--json", *extra])
        for extra in ([], ["--label-map", str(label_map)])
    ]
    assert [r.exit_code for r in runs] == [0, 0], [r.output for r in runs]
    scores = [json.loads(r.stdout) for r in runs]
    assert [s["gold_entities"] for s in scores] == [2, 2]
    assert scores[0]["f1"] == scores[1]["f1"]


# ------------------------------------------------------------------- label-map files of any content (Hypothesis)

MAP_PIECES = st.sampled_from(
    [
        "PER",
        "person",
        "O",
        "B-",
        "I-",
        "LOC",
        "geo-loc",
        "\t",
        "\n",
        "\r\n",
        " ",
        "#",
        "\x00",
        "\x1b",
        "é",
        "\u200b",
    ]
)
MAP_TEXT = st.one_of(st.text(max_size=80), st.lists(MAP_PIECES, max_size=30).map("".join))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(MAP_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=80)))
def test_any_label_map_file_is_a_valid_map_or_one_error_naming_the_file(tmp_path, content):
    path = tmp_path / "map.tsv"
    path.write_bytes(content)
    try:
        names = read_label_map(path)
    except MnerInputError as err:
        assert str(err).startswith("map.tsv:") and "\n" not in str(err)
        return
    for name in (*names, *names.values()):
        assert name and name == name.strip() and not any(c.isspace() for c in name)
        assert name[:2] not in ("B-", "I-")
        assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name)
    tags = tuple(
        f"B-{t}" for t in [*names, "O", "X"]
    )  # each type of the map, a type "O", one it does not name
    posts = [Post(tuple("w" * len(tags)), tags=tags)]
    for tag in to_bio(posts, path, names)[0].tags:  # a valid map gives valid tags
        prefix, _, etype = tag.partition("-")
        assert tag == "O" or (prefix in ("B", "I") and etype)
