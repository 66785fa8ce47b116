"""The one place a post's channels are filled, for training, evaluation and tagging alike.

A model reads a post's text and, by its config, some of: a caption, knowledge (the isA triples of the KG
entity found for the post), the image's attributes and regions. ``ChannelSources`` holds what the user
gave — a captions file, a KG, image features (a feature cache, or features computed from pixels by the
caller) — and ``fill`` returns new posts with every channel filled the same way wherever it is called:

- caption: the post's own; else the captions file's, by image id; else, for a model that reads captions
  and a post with image features, the image's attribute labels joined as words ("Egyptian cat tabby ...").
- knowledge: with a KG, ``post_knowledge(kg, tokens, image vector)``, the paper's search: the image vector
  drives the image match, a post without image features takes the text fallback (policy
  "image-then-text"); ``Post.knowledge`` is the result's triples as compact words.
- attributes and image: the post's features, found by ``Post.image`` in ``FilledPosts.images``; a post
  without them is masked by the model, never given a zero image.

``FilledPosts.report`` says what was found and what was missing. Adding a channel means adding its source
here: ``mner train``, ``mner evaluate``, the Pipeline (``predict``, ``tag``, ``serve``) and the benchmarks all
fill posts through this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mner.data import MnerInputError, Post, read_captions

if TYPE_CHECKING:
    from mner.knowledge import Knowledge, KnowledgeStore
    from mner.vision import ImageFeatures


class FeatureLookup(Protocol):
    """Image features by image id: a ``mner.vision.FeatureCache`` or a dict."""

    def get(self, image_id: str) -> ImageFeatures | None: ...


@dataclass
class ChannelReport:
    """What filling found: posts with each channel, and the ids of posts a given source had nothing for."""

    posts: int = 0
    found: dict[str, int] = field(default_factory=dict)  # channel → posts that have it
    missing: dict[str, list[str]] = field(default_factory=dict)  # source → image (or post) ids it lacked

    def summary(self) -> str:
        """One line: ``3257 posts, 3257 with a caption (0 image ids without one), 1890 with knowledge``."""
        parts = [f"{self.posts} posts"]
        if "caption" in self.found or "captions" in self.missing:
            parts.append(
                f"{self.found.get('caption', 0)} with a caption"
                + (
                    f" ({len(self.missing['captions'])} image ids without one)"
                    if "captions" in self.missing
                    else ""
                )
            )
        if self.found.get("knowledge"):
            parts.append(f"{self.found['knowledge']} with knowledge")
        if "images" in self.missing:
            parts.append(
                f"{self.found.get('image', 0)} with image features ({len(self.missing['images'])} without)"
            )
        return ", ".join(parts)

    def absent(self, channels: Sequence[str]) -> dict[str, int]:
        """For each of ``channels`` (a model's) other than text: how many posts lack it, where some do."""
        lacking = {c: self.posts - self.found.get(c, 0) for c in channels if c != "text"}
        return {c: n for c, n in lacking.items() if n}


@dataclass
class FilledPosts:
    """Posts with their channels filled, the knowledge found for each, and where their image features are."""

    posts: list[Post]
    knowledge: list[Knowledge | None]  # None where no KG was given
    images: FeatureLookup | None  # the features the tagger reads, by ``Post.image``
    report: ChannelReport


@dataclass
class ChannelSources:
    """What a user gave to fill channels from; each source is optional."""

    captions: Mapping[str, str] | None = None  # by image id
    kg: KnowledgeStore | None = None
    images: FeatureLookup | None = None  # by image id
    policy: str = "image-then-text"  # the knowledge search's fallback (mner.knowledge.POLICIES)

    @classmethod
    def open(
        cls,
        captions: str | Path | None = None,
        kg: str | Path | None = None,
        images_cache: str | Path | None = None,
        backbone: str | None = None,
    ) -> ChannelSources:
        """Read the captions TSV, open the KG and the feature cache (checked against ``backbone``).

        Raises:
            MnerInputError: a file is missing or is not what it should be.
        """
        caption_map = read_captions(captions) if captions is not None else None
        store = None
        if kg is not None:
            from mner.knowledge import open_kg

            store = open_kg(kg)
        images = None
        if images_cache is not None:
            from mner.vision import FeatureCache

            images = FeatureCache.open(images_cache, backbone=backbone)
        return cls(caption_map, store, images)

    def require(self, channels: Sequence[str]) -> None:
        """A config enabling a channel with no source for it fails at the start, not after an epoch."""
        for channel in ("attributes", "image"):
            if channel in channels and self.images is None:
                raise MnerInputError(
                    f"the model config enables the '{channel}' channel: pass --images-cache FILE"
                )
        if "caption" in channels and self.captions is None:
            raise MnerInputError("the model config enables the 'caption' channel: pass --captions FILE")
        if "knowledge" in channels and self.kg is None:
            raise MnerInputError("the model config enables the 'knowledge' channel: pass --kg FILE")

    def fill(
        self,
        posts: Sequence[Post],
        channels: Sequence[str] = ("text",),
        features: Mapping[str, ImageFeatures] | None = None,
    ) -> FilledPosts:
        """New posts with their channels filled for a model reading ``channels``; the inputs are unchanged.

        Args:
            features: image features by ``Post.image`` computed by the caller (the Pipeline, from pixels);
                they take the place of the sources' feature cache.
        """
        images = features if features is not None else self.images
        report = ChannelReport(posts=len(posts))
        if self.captions is not None:
            report.missing["captions"] = []
        if images is not None:
            report.missing["images"] = []
        out, found = [], []
        for post in posts:
            feats = images.get(post.image) if images is not None and post.image is not None else None
            if images is not None and feats is None:
                report.missing["images"].append(post.image or post.id)
            caption = post.caption or None
            if caption is None and self.captions is not None:
                caption = self.captions.get(post.image) or None if post.image is not None else None
                if caption is None:
                    report.missing["captions"].append(post.image or post.id)
            if caption is None and feats is not None and "caption" in channels:
                caption = attribute_caption(feats.attributes)
            knowledge = words = None
            if self.kg is not None:
                from mner.knowledge import post_knowledge

                knowledge = post_knowledge(
                    self.kg, post.tokens, None if feats is None else feats.vector, policy=self.policy
                )
                words = knowledge_words(knowledge)
            new = dataclasses.replace(
                post, caption=caption, knowledge=words if self.kg is not None else post.knowledge
            )
            for channel, present in (
                ("caption", new.caption),
                ("knowledge", new.knowledge),
                ("attributes", feats),
                ("image", feats),
            ):
                if present:
                    report.found[channel] = report.found.get(channel, 0) + 1
            out.append(new)
            found.append(knowledge)
        return FilledPosts(out, found, images, report)

    def close(self) -> None:
        """Close the KG and the feature cache."""
        for source in (self.kg, self.images):
            close = getattr(source, "close", None)
            if close is not None:
                close()


def knowledge_words(knowledge: Knowledge) -> tuple[str, ...]:
    """What a post's ``knowledge`` channel reads of a ``Knowledge``: its triples as compact words."""
    return tuple(knowledge.words(compact=True))


def attribute_caption(attributes: Sequence[tuple[str, float]]) -> str:
    """A caption made of an image's attribute labels, most probable first: ``"Egyptian cat tabby tiger cat"``."""
    return " ".join(label for label, _ in attributes)
