"""The one place a post's channels are filled, for training, evaluation and tagging alike.

A model reads a post's text and, by its config, some of: a caption, knowledge (the isA triples of the KG
entity found for the post), the image's attributes and regions. ``ChannelSources`` holds what the user
gave — a captions file, a KG, image features (a feature cache, or features computed from pixels by the
caller) — and ``fill`` returns new posts with every channel filled the same way wherever it is called:

- caption: the post's own; else the captions file's, by image id; else, for a model that reads captions
  and a post with image features, the image's attribute labels joined as words ("Egyptian cat tabby ...").
- context: the post's own; else the context file's, by image id or by post id (the file's header says
  which). The model reads it as text after the post, through the fusion, or aligned to the post's tokens
  (``mner.channels.context``), as its config says.
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

from mner.data import MnerInputError, Post, read_captions, read_context

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
    context_key: str | None = None  # what the context source is keyed by: "image_id" or "id"
    searched: int = 0  # posts the KG was asked about

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
        if "context" in self.missing:
            parts.append(
                f"{self.found.get('context', 0)} with context matched by {self.context_key or 'id'} "
                f"({len(self.missing['context'])} without one)"
            )
        elif self.found.get("context"):
            parts.append(f"{self.found['context']} with context")
        if "images" in self.missing:
            parts.append(
                f"{self.found.get('image', 0)} with image features ({len(self.missing['images'])} without)"
            )
        return ", ".join(parts)

    def absent(self, channels: Sequence[str]) -> dict[str, int]:
        """For each of ``channels`` (a model's) other than text: how many posts had no source for it, where some
        had none (for knowledge: posts no KG was asked about; the KG knowing nothing of a post is an answer)."""
        have = {**self.found, "knowledge": self.searched}
        lacking = {c: self.posts - have.get(c, 0) for c in channels if c != "text"}
        return {c: n for c, n in lacking.items() if n}

    def warning(self, channels: Sequence[str], hints: Mapping[str, str] | None = None) -> str | None:
        """One line on the channels of ``channels`` (a model's) that some posts had no source for, or None:
        ``the model was trained with 'context', absent for 1 of 4 posts (tagged without it)``; ``hints``
        says, by channel, how the user can give it (``--kg``)."""
        absent = self.absent(channels)
        if not absent:
            return None
        if self.posts == 1:
            line = " and ".join(f"'{c}'" for c in absent) + ", absent for this post"
        else:
            line = "; ".join(f"'{c}', absent for {n} of {self.posts} posts" for c, n in absent.items())
        line = (
            "the model was trained with " + line + f" (tagged without {'it' if len(absent) == 1 else 'them'}"
        )
        given = [hints[c] for c in absent if hints and c in hints]
        return line + (
            f"; give {'it' if len(absent) == 1 else 'them'} with {', and '.join(given)})" if given else ")"
        )


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
    context: Mapping[str, str] | None = None  # free text by image id or post id (``context_key``)
    context_key: str = "image_id"  # "image_id" or "id": what the context file's first column holds
    policy: str = "image-then-text"  # the knowledge search's fallback (mner.knowledge.POLICIES)

    @classmethod
    def open(
        cls,
        captions: str | Path | None = None,
        kg: str | Path | None = None,
        images_cache: str | Path | None = None,
        backbone: str | None = None,
        context: str | Path | None = None,
    ) -> ChannelSources:
        """Read the captions and context TSVs, open the KG and the feature cache (checked against ``backbone``).

        Raises:
            MnerInputError: a file is missing or is not what it should be.
        """
        caption_map = read_captions(captions) if captions is not None else None
        context_map, context_key = read_context(context) if context is not None else (None, "image_id")
        store = None
        if kg is not None:
            from mner.knowledge import open_kg

            store = open_kg(kg)
        images = None
        if images_cache is not None:
            from mner.vision import FeatureCache

            images = FeatureCache.open(images_cache, backbone=backbone)
        return cls(caption_map, store, images, context_map, context_key)

    def unsourced_warning(self, channels: Sequence[str]) -> str | None:
        """``unsourced_warning`` for these sources."""
        return unsourced_warning(channels, kg=self.kg is not None, context=self.context is not None)

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
        if "context" in channels and self.context is None:
            raise MnerInputError("the model config enables the 'context' channel: pass --context FILE")

    def fill(
        self,
        posts: Sequence[Post],
        channels: Sequence[str] = ("text",),
        features: Sequence[ImageFeatures | None] | None = None,
    ) -> FilledPosts:
        """New posts with their channels filled for a model reading ``channels``; the inputs are unchanged.

        Args:
            features: each post's image features, computed by the caller (the Pipeline, from pixels), in place
                of the sources' feature cache; the filled posts then name them by their position.
        """
        if features is not None and len(features) != len(posts):
            raise ValueError(f"{len(posts)} posts but {len(features)} image features")
        images = (
            self.images if features is None else {f"#{i}": f for i, f in enumerate(features) if f is not None}
        )
        report = ChannelReport(
            posts=len(posts), context_key=None if self.context is None else self.context_key
        )
        for source, given in (("captions", self.captions), ("images", images), ("context", self.context)):
            if given is not None:
                report.missing[source] = []
        out, found = [], []
        for i, post in enumerate(posts):
            if features is None:
                feats = images.get(post.image) if images is not None and post.image is not None else None
            else:
                feats = features[i]
            if images is not None and feats is None:
                report.missing["images"].append(post.image or post.id)
            caption = post.caption or self._lookup(self.captions, post.image, "captions", report, post)
            if caption is None and feats is not None and "caption" in channels:
                caption = attribute_caption(feats.attributes)
            key = post.image if self.context_key == "image_id" else post.id
            context = post.context or self._lookup(self.context, key, "context", report, post)
            knowledge = None
            changes = {"caption": caption, "context": context}
            if features is not None:
                changes["image"] = None if feats is None else f"#{i}"
            if self.kg is not None:
                from mner.knowledge import post_knowledge

                vector = None if feats is None else feats.vector
                knowledge = post_knowledge(self.kg, post.tokens, vector, policy=self.policy)
                changes["knowledge"] = knowledge_words(knowledge)
                report.searched += 1
            new = dataclasses.replace(post, **changes)
            for channel, present in (
                ("caption", new.caption),
                ("knowledge", new.knowledge),
                ("context", new.context),
                ("attributes", feats),
                ("image", feats),
            ):
                if present:
                    report.found[channel] = report.found.get(channel, 0) + 1
            out.append(new)
            found.append(knowledge)
        return FilledPosts(out, found, images, report)

    @staticmethod
    def _lookup(
        source: Mapping[str, str] | None, key: str | None, name: str, report: ChannelReport, post: Post
    ) -> str | None:
        """``source[key]`` (None when empty); a miss is counted in the report."""
        if source is None:
            return None
        found = (source.get(key) or None) if key is not None else None
        if found is None:
            report.missing[name].append(key or post.id)
        return found

    def close(self) -> None:
        """Close the KG and the feature cache."""
        for source in (self.kg, self.images):
            close = getattr(source, "close", None)
            if close is not None:
                close()


def unsourced_warning(channels: Sequence[str], kg: bool, context: bool) -> str | None:
    """One line, before any post is tagged, on the channels of ``channels`` (a model's) that a job without a KG
    (``kg``) or a context file (``context``) cannot fill for every post; None when it can. A post can bring
    its own caption, context and image; only the KG gives knowledge."""
    parts = []
    if "knowledge" in channels and not kg:
        parts.append("'knowledge', and no KG is given (--kg): every post is tagged without it")
    if "context" in channels and not context:
        parts.append("'context', and no context file is given: a post without its own is tagged without it")
    return "the model was trained with " + "; ".join(parts) if parts else None


def knowledge_words(knowledge: Knowledge) -> tuple[str, ...]:
    """What a post's ``knowledge`` channel reads of a ``Knowledge``: its triples as compact words."""
    return tuple(knowledge.words(compact=True))


def attribute_caption(attributes: Sequence[tuple[str, float]]) -> str:
    """A caption made of an image's attribute labels, most probable first: ``"Egyptian cat tabby tiger cat"``."""
    return " ".join(label for label, _ in attributes)
