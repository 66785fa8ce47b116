"""``mner kg``: build, add-images, lookup and stats through Typer's CliRunner; clear one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mner.cli import app

runner = CliRunner()

LABELS = """\
cat	Chelsea	the cat in the scikit-image photo
cfc	Chelsea F.C.	association football club based in London	Chelsea
london	London	capital city of England
kobe	Kobe Bryant	American basketball player
"""
TRIPLES = "cfc\t/sports/sports_team/location\tlondon\nkobe\t/people/person/places_lived\tnowhere\n"


@pytest.fixture
def files(tmp_path) -> Path:
    (tmp_path / "labels.tsv").write_text(LABELS, encoding="utf-8")
    (tmp_path / "triples.tsv").write_text(TRIPLES, encoding="utf-8")
    return tmp_path


@pytest.fixture
def kg(files) -> Path:
    out = files / "kg.sqlite"
    result = runner.invoke(
        app,
        [
            "kg",
            "build",
            "--labels",
            str(files / "labels.tsv"),
            "--tsv",
            str(files / "triples.tsv"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_build_reports_counts_and_skipped_lines(kg):
    result = runner.invoke(
        app,
        [
            "kg",
            "build",
            "--labels",
            str(kg.parent / "labels.tsv"),
            "--tsv",
            str(kg.parent / "triples.tsv"),
            "--out",
            str(kg),
        ],
    )
    assert result.exit_code == 0
    assert "labels labels.tsv: 4 entities" in result.stdout
    assert "triples triples.tsv: 1 triples, 1 skipped lines" in result.stdout
    assert "skipped triples.tsv:2: unknown entity 'nowhere' (not in the labels)" in result.stderr
    assert f"wrote {kg}: 4 entities, 1 triples" in result.stdout


def test_stats(kg):
    result = runner.invoke(app, ["kg", "stats", "--kg", str(kg)])
    assert result.exit_code == 0
    assert "entities: 4" in result.stdout
    assert "types: PER 1, LOC 1, ORG 1, OTHER 0, none 1" in result.stdout
    stats = json.loads(runner.invoke(app, ["kg", "stats", "--kg", str(kg), "--json"]).stdout)
    assert (stats["entities"], stats["images"]) == (4, 0)


def test_lookup_text(kg):
    result = runner.invoke(app, ["kg", "lookup", "--kg", str(kg), "Kobe"])
    assert result.exit_code == 0, result.output
    assert "knowledge: Kobe Bryant [PER] (best text candidate)" in result.stdout
    assert "(kobe bryant, isA, basketball player)" in result.stdout


def test_lookup_json_lower_case_mention(kg):
    result = runner.invoke(app, ["kg", "lookup", "--kg", str(kg), "chelsea f.c.", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["path"], out["entity"], out["type"]) == ("text", "cfc", "ORG")
    assert out["mentions"] == ["chelsea f.c."]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lookup", "--kg", "KG", "?!"], "error: mention '?!' is empty: it has no letters or digits"),
        (
            ["lookup", "--kg", "KG", "A" * 10_000],
            "error: mention is 10,000 characters long; at most 200 are looked up",
        ),
        (
            ["stats", "--kg", "NOTKG"],
            "error: NOTKG: not a KG file (not SQLite); build one with 'mner kg build'",
        ),
        (["stats", "--kg", "MISSING"], "error: MISSING: KG file not found"),
        (
            ["build", "--out", "OUT"],
            (
                "error: nothing to build from: give --fb15k237, --db15k, --tsv, --ntriples, "
                "--labels or --gazetteer"
            ),
        ),
        (
            ["build", "--gazetteer", "atlas", "--out", "OUT"],
            "error: unknown gazetteer 'atlas'; expected one of geonames, pycountry, names",
        ),
        (["add-images", "--kg", "KG", "--images", "MISSING"], "error: MISSING: folder not found"),
    ],
)
def test_errors_are_one_line(kg, args, message):
    paths = {
        "KG": str(kg),
        "NOTKG": str(kg.parent / "labels.tsv"),
        "MISSING": str(kg.parent / "missing.sqlite"),
        "OUT": str(kg.parent / "new.sqlite"),
    }
    result = runner.invoke(app, ["kg", *[paths.get(a, a) for a in args]])
    assert result.exit_code == 2
    assert result.stderr.strip() == message.replace("NOTKG", paths["NOTKG"]).replace(
        "MISSING", paths["MISSING"]
    )
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------------------- images


@pytest.fixture
def photos(files) -> Path:
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    folder = files / "photos"
    folder.mkdir()
    Image.fromarray(skdata.chelsea()).save(folder / "cat.png")
    Image.fromarray(skdata.coffee()).save(folder / "coffee.png")
    Image.fromarray(skdata.chelsea()).save(folder / "post.jpg", quality=60)
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def test_add_images_then_lookup_with_an_image(kg, photos):
    pytest.importorskip("mner.vision")
    mapping = photos.parent / "map.tsv"
    mapping.write_text(
        "cat\tcat.png\ncfc\tcoffee.png\nnobody\tcat.png\nkobe\tbroken.png\nbad line\n", encoding="utf-8"
    )
    result = runner.invoke(
        app, ["kg", "add-images", "--kg", str(kg), "--images", str(photos), "--map", str(mapping)]
    )
    assert result.exit_code == 0, result.output
    assert "added 2 image vectors" in result.stdout
    assert f"skipped {mapping}:3: unknown entity 'nobody'" in result.stderr
    assert f"skipped {mapping}:5: expected 'entity<TAB>image file', got 1 field(s)" in result.stderr
    assert f"skipped {mapping}:4: " in result.stderr  # the broken image, with the vision stage's reason
    result = runner.invoke(
        app,
        [
            "kg",
            "lookup",
            "--kg",
            str(kg),
            "Chelsea is sleeping",
            "--image",
            str(photos / "post.jpg"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["path"], out["entity"], out["hop"]) == ("image", "cat", 0)
    assert out["similarity"] >= 0.9
    assert out["triples"][0] == ["chelsea", "isA", "cat"]


def test_add_images_by_file_stem(kg, photos):
    pytest.importorskip("mner.vision")
    folder = photos.parent / "by_stem"
    folder.mkdir()
    (folder / "kobe.png").write_bytes((photos / "coffee.png").read_bytes())
    (folder / "FBIMG00001.png").write_bytes((photos / "coffee.png").read_bytes())
    result = runner.invoke(app, ["kg", "add-images", "--kg", str(kg), "--images", str(folder)])
    assert result.exit_code == 0, result.output
    assert "added 1 image vectors for 1 entities; skipped 1" in result.stdout
    assert (
        f"skipped {folder / 'FBIMG00001.png'}: 'FBIMG00001' is neither an MMKG image id nor an entity"
        in result.stderr
    )
    stats = json.loads(runner.invoke(app, ["kg", "stats", "--kg", str(kg), "--json"]).stdout)
    assert (stats["images"], stats["image_dim"], stats["image_encoder"]) == (1, 1280, "lite0")
    assert np.isfinite(stats["file_bytes"])


RANKING_LABELS = """\
fruit	Apple	fruit of the apple tree
pear	Pear	a fruit
plum	Plum	a fruit
aapl	Apple Inc.	American technology company	Apple
cupertino	Cupertino	a city in California
"""
# the fruit is linked by a relation that says nothing of its type: it stays untyped, and it has more triples
RANKING_TRIPLES = (
    "fruit\t/common/topic/related\tpear\nfruit\t/common/topic/related\tplum\n"
    "aapl\t/organization/organization/headquarters\tcupertino\n"
)


def test_lookup_ranks_named_entities_before_concepts_with_the_prior(tmp_path):
    (tmp_path / "labels.tsv").write_text(RANKING_LABELS, encoding="utf-8")
    (tmp_path / "triples.tsv").write_text(RANKING_TRIPLES, encoding="utf-8")
    kg = tmp_path / "kg.sqlite"
    built = runner.invoke(
        app,
        ["kg", "build", "--labels", str(tmp_path / "labels.tsv"), "--tsv", str(tmp_path / "triples.tsv")]
        + ["--out", str(kg)],
    )
    assert built.exit_code == 0, built.output

    def ranked(*extra):
        result = runner.invoke(app, ["kg", "lookup", "--kg", str(kg), "Apple", "--json", "-k", "2", *extra])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        return [(c["entity"], c["type"], c["score"]) for c in out["candidates"]], out["entity"]

    # both names match exactly; by name score alone the better-connected fruit comes first
    assert ranked("--rank", "score") == ([("fruit", None, 100.0), ("aapl", "ORG", 100.0)], "fruit")
    # with the prior (the default) the company, a named entity, comes first, and the knowledge is about it
    assert ranked() == ([("aapl", "ORG", 100.0), ("fruit", None, 100.0)], "aapl")
    refused = runner.invoke(app, ["kg", "lookup", "--kg", str(kg), "Apple", "--rank", "fame"])
    assert (refused.exit_code, refused.stderr) == (2, "error: --rank 'fame': expected prior or score\n")
