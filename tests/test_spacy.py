"""The spaCy component: ``nlp.add_pipe("mner")`` in a blank English pipeline sets ``doc.ents`` from mner's character
offsets, reads the image and context through ``doc._``, and tags batches through ``nlp.pipe``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mner.data import MnerInputError
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


def test_one_doc_with_a_bad_image_goes_to_the_error_handler_and_the_rest_is_tagged():
    """Issue #32 N13: an ImageError ended ``nlp.pipe`` (docs 6-10 never tagged) and the handler was not called."""
    nlp = spacy.blank("en")
    nlp.add_pipe("mner", config={"model": "text"})
    docs = [nlp.make_doc(f"Obama visits Berlin {i}") for i in range(10)]
    docs[5]._.image = b"not an image"
    # the text model reads no image: it is not opened, and the doc is tagged
    assert [(e.text, e.label_) for e in nlp(docs[5]).ents] == [("Obama", "PER"), ("Berlin", "LOC")]
    nlp.get_pipe("mner").pipeline.attributes = True  # as a model that reads images: every image is read
    got = []
    with pytest.raises(MnerInputError, match="not an image"):  # spaCy's default handler raises
        for doc in nlp.pipe(docs, batch_size=4):
            got.append(doc.text)
    assert got == [d.text for d in docs[:5]]
    seen = []
    nlp.set_error_handler(lambda name, component, failed, err: seen.append((name, failed, str(err))))
    tagged = list(nlp.pipe(docs, batch_size=4))
    assert [d.text for d in tagged] == [d.text for i, d in enumerate(docs) if i != 5]
    assert all([(e.text, e.label_) for e in d.ents] == [("Obama", "PER"), ("Berlin", "LOC")] for d in tagged)
    assert seen == [("mner", [docs[5]], "<upload>: not an image (unrecognised format)")]
    assert nlp(docs[5]) is docs[5] and len(seen) == 2  # one doc: spaCy calls the handler with it, untagged


@pytest.mark.parametrize(
    "name,value,message",
    [
        (
            "image",
            123,
            "doc._.image: expected a path (str or os.PathLike) or the image file's bytes, got int",
        ),
        (
            "image",
            {"a": 1},
            "doc._.image: expected a path (str or os.PathLike) or the image file's bytes, got dict",
        ),
        ("context", 5, "doc._.context: expected a str (or None), got int"),
        ("context", ["Obama (person)"], "doc._.context: expected a str (or None), got list"),
        (
            "context",
            b"Named entities:1. Obama (person)",
            "doc._.context: expected a str (or None), got bytes",
        ),
        ("caption", 5, "doc._.caption: expected a str (or None), got int"),
    ],
)
def test_an_extension_value_of_another_type_is_a_type_error_naming_it(nlp, name, value, message):
    """Issue #32 N19: raw TypeErrors from deep inside, or a context of another type silently ignored."""
    doc = nlp.make_doc("Obama visits Berlin")
    setattr(doc._, name, value)
    with pytest.raises(TypeError) as err:
        nlp(doc)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "config,message",
    [
        ({"min_score": "0.5"}, "mner component: min_score '0.5': expected a number from 0 to 1"),
        ({"batch_size": 0}, "mner component: batch_size 0: expected a whole number, at least 1"),
        ({"threads": -1}, "mner component: threads -1: expected a whole number, at least 1"),
    ],
)
def test_config_values_spacy_lets_through_are_checked(config, message):
    with pytest.raises(MnerInputError) as err:
        spacy.blank("en").add_pipe("mner", config={"model": "text", **config})
    assert str(err.value) == message


EXTENSION_VALUES = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.integers(),
    st.floats(allow_subnormal=False),  # whatever a training left of the process's floating point
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=EXTENSION_VALUES, caption=EXTENSION_VALUES, context=EXTENSION_VALUES)
def test_any_extension_values_tag_the_doc_or_give_one_clear_error(nlp, image, caption, context):
    doc = nlp.make_doc("Obama visits Berlin")
    doc._.image, doc._.caption, doc._.context = image, caption, context
    try:
        tagged = nlp(doc)
    except TypeError as err:  # the first extension of the wrong type, by name
        wrong = next(
            n
            for n, v in (("image", image), ("caption", caption), ("context", context))
            if v is not None and not isinstance(v, str | bytes if n == "image" else str)
        )
        assert str(err).startswith(f"doc._.{wrong}: expected ")
        return
    except MnerInputError as err:  # an image that is no image, a path that is no file: one line
        assert image is not None and "\n" not in str(err)
        return
    assert all(isinstance(v, str) for v in (caption, context) if v is not None)
    assert {e.label_ for e in tagged.ents} <= {"PER", "LOC", "ORG", "OTHER"}


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
