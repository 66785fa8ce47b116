"""mner as a spaCy pipeline component (the optional extra ``mner[spacy]``)::

    import spacy
    nlp = spacy.blank("en")
    nlp.add_pipe("mner", config={"model": "default"})    # found through mner's spacy_factories entry point
    doc = nlp.make_doc("Bears win in Chicago")
    doc._.context = "Named entities:1. Bears (sports team)2. Chicago (city)"
    doc = nlp(doc)                                        # or nlp.pipe(docs, batch_size=32)
    [(e.text, e.label_, e._.score) for e in doc.ents]

The component tags ``doc.text`` with a ``mner.serving.pipeline.Pipeline`` and sets ``doc.ents`` from each entity's
character offsets (``doc.char_span(..., alignment_mode="expand")``: an entity that starts or ends inside a spaCy
token covers that whole token; of entities that then overlap, the longest is kept). What the post carries besides
its text goes in through ``doc._`` extensions named like mner's JSONL fields: ``doc._.image`` (a path, or the
file's bytes) and each channel's text field (``doc._.caption``, ``doc._.context``); each entity's probability is
``span._.score``. spaCy registers the factory from mner's ``spacy_factories`` entry point: ``import mner`` never
imports spaCy, and importing this module loads no model (the factory does, when the component is added).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import filter_spans, minibatch

from mner.channels.spec import text_fields
from mner.data import MnerInputError
from mner.serving.pipeline import EMPTY_TEXT, Pipeline, PostInput

DOC_EXTENSIONS = ("image", *text_fields())  # what a post carries besides its text (mner.channels.spec)


def _register_extensions() -> None:
    for name in DOC_EXTENSIONS:
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
    if not Span.has_extension("score"):
        Span.set_extension("score", default=None)


class MnerComponent:
    """Sets ``doc.ents`` (and ``span._.score``) from an mner Pipeline; see the module docstring."""

    def __init__(self, pipeline: Pipeline, batch_size: int = 32):
        self.pipeline, self.batch_size = pipeline, batch_size
        _register_extensions()

    def __call__(self, doc: Doc) -> Doc:
        return self._tag([doc])[0]

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        """Docs tagged in batches: one image-encoder and one model call per ``batch_size`` docs."""
        for batch in minibatch(docs, size=batch_size or self.batch_size):
            yield from self._tag(batch)

    def _tag(self, docs: list[Doc]) -> list[Doc]:
        items = [
            PostInput(doc.text, doc._.image, **{name: getattr(doc._, name) for name in text_fields()})
            for doc in docs
        ]
        for doc, result in zip(docs, self.pipeline.tag_many(items), strict=True):
            if isinstance(result, MnerInputError):
                if str(result) != EMPTY_TEXT:  # a doc of only spaces has no entity; anything else is an error
                    raise result
                doc.ents = ()
                continue
            spans = []
            for entity in result.entities:
                span = doc.char_span(entity.start_char, entity.end_char, entity.type, alignment_mode="expand")
                if span is not None:
                    span._.score = entity.score
                    spans.append(span)
            doc.ents = filter_spans(spans)
        return docs


@Language.factory(
    "mner",
    default_config={
        "model": "default",
        "files": {},
        "runtime": "auto",
        "threads": 1,
        "min_score": 0.0,
        "batch_size": 32,
    },
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "span._.score"],
)
def make_mner_component(
    nlp: Language,
    name: str,
    model: str,
    files: dict,
    runtime: str,
    threads: int,
    min_score: float,
    batch_size: int,
) -> MnerComponent:
    """The component: ``model`` a packaged model's name or a folder, ``files`` the files that fill its channels
    (``{"knowledge": "kg.sqlite", "context": "context.tsv"}``), the rest as ``mner.serving.pipeline.Pipeline``'s."""
    pipeline = Pipeline(model, files or None, runtime=runtime, threads=threads, min_score=min_score)
    return MnerComponent(pipeline, batch_size)
