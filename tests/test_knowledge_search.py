"""The paper's image-knowledge search on a small KG whose entities own real photos (scikit-image).

The KG: two entities share the alias "Chelsea": the cat (owns the cat photo) and the football club
(better connected, owns the cameraman photo). Eileen Collins owns the astronaut photo and works for
NASA, which owns the rocket photo. Sumatra contains Aceh, where Gayo coffee (the coffee photo) grows.
Post images are the photos re-encoded as JPEG, so a match is near but not exactly 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mner.data import MnerInputError, tokenize
from mner.knowledge import KGSources, SearchCaps, SqliteKG, build_kg, image_knowledge, post_knowledge

skdata = pytest.importorskip("skimage.data")
Image = pytest.importorskip("PIL.Image")

LABELS = """\
cat	Chelsea	the cat in the scikit-image photo	Chelsea the cat
cfc	Chelsea F.C.	association football club based in London	Chelsea
london	London	capital city of England
stamford	Stamford Bridge	football stadium in London
eileen	Eileen Collins	American astronaut
nasa	NASA	space agency of the United States	National Aeronautics and Space Administration
sumatra	Sumatra	island of Indonesia
aceh	Aceh	province of Indonesia
gayo	Gayo coffee	coffee grown in the Gayo highlands
"""
TRIPLES = """\
cfc	/sports/sports_team/location	london
cfc	/soccer/football_team/home_ground	stamford
stamford	/location/location/containedby	london
eileen	/people/person/employment_history./business/employment_tenure/company	nasa
sumatra	/location/location/contains	aceh
gayo	/food/food/region	aceh
"""
OWNERS = {"cat": "chelsea", "cfc": "camera", "eileen": "astronaut", "nasa": "rocket", "gayo": "coffee"}


def _rgb(name: str) -> np.ndarray:
    pixels = getattr(skdata, name)()
    return np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels


@pytest.fixture(scope="module")
def encoder():
    vision = pytest.importorskip("mner.vision")
    return vision.load_encoder("lite0")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Each photo as PNG (what an entity owns) and as JPEG quality 60 (what a post shows)."""
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in set(OWNERS.values()):
        image = Image.fromarray(_rgb(name))
        image.save(folder / f"{name}.png")
        image.save(folder / f"{name}-post.jpg", quality=60)
        paths[name] = folder / f"{name}.png"
        paths[f"{name}-post"] = folder / f"{name}-post.jpg"
    return paths


@pytest.fixture(scope="module")
def post_vectors(encoder, photos) -> dict[str, np.ndarray]:
    names = sorted(set(OWNERS.values()))
    features = encoder.encode_files([photos[f"{n}-post"] for n in names])
    return {n: f.vector for n, f in zip(names, features, strict=True)}


@pytest.fixture(scope="module")
def kg_path(tmp_path_factory, encoder, photos) -> Path:
    folder = tmp_path_factory.mktemp("kg")
    (folder / "labels.tsv").write_text(LABELS, encoding="utf-8")
    (folder / "triples.tsv").write_text(TRIPLES, encoding="utf-8")
    out = folder / "kg.sqlite"
    build_kg(out, KGSources(labels=[folder / "labels.tsv"], tsv=[folder / "triples.tsv"]))
    with SqliteKG(out, writable=True) as kg:
        for key, photo in OWNERS.items():
            vector = encoder.encode_file(photos[photo]).vector
            kg.add_image_vectors(kg.find_entity(key).id, vector, source=photo, encoder="lite0")
        kg.commit()
    return out


@pytest.fixture
def kg(kg_path):
    with SqliteKG(kg_path) as store:
        yield store


def test_the_image_decides_between_two_chelseas(kg, post_vectors):
    tokens = tokenize("Chelsea is sleeping")
    found = post_knowledge(kg, tokens, post_vectors["chelsea"])
    assert (found.path, found.entity.key, found.hop) == ("image", "cat", 0)
    assert found.similarity >= 0.9
    assert found.triples[0] == ("chelsea", "isA", "cat")
    without_image = post_knowledge(kg, tokens)
    assert (without_image.path, without_image.entity.key) == ("text", "cfc")  # the better-connected one


