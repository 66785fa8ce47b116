"""A model of the user's own five entity types (WNUT-style), trained and used through every door: the CLI (train,
evaluate with its per-type table, predict, tag), the HTTP service and Python (``mner.Pipeline``)."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from mner.cli import app
from mner.data import Post

runner = CliRunner()

POSTS = [
    [("Kobe", "B-person"), ("visits", "O"), ("Seattle", "B-geo-loc")],
    [("Google", "B-company"), ("sells", "O"), ("the", "O"), ("Pixel", "B-product")],
    [("Lakers", "B-sportsteam"), ("beat", "O"), ("the", "O"), ("Celtics", "B-sportsteam")],
    [("Maria", "B-person"), ("Lopez", "I-person"), ("moved", "O"), ("to", "O"), ("New", "B-geo-loc"),
     ("York", "I-geo-loc")],
    [("Apple", "B-company"), ("unveils", "O"), ("iPhone", "B-product")],
    [("Kobe", "B-person"), ("joins", "O"), ("Lakers", "B-sportsteam")],
]  # fmt: skip
TYPES = ["company", "geo-loc", "person", "product", "sportsteam"]
CONFIG = """[model]
hidden = 16
char_dim = 8
char_filters = 8
dropout = 0.0
[train]
epochs = 60
patience = 60
lr = 0.03
batch_size = 3
min_word_count = 1
progress = false
"""


def conll(posts) -> str:
    return "\n".join("".join(f"{t}\t{g}\n" for t, g in post) for post in posts)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("five-types")
    (folder / "train.txt").write_text(conll(POSTS), encoding="utf-8")
    # the test file holds a sixth type the model never saw: scored all the same, with recall 0
    (folder / "test.txt").write_text(conll([*POSTS, [("Ulysses", "B-creative-work"), ("rocks", "O")]]))
    (folder / "c.toml").write_text(CONFIG)
    args = [
        "--dev",
        str(folder / "train.txt"),
        "--test",
        str(folder / "test.txt"),
        "--config",
        str(folder / "c.toml"),
    ]
    result = runner.invoke(
        app, ["train", "--train", str(folder / "train.txt"), *args, "--out", str(folder / "m")]
    )
    assert result.exit_code == 0, result.output
    assert (
        "entity types (from the training data): company, geo-loc, person, product, sportsteam"
        in result.stderr
    )
    assert "holds entity type(s) creative-work that the model does not tag" in result.stderr
    return folder


@pytest.mark.slow
def test_the_label_set_comes_from_the_training_data(model):
    config = json.loads((model / "m" / "config.json").read_text())
    assert config["model"]["tags"] == ["O", *(f"{p}-{t}" for t in TYPES for p in ("B", "I"))]
    card = (model / "m" / "README.md").read_text()
    assert "- Labels: O, B-company, I-company, B-geo-loc" in card
    assert "| creative-work | 0.00 | 0.00 | 0.00 | 1 |" in card  # the test score in the card, every type


@pytest.mark.slow
def test_evaluate_reports_every_type_with_a_warning_for_the_unknown_one(model):
    result = runner.invoke(app, ["evaluate", "--model", str(model / "m"), "--data", str(model / "test.txt")])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert list(rows) == [*TYPES, "creative-work", "overall"]
    assert rows["person"] == ["100.00", "100.00", "100.00", "3"]
    assert rows["creative-work"] == ["0.00", "0.00", "0.00", "1"]
    assert "creative-work that the model does not tag" in result.stderr


@pytest.mark.slow
def test_predict_tag_service_and_python_tag_with_the_five_types(model, tmp_path):
    text = "Maria  Lopez moved to New York"
    expected = [("Maria  Lopez", "person", 0, 12), ("New York", "geo-loc", 22, 30)]

    def found(entities):
        return [(e["text"], e["type"], e["start_char"], e["end_char"]) for e in entities]

    predicted = runner.invoke(app, ["predict", "--model", str(model / "m"), "--text", text, "--json"])
    assert predicted.exit_code == 0, predicted.output
    assert found(json.loads(predicted.stdout)["entities"]) == expected

    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        json.dumps({"id": "a", "text": text}) + "\n" + json.dumps({"id": "b", "text": "Apple unveils iPhone"})
    )
    out = tmp_path / "out.jsonl"
    tagged = runner.invoke(app, ["tag", "--in", str(posts), "--out", str(out), "--model", str(model / "m")])
    assert tagged.exit_code == 0, tagged.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert found(records[0]["entities"]) == expected
    assert [(e["text"], e["type"]) for e in records[1]["entities"]] == [
        ("Apple", "company"),
        ("iPhone", "product"),
    ]

    from mner import Pipeline
    from mner.serving.service import create_app
    from tests.serving import running_server

    pipeline = Pipeline(model / "m")
    assert [(e.text, e.type, e.start_char, e.end_char) for e in pipeline.tag(text).entities] == expected
    with running_server(create_app(pipeline)) as base:
        answer = httpx.post(base + "/v1/tag", json={"text": text}, timeout=30)
    assert answer.status_code == 200 and found(answer.json()["entities"]) == expected


def test_a_tag_of_no_scheme_is_one_error_naming_file_line_and_what_was_expected(tmp_path):
    bad = tmp_path / "train.txt"
    bad.write_text("Kobe\tB-person\nrules\tX-person\n", encoding="utf-8")
    result = runner.invoke(
        app, ["train", "--train", str(bad), "--dev", str(bad), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {bad}:2: tag 'X-person' fits no tagging scheme: expected 'O' or 'B-TYPE'/'I-TYPE' (BIO; IOB1 and "
        "BIOES/BILOU tags are read too)\n"
    )


def test_more_entity_types_than_a_model_tags_are_refused_before_anything_is_allocated(tmp_path):
    """Issue #32 N11: 10,000 types ended in a traceback after asking for 32 GB; 1,000 took 4.3 GB."""
    from mner.training.trainer import MAX_ENTITY_TYPES, make_model_config

    def posts(n: int) -> list[Post]:
        return [Post((f"w{i}",), tags=(f"B-T{i}",)) for i in range(n)]

    config = make_model_config(posts(MAX_ENTITY_TYPES), {}, 1)  # the limit itself is a model
    assert len(config.tags) == 2 * MAX_ENTITY_TYPES + 1
    data = tmp_path / "train.txt"
    data.write_text("".join(f"w{i}\tB-T{i}\n" for i in range(10_000)), encoding="utf-8")
    result = runner.invoke(
        app, ["train", "--train", str(data), "--dev", str(data), "--no-onnx", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: the training data hold 10,000 entity types; a model tags at most {MAX_ENTITY_TYPES} (the CRF's "
        "memory grows with the square of the number of tags): merge types with --label-map FILE\n"
    )
    assert not (tmp_path / "m").exists()
