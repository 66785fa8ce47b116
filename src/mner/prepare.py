"""Join posts with their context once, before training or tagging: captions by image id, knowledge-graph
triples from the knowledge stage. Returns new posts; the inputs are never changed.

``knowledge_words`` and ``attribute_caption`` are the two conversions that training and ``mner.pipeline``
(prediction) must do identically."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from mner.data import MnerInputError, Post


@dataclass
class ContextReport:
    """What the join found: how many posts got each context, and which had none."""

    posts: int = 0
    with_caption: int = 0
    with_knowledge: int = 0
    missing_captions: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.posts} posts"]
        if self.with_caption or self.missing_captions:
            parts.append(f"{self.with_caption} with a caption ({len(self.missing_captions)} image ids without one)")
        if self.with_knowledge:
            parts.append(f"{self.with_knowledge} with knowledge")
        return ", ".join(parts)


def attach_context(posts: Sequence[Post], captions: dict[str, str] | None = None, kg=None,
                   policy: str = "image-then-text") -> tuple[list[Post], ContextReport]:
    """Posts with ``caption`` (from ``captions`` by image id, unless the post has its own) and
    ``knowledge`` (the words of its KG triples) filled in."""
    report = ContextReport(posts=len(posts))
    out = []
    for post in posts:
        changes: dict = {}
        if captions is not None and post.caption is None:
            caption = captions.get(post.image) if post.image is not None else None
            if caption:
                changes["caption"] = caption
            else:
                report.missing_captions.append(post.image or post.id)
        if kg is not None:
            from mner.knowledge import post_knowledge

            words = knowledge_words(post_knowledge(kg, post.tokens, policy=policy))
            changes["knowledge"] = words
            report.with_knowledge += bool(words)
        new = dataclasses.replace(post, **changes) if changes else post
        report.with_caption += bool(new.caption)
        out.append(new)
    return out, report


def knowledge_words(knowledge) -> tuple[str, ...]:
    """What a post's ``knowledge`` channel reads of a ``Knowledge``: its triples as compact words."""
    return tuple(knowledge.words(compact=True))


def attribute_caption(attributes: Sequence[tuple[str, float]]) -> str:
    """A caption made of an image's attribute labels, most probable first: ``"Egyptian cat tabby tiger cat"``."""
    return " ".join(label for label, _ in attributes)


def check_channels(channels: Sequence[str], captions: dict | None, kg, images=None) -> None:
    """A config enabling a channel with no data for it fails at the start, not after an epoch."""
    for channel in ("attributes", "image"):
        if channel in channels and images is None:
            raise MnerInputError(f"the model config enables the '{channel}' channel: pass --images-cache FILE")
    if "caption" in channels and captions is None:
        raise MnerInputError("the model config enables the 'caption' channel: pass --captions FILE")
    if "knowledge" in channels and kg is None:
        raise MnerInputError("the model config enables the 'knowledge' channel: pass --kg FILE")
