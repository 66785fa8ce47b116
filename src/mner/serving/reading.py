"""How a model read a post's context: the entities (and kinds) it understood, and the path the post took.

The one place that asks the context parser (``mner.channels.context``) what a context says, for what users are
shown — the ``read_as`` object of ``mner predict --json``, ``POST /v1/tag`` and the web demo::

    {"entities": [{"name": "Bears", "kind": "sports team", "type": "ORG", "in_post": true}, ...],
     "how": "list",                     # list (a known form) | aligned (names found whatever the markup) | ...
     "route": "typed",                  # typed | untyped | none for a model with paths; "context" for one without
     "path": "the context model: ..."}  # the route in words

It is null for a model that does not read the context, and for a post given none.
"""

from __future__ import annotations

from collections.abc import Sequence

ROUTE_WORDS = {
    "typed": "the context model: the list names words of the post with kinds that give their types",
    "untyped": "the untyped path: the list names words of the post, but no kind gives a type",
    "none": "the text path (what --model text gives): the context names nothing in the post that can be read",
    "context": "the model reads the context as it was trained to (it has no text path)",
}


def context_reading(runner, tokens: Sequence[str], context: str | None) -> dict | None:
    """``read_as`` for a post (its ``tokens`` as tagged, its ``context``) under ``runner`` (a model on any runtime;
    ``mner.runtime.runners.RoutedRunner`` says its route); None when the model reads no context or none is
    given."""
    from mner.channels.context import entity_type
    from mner.channels.reading import placed_names, read_context
    from mner.inputs.markers import join

    config = runner.config
    if "context" not in config.channels or not context:
        return None
    read = tuple(join(tokens)[0]) if config.join_markers else tuple(tokens)
    reading = read_context(read, context, config.context.prose_fallback)
    labels = config.context.labels
    placed = placed_names(read, [(name, kind or "") for name, kind in reading.entities], labels)
    entities = [
        {"name": name, "kind": kind, "type": entity_type(kind, labels), "in_post": in_post}
        for (name, kind), in_post in zip(reading.entities, placed, strict=True)
    ]
    route = _route(runner, tokens, context)
    return {"entities": entities, "how": reading.how, "route": route, "path": ROUTE_WORDS[route]}


def _route(runner, tokens: Sequence[str], context: str) -> str:
    """The route ``runner`` takes for the post (``RoutedRunner.route``), or "context" for a model without paths."""
    from mner.data import Post

    if not hasattr(runner, "paths"):  # one model for every post: no route to take
        return "context"
    return runner.route(Post(tuple(tokens), context=context))
