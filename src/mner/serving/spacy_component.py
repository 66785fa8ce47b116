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
``span._.score``. An image is read only by a model that uses it (``Pipeline.image_readers``). spaCy registers the factory from mner's ``spacy_factories`` entry point: ``import mner`` never
imports spaCy, and importing this module loads no model (the factory does, when the component is added).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import filter_spans, minibatch, raise_error

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
    """Sets ``doc.ents`` (and ``span._.score``) from an mner Pipeline; see the module docstring.

    A doc that cannot be tagged (an image that is not one, an extension value of the wrong type) goes to the
    component's error handler (spaCy's protocol: ``nlp.set_error_handler``, ``get_error_handler``) with that doc
    alone; the other docs of its batch are tagged. spaCy's default handler raises; one that returns leaves that
    doc out of ``nlp.pipe``'s output, as spaCy's own components do."""

    def __init__(self, pipeline: Pipeline, batch_size: int = 32, name: str = "mner"):
        self.pipeline, self.batch_size, self.name = pipeline, batch_size, name
        _register_extensions()

    def set_error_handler(self, error_handler: Callable) -> None:
        """Called as ``error_handler(name, component, [doc], error)`` for each doc that cannot be tagged."""
        self.error_handler = error_handler

    def get_error_handler(self) -> Callable:
        return getattr(self, "error_handler", raise_error)

    def __call__(self, doc: Doc) -> Doc:
        ((doc, error),) = self._tag([doc])
        if error is not None:
            raise error  # spaCy's Language.__call__ hands it to the error handler
        return doc

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        """Docs tagged in batches: one image-encoder and one model call per ``batch_size`` docs."""
        handler = self.get_error_handler()
        for batch in minibatch(docs, size=batch_size or self.batch_size):
            for doc, error in self._tag(batch):
                if error is None:
                    yield doc
                else:
                    handler(self.name, self, [doc], error)

    def _tag(self, docs: list[Doc]) -> list[tuple[Doc, Exception | None]]:
        """Each doc, tagged, with None; or untouched, with the error that kept it from being tagged."""
        items: dict[int, PostInput] = {}
        errors: dict[int, Exception] = {}
        for i, doc in enumerate(docs):
            try:
                items[i] = post_input(doc)
            except TypeError as err:
                errors[i] = err
        results = dict(zip(items, self.pipeline.tag_many(list(items.values())), strict=True))
        out = []
        for i, doc in enumerate(docs):
            result = errors.get(i) or results[i]
            if isinstance(result, MnerInputError) and str(result) == EMPTY_TEXT:
                doc.ents = ()  # a doc of only spaces has no entity; anything else is an error
                result = None
            elif not isinstance(result, Exception):
                _set_entities(doc, result.entities)
                result = None
            out.append((doc, result))
        return out


def post_input(doc: Doc) -> PostInput:
    """What mner tags for ``doc``: its text, and the post's fields from its ``doc._`` extensions.

    Raises:
        TypeError: an extension holds a value of another type, naming it and the type it takes.
    """
    image = doc._.image
    if image is not None and not isinstance(image, str | bytes | os.PathLike):
        raise TypeError(
            f"doc._.image: expected a path (str or os.PathLike) or the image file's bytes, got "
            f"{type(image).__name__}"
        )
    fields = {name: getattr(doc._, name) for name in text_fields()}
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"doc._.{name}: expected a str (or None), got {type(value).__name__}")
    return PostInput(doc.text, image, **fields)


def _set_entities(doc: Doc, entities) -> None:
    spans = []
    for entity in entities:
        span = doc.char_span(entity.start_char, entity.end_char, entity.type, alignment_mode="expand")
        if span is not None:
            span._.score = entity.score
            spans.append(span)
    doc.ents = filter_spans(spans)


def _check_config(min_score, batch_size: int, threads: int) -> None:
    """spaCy checks the types of most config values, but passes a str for a float; these ones mner checks.

    Raises:
        MnerInputError: naming the value and what it takes.
    """
    number = (int, float)
    if not isinstance(min_score, number) or isinstance(min_score, bool):
        raise MnerInputError(f"mner component: min_score {min_score!r}: expected a number from 0 to 1")
    for key, value in (("batch_size", batch_size), ("threads", threads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MnerInputError(f"mner component: {key} {value!r}: expected a whole number, at least 1")


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
    _check_config(min_score, batch_size, threads)
    pipeline = Pipeline(model, files or None, runtime=runtime, threads=threads, min_score=min_score)
    return MnerComponent(pipeline, batch_size, name)
