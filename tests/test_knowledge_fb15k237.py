"""Slow: the real FB15k-237 KG (+ DB15K, MMKG ids, CoDEx classes) built from ../shared/kg/."""

from __future__ import annotations

import pytest

from mner.data import tokenize
from mner.knowledge import KGSources, SqliteKG, build_kg, post_knowledge
from tests.conftest import SHARED, WHERE_DATA

SHARED_KG = SHARED / "kg"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SHARED_KG / "fb15k237" / "train.txt").is_file(),
        reason=f"the shared KG data is not at {SHARED_KG} (../shared/kg beside the repository): {WHERE_DATA}",
    ),
]


@pytest.fixture(scope="module")
def fb_kg(tmp_path_factory):
    out = tmp_path_factory.mktemp("fb15k237") / "kg.sqlite"
    reports = build_kg(
        out,
        KGSources(
            fb15k237=SHARED_KG / "fb15k237",
            db15k=SHARED_KG / "db15k",
            mmkb=SHARED_KG / "mmkb",
            codex=SHARED_KG / "codex",
        ),
    )
    assert [r.skipped for r in reports] == [[]] * len(reports)  # the shared files are clean
    with SqliteKG(out) as kg:
        yield kg


def test_counts(fb_kg):
    stats = fb_kg.stats()
    assert stats["entities"] >= 14_541
    assert stats["triples"] >= 310_116 - 10  # FB15k-237's splits, plus DB15K's joined triples
    assert stats["image_ids"] > 20_000


def test_kobe_bryant_is_a_basketball_player(fb_kg):
    top = fb_kg.candidates("Kobe Bryant", k=1)[0]
    assert (top.entity.key, top.entity.type) == ("/m/01kmd4", "PER")
    assert ("kobe bryant", "isA", "basketball player") in fb_kg.concepts(top.entity.id)
    found = post_knowledge(fb_kg, tokenize("Kobe Bryant scores 81 tonight"))
    assert (found.path, found.entity.key, found.coarse_type) == ("text", "/m/01kmd4", "PER")
    assert found.triples[0] == ("kobe bryant", "isA", "basketball player")


def test_apple_is_an_organisation(fb_kg):
    apple = fb_kg.candidates("Apple Inc.", k=1)[0].entity
    assert (apple.key, apple.type) == ("/m/0k8z", "ORG")
    assert ("apple inc.", "isA", "public company") in fb_kg.concepts(apple.id)


def test_mmkg_image_ids_and_same_as(fb_kg):
    kobe = fb_kg.find_entity("/m/01kmd4")
    assert fb_kg.find_entity("Q25369") == kobe  # Wikidata id, joined through entity2wikidata.json
    assert fb_kg.find_entity("http://dbpedia.org/resource/Kobe_Bryant") == kobe  # MMKG same-as link
    image_id = fb_kg.conn.execute("SELECT image_id FROM image_ids WHERE entity = ?", (kobe.id,)).fetchone()
    assert image_id is not None and fb_kg.entity_for_image_id(image_id[0]) == kobe.id


def test_hub_neighbourhoods_are_capped(fb_kg):
    usa = fb_kg.find_entity("/m/09c7w0")
    assert usa.degree > 1000  # a hub
    assert len(fb_kg.neighbours([usa.id], set(), max_per_entity=500, hub_degree=1000)) == 500