def test_match_at_hop_1(kg, post_vectors):
    found = post_knowledge(kg, tokenize("Eileen Collins flew again"), post_vectors["rocket"])
    assert (found.path, found.entity.key, found.hop) == ("image", "nasa", 1)
    assert found.mention.query == "Eileen Collins"
    assert found.coarse_type == "ORG"


def test_match_at_hop_2(kg, post_vectors):
    found = post_knowledge(kg, tokenize("Morning in Sumatra"), post_vectors["coffee"])
    assert (found.path, found.entity.key, found.hop) == ("image", "gayo", 2)
    assert ("gayo coffee", "isA", "coffee") in found.triples


def test_no_match_means_no_knowledge(kg, post_vectors):
    # the astronaut photo belongs to Eileen Collins, nowhere near either Chelsea
    found = post_knowledge(kg, tokenize("Chelsea is sleeping"), post_vectors["astronaut"])
    assert (found.path, found.entity, found.triples) == ("none", None, ())
    assert found.compared > 0


def test_theta_is_the_cosine_threshold(kg, post_vectors):
    candidates = kg.candidates("Chelsea")
    assert image_knowledge(kg, candidates, post_vectors["chelsea"], theta=0.9).path == "image"
    assert image_knowledge(kg, candidates, post_vectors["chelsea"], theta=0.9999).path == "none"


def test_policies(kg):
    candidates = kg.candidates("Chelsea")
    assert image_knowledge(kg, candidates, None, policy="image-then-text").path == "text"
    assert image_knowledge(kg, candidates, None, policy="image-only").path == "none"
    with pytest.raises(MnerInputError) as err:
        image_knowledge(kg, candidates, None, policy="text-first")
    assert str(err.value) == (
        "unknown knowledge policy 'text-first'; expected one of image-then-text, image-only"
    )


def test_no_entity_images_falls_back_to_text(tmp_path):
    (tmp_path / "labels.tsv").write_text(LABELS, encoding="utf-8")
    build_kg(tmp_path / "kg.sqlite", KGSources(labels=[tmp_path / "labels.tsv"]))
    with SqliteKG(tmp_path / "kg.sqlite") as bare:
        found = post_knowledge(bare, tokenize("Eileen Collins flew again"), np.ones(1280, dtype=np.float32))
        assert (found.path, found.entity.key, found.compared) == ("text", "eileen", 0)


def test_wrong_dimension(kg):
    with pytest.raises(MnerInputError) as err:
        post_knowledge(kg, tokenize("Chelsea is sleeping"), np.ones(512, dtype=np.float32))
    assert str(err.value) == "image vector has 512 dimensions, the KG's entity images have 1280"


def test_hub_caps_bound_the_search(kg, post_vectors):
    caps = SearchCaps(max_per_entity=1, hub_degree=0, max_frontier=1)
    found = image_knowledge(kg, kg.candidates("Sumatra"), post_vectors["coffee"], caps=caps)
    assert found.compared <= 2


def test_words_for_the_model(kg, post_vectors):
    found = post_knowledge(kg, tokenize("Chelsea is sleeping"), post_vectors["chelsea"])
    assert found.words()[:3] == ["chelsea", "isA", "cat"]
    assert found.to_dict()["entity"] == "cat"


def test_compact_words_name_each_subject_once():
    from mner.knowledge.search import Knowledge

    triples = (
        ("kobe bryant", "isA", "basketball player"),
        ("kobe bryant", "isA", "athlete"),
        ("lakers", "isA", "team"),
    )
    found = Knowledge("text", None, None, None, triples, "PER", None, (), 0)
    assert found.words()[:8] == ["kobe", "bryant", "isA", "basketball", "player", "kobe", "bryant", "isA"]
    assert found.words(compact=True) == [
        "kobe",
        "bryant",
        "isA",
        "basketball",
        "player",
        ",",
        "athlete",
        ";",
        "lakers",
        "isA",
        "team",
    ]
