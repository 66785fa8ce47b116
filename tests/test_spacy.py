"""The spaCy component: ``nlp.add_pipe("mner")`` in a blank English pipeline sets ``doc.ents`` from mner's character
offsets, reads the image and context through ``doc._``, and tags batches through ``nlp.pipe``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT

spacy = pytest.importorskip(
    "spacy",
    reason="spaCy is not installed: the 'spacy' extra (pip install 'mner[spacy]'; scripts/test.sh installs it)",
)

import mner.serving.spacy_component  # noqa: F401 - registers the factory, as the entry point does


@pytest.fixture(scope="module")
def nlp():
    nlp = spacy.blank("en")
    nlp.add_pipe("mner", config={"model": "text"})
    return nlp


def test_the_component_sets_doc_ents_at_the_entities_characters(nlp):
    text = "RT @nytimes: Barack  Obama meets Angela Merkel in Berlin"
    doc = nlp(text)
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Barack  Obama", "PER"),
        ("Angela Merkel", "PER"),
        ("Berlin", "LOC"),
    ]
    assert all(0.5 < e._.score <= 1.0 for e in doc.ents)
    assert [t.ent_iob_ for t in doc[:4]] == ["O", "O", "O", "B"]  # the component writes the tokens' IOB too


def test_entities_inside_a_spacy_token_expand_to_it(nlp):
    doc = nlp("Congrats to Kobe Bryant!!!Lakers")  # spaCy's blank English keeps "Bryant!!!Lakers" one token
    assert "Bryant!!!Lakers" in [t.text for t in doc]
    assert next((e.text, e.label_) for e in doc.ents) == ("Kobe Bryant!!!Lakers", "PER")


def test_context_through_doc_extensions_and_batches_through_nlp_pipe():
    nlp = spacy.blank("en")
    nlp.add_pipe("mner", config={"model": "default"})
    docs = [nlp.make_doc(t) for t in ("Bears win in Chicago", "Quiet morning", "   ")]
    docs[0]._.context = "Named entities:1. Bears (sports team)2. Chicago (city)"
    tagged = list(nlp.pipe(docs, batch_size=2))
    assert [[(e.text, e.label_) for e in d.ents] for d in tagged] == [
        [("Bears", "ORG"), ("Chicago", "LOC")],
        [],
        [],
    ]
    one = nlp.make_doc("Bears win in Chicago")
    one._.context = docs[0]._.context
    assert [(e.text, e.label_, e._.score) for e in nlp(one).ents] == [
        (e.text, e.label_, e._.score) for e in tagged[0].ents
    ]  # a batch tags each doc as if alone


def test_min_score_leaves_out_less_likely_entities():
    strict = spacy.blank("en")
    strict.add_pipe("mner", config={"model": "text", "min_score": 0.999})
    loose = spacy.blank("en")
    loose.add_pipe("mner", config={"model": "text"})
    text = "Chelsea is sleeping on the sofa in London"
    scores = [e._.score for e in loose(text).ents]
    assert [e._.score for e in strict(text).ents] == [s for s in scores if s >= 0.999]
    assert any(s < 0.999 for s in scores)


def test_spacy_finds_the_factory_through_the_entry_point_alone(tmp_path):
    """A fresh process that never imports mner itself: spaCy loads the component from the entry point that
    pyproject.toml declares (installed here as a stand-in distribution's metadata, as pip would write it)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        "spacy_factories"
    ]
    assert declared == {"mner": "mner.serving.spacy_component:make_mner_component"}
    dist = tmp_path / "mner_entry_point-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mner-entry-point\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(f"[spacy_factories]\nmner = {declared['mner']}\n")
    code = (
        "import sys, spacy; assert 'mner' not in sys.modules; nlp = spacy.blank('en'); nlp.add_pipe('mner', config={'model': 'text'}); "
        "print([(e.text, e.label_) for e in nlp('Obama visits Paris').ents], 'mner' in sys.modules)"
    )
    path = os.pathsep.join([str(tmp_path), *sys.path])
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert out.stdout.strip() == "[('Obama', 'PER'), ('Paris', 'LOC')] True"


def test_importing_mner_imports_no_spacy():
    code = "import sys, mner; print('spacy' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "False\n"
    )
