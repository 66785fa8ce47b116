"""What tagging one post gives: ``TagResult``, and its one JSON form (``to_dict``), which ``mner predict
--json``, ``mner tag`` and ``POST /v1/tag`` all emit::

    {"id": "...",                  # only when a post id was given
     "tokens": ["...", ...],
     "entities": [{"start": 0, "end": 2, "type": "PER", "text": "..."}],   # token offsets, end exclusive
     "attributes": [{"label": "Egyptian cat", "probability": 0.8213}],    # top 5; [] without an image;
                                   # null: the image was not read (the model reads none; --attributes,
                                   # "attributes": true or attributes=True ask for it)
     "knowledge": {...} or null,   # Knowledge.to_dict() when a KG is open
     "caption": "..." or null,     # the caption the post was tagged with
     "context": "..." or null,     # the context text the post was tagged with
     "warnings": ["..."],          # what the post had and could not use (a context listing nothing); [] mostly
     "read_as": {...}}             # how the context was read (mner.serving.reading), only for a model reading
                                   # it and a post with one; left out of mner tag's records
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mner.channels.spec import text_fields
from mner.data import Span

if TYPE_CHECKING:
    from mner.knowledge import Knowledge


@dataclass(frozen=True)
class ImageAttribute:
    """An ImageNet class seen in the post's image, with its probability."""

    label: str
    probability: float

    def to_dict(self) -> dict:
        return {"label": self.label, "probability": round(float(self.probability), 4)}


@dataclass(frozen=True)
class TagResult:
    """One tagged post: its tokens, entities, and what its image and the KG contributed."""

    tokens: tuple[str, ...]
    entities: tuple[Span, ...]
    # its image's top classes; () without an image; None: the image was not read (mner.serving.pipeline)
    attributes: tuple[ImageAttribute, ...] | None = ()
    knowledge: Knowledge | None = None  # None: no KG was open
    id: str | None = None
    # the channels' text fields the post was tagged with (mner.channels.spec.text_fields)
    caption: str | None = None
    context: str | None = None
    warnings: tuple[str, ...] = ()  # what this post could not use (a context that lists nothing readable)
    read_as: dict | None = (
        None  # how its context was read (mner.serving.reading); None: not read, or none given
    )

    def to_dict(self) -> dict:
        out: dict = {} if self.id is None else {"id": self.id}
        out["tokens"] = list(self.tokens)
        out["entities"] = [s.to_dict() for s in self.entities]
        out["attributes"] = None if self.attributes is None else [a.to_dict() for a in self.attributes]
        out["knowledge"] = None if self.knowledge is None else self.knowledge.to_dict()
        for name in text_fields():
            out[name] = getattr(self, name)
        out["warnings"] = list(self.warnings)
        if self.read_as is not None:
            out["read_as"] = self.read_as
        return out
