"""The one place a post's channels are filled, for training, evaluation and tagging alike.

A model reads a post's text and, by its config, some of the channels ``mner.channels.spec`` declares.
``ChannelSources`` holds what the user gave — TSV files of text by post or image id (captions, contexts), a
KG, image features (a feature cache, or features computed from pixels by the caller) — and ``fill`` returns
new posts with every channel filled the same way wherever it is called:

- a words channel with a field (caption, context): the post's own; else its TSV's, by the key the TSV's
  header names (image id, or post id where the spec allows it); a caption missing for a post with image
  features, for a model that reads captions, is the image's attribute labels joined as words.
- knowledge: with a KG, ``post_knowledge(kg, tokens, image vector)``, the paper's search: the image vector
  drives the image match, a post without image features takes the text fallback (policy "image-then-text");
  ``Post.knowledge`` is the result's triples as compact words.
- attributes and image: the post's features, found by ``Post.image`` in ``FilledPosts.images``; a post without
  them is masked by the model, never given a zero image.

``FilledPosts.report`` says what was found and what was missing. ``mner train``, ``mner evaluate``, the Pipeline
(``predict``, ``tag``, ``serve``) and the benchmarks all fill posts through this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mner.channels.spec import CHANNELS, ChannelSpec
from mner.data import MnerInputError, Post, read_keyed_tsv

if TYPE_CHECKING:
    from mner.knowledge import Knowledge, KnowledgeStore
    from mner.vision import ImageFeatures


class FeatureLookup(Protocol):
    """Image features by image id: a ``mner.vision.FeatureCache`` or a dict."""

    def get(self, image_id: str) -> ImageFeatures | None: ...


@dataclass
class ChannelReport:
    """What filling found: posts with each channel, and the keys a given file had nothing for."""

    posts: int = 0
    found: dict[str, int] = field(default_factory=dict)  # channel → posts that have it
    missing: dict[str, list[str]] = field(default_factory=dict)  # channel → the keys its file lacked
    keys: dict[str, str] = field(default_factory=dict)  # channel → what its TSV is keyed by
    searched: int = 0  # posts the KG was asked about
    unreadable: dict[str, int] = field(
        default_factory=dict
    )  # channel → posts whose value lists nothing readable

    def summary(self) -> str:
        """One line: ``3257 posts, 3257 with a caption (0 image ids without one), 1890 with knowledge``."""
        parts = [f"{self.posts} posts"]
        seen: set[str] = set()
        for name, spec in CHANNELS.items():
            if spec.reads == "text" or spec.source in seen:
                continue
            if name in self.missing:
                seen.add(spec.source if spec.source == "features" else name)
                keyed = self.keys.get(name)
                lacking = len(self.missing[name])
                if spec.source == "features":
                    parts.append(f"{self.found.get(name, 0)} with image features ({lacking} without)")
                elif keyed == "image_id" and len(spec.keys) == 1:
                    parts.append(
                        f"{self.found.get(name, 0)} with {spec.noun} ({lacking} image ids without one)"
                    )
                else:
                    parts.append(
                        f"{self.found.get(name, 0)} with {spec.noun} matched by {keyed or 'id'} ({lacking} without one)"
                    )
            elif self.found.get(name):
                parts.append(f"{self.found[name]} with {spec.noun}")
        for name, n in self.unreadable.items():
            parts.append(
                f"{n} whose {CHANNELS[name].noun} lists no entity that can be read (tagged without it)"
            )
        return ", ".join(parts)

    def absent(self, channels: Sequence[str]) -> dict[str, int]:
        """For each of ``channels`` (a model's) other than text: how many posts had no source for it, where some
        had none (for knowledge: posts no KG was asked about; the KG knowing nothing of a post is an answer)."""
        # a channel only the KG fills is there for every post the KG was asked about
        have = {**self.found, **{c: self.searched for c, spec in CHANNELS.items() if spec.source == "kg"}}
        lacking = {c: self.posts - have.get(c, 0) for c in channels if CHANNELS[c].reads != "text"}
        return {c: n for c, n in lacking.items() if n}

    def warning(self, channels: Sequence[str], hints: Mapping[str, str] | None = None) -> str | None:
        """One line on the channels of ``channels`` (a model's) that some posts had no source for, or None:
        ``the model was trained with 'context', absent for 1 of 4 posts (tagged without it)``; ``hints``
        says, by channel, how the user can give it (``--kg``)."""
        absent = self.absent(channels)
        unread = _unreadable_line(
            {c: n for c, n in self.unreadable.items() if n and c in channels}, self.posts
        )
        if not absent:
            return unread
        if self.posts == 1:
            line = " and ".join(f"'{c}'" for c in absent) + ", absent for this post"
        else:
            line = "; ".join(f"'{c}', absent for {n} of {self.posts} posts" for c, n in absent.items())
        line = (
            "the model was trained with " + line + f" (tagged without {'it' if len(absent) == 1 else 'them'}"
        )
        given = list(dict.fromkeys(hints[c] for c in absent if hints and c in hints))
        line += (
            f"; give {'it' if len(absent) == 1 else 'them'} with {', and '.join(given)})" if given else ")"
        )
        return line + (f"; {unread}" if unread else "")


def _unreadable_line(unread: dict[str, int], posts: int) -> str | None:
    """``the context of 2 of 4 posts lists no entity that can be read (tagged without it)``, or None."""
    if not unread:
        return None
    if posts == 1:
        return (
            " and ".join(f"the post's {c} lists no entity that can be read" for c in unread)
            + " (tagged without it)"
        )
    return "; ".join(
        f"the {c} of {n} of {posts} posts lists no entity that can be read" for c, n in unread.items()
    ) + (" (tagged without it)")


@dataclass
class FilledPosts:
    """Posts with their channels filled, the knowledge found for each, and where their image features are."""

    posts: list[Post]
    knowledge: list[Knowledge | None]  # None where no KG was given
    images: FeatureLookup | None  # the features the model reads, by ``Post.image``
    report: ChannelReport
    unreadable: list[tuple[str, ...]] = field(
        default_factory=list
    )  # per post: list channels it could not read


@dataclass
class ChannelSources:
    """What a user gave to fill channels from; each source is optional."""

    texts: dict[str, Mapping[str, str]] = field(default_factory=dict)  # channel → its TSV's texts by key
    keys: dict[str, str] = field(
        default_factory=dict
    )  # channel → what its TSV is keyed by ("image_id" default)
    kg: KnowledgeStore | None = None
    images: FeatureLookup | None = None  # by image id
    policy: str = "image-then-text"  # the knowledge search's fallback (mner.knowledge.POLICIES)

    @classmethod
    def open(
        cls,
        files: Mapping[str, str | Path | Sequence[str | Path] | None] | None = None,
        backbone: str | None = None,
    ) -> ChannelSources:
        """Read, open or check the file each channel's spec names as its source (``files``: channel → path;
        channels that share a source, attributes and image, may name it once; a TSV source may be several files,
        one per data set, read as one).

        Raises:
            MnerInputError: a file is missing or is not what it should be; an unknown channel name; two TSVs of
            one channel keyed differently or giving one key twice.
        """
        sources = cls()
        for name, path in (files or {}).items():
            spec = CHANNELS[name]
            if path is None or (isinstance(path, list | tuple) and not path):
                continue
            if spec.source is None:
                raise MnerInputError(f"the '{name}' channel is not filled from a file")
            if spec.source == "tsv":
                sources.texts[name], sources.keys[name] = read_tsvs(path, spec)
            elif spec.source == "kg" and sources.kg is None:
                from mner.knowledge import open_kg

                sources.kg = open_kg(path)
            elif spec.source == "features" and sources.images is None:
                from mner.vision import FeatureCache

                sources.images = FeatureCache.open(path, backbone=backbone)
        return sources

    def given(self, spec: ChannelSpec) -> bool:
        """Whether a file source for the channel was given."""
        return {
            "tsv": spec.name in self.texts,
            "kg": self.kg is not None,
            "features": self.images is not None,
        }.get(spec.source, False)

    def unsourced_warning(self, channels: Sequence[str]) -> str | None:
        """``unsourced_warning`` for these sources."""
        return unsourced_warning(channels, {c for c in channels if self.given(CHANNELS[c])})

    def require(self, channels: Sequence[str]) -> None:
        """A config enabling a channel with no source for it fails at the start, not after an epoch."""
        for name in channels:
            spec = CHANNELS[name]
            if spec.source is not None and not self.given(spec):
                raise MnerInputError(
                    f"the model config enables the '{name}' channel: pass {spec.file_flag} FILE"
                )

    def fill(
        self,
        posts: Sequence[Post],
        channels: Sequence[str] = ("text",),
        features: Sequence[ImageFeatures | None] | None = None,
        lists: Sequence[str] = (),
    ) -> FilledPosts:
        """New posts with their channels filled for a model reading ``channels``; the inputs are unchanged.

        Args:
            features: each post's image features, computed by the caller (the Pipeline, from pixels), in place
                of the sources' feature cache; the filled posts then name them by their position.
            lists: the channels the model reads as a structured list (``ModelConfig.list_channels``): a post whose
                value lists nothing readable is counted (``report.unreadable``) and named in ``unreadable``.
        """
        if features is not None and len(features) != len(posts):
            raise ValueError(f"{len(posts)} posts but {len(features)} image features")
        images = (
            self.images if features is None else {f"#{i}": f for i, f in enumerate(features) if f is not None}
        )
        report = ChannelReport(posts=len(posts), keys={c: self.keys.get(c, "image_id") for c in self.texts})
        for name in self.texts:
            report.missing[name] = []
        if images is not None:
            for name in (c for c, spec in CHANNELS.items() if spec.source == "features"):
                report.missing[name] = []
        out, found, unreadable = [], [], []
        for i, post in enumerate(posts):
            feats = self._features(post, i, images, features, report)
            changes = {}
            for name, texts in self.texts.items():
                field_name = CHANNELS[name].field
                if getattr(post, field_name):
                    continue
                key = post.image if report.keys[name] == "image_id" else post.id
                text = (texts.get(key) or None) if key is not None else None
                if text is None:
                    report.missing[name].append(key or post.id)
                changes[field_name] = text
            if feats is not None:
                for name in channels:  # a caption stands in for a missing one with the image's labels
                    field_name = CHANNELS[name].field
                    if CHANNELS[name].from_attributes and not (
                        changes.get(field_name) or getattr(post, field_name)
                    ):
                        changes[field_name] = attribute_caption(feats.attributes)
            if features is not None:
                changes["image"] = None if feats is None else f"#{i}"
            knowledge = None
            if self.kg is not None:
                from mner.knowledge import post_knowledge

                vector = None if feats is None else feats.vector
                knowledge = post_knowledge(self.kg, post.tokens, vector, policy=self.policy)
                changes["knowledge"] = knowledge_words(knowledge)
                report.searched += 1
            new = dataclasses.replace(post, **changes)
            unread = tuple(c for c in lists if _unreadable(new, CHANNELS[c]))
            for name in unread:
                report.unreadable[name] = report.unreadable.get(name, 0) + 1
            unreadable.append(unread)
            for name, spec in CHANNELS.items():
                present = feats if spec.reads == "image" else getattr(new, spec.field or name, None)
                if spec.reads != "text" and present:
                    report.found[name] = report.found.get(name, 0) + 1
            out.append(new)
            found.append(knowledge)
        return FilledPosts(out, found, images, report, unreadable)

    @staticmethod
    def _features(post: Post, i: int, images, features, report: ChannelReport) -> ImageFeatures | None:
        """The post's image features: the caller's, or the feature cache's by image id (a miss counted)."""
        if features is not None:
            feats = features[i]
        else:
            feats = images.get(post.image) if images is not None and post.image is not None else None
        if images is not None and feats is None:
            for name, spec in CHANNELS.items():
                if spec.source == "features":
                    report.missing[name].append(post.image or post.id)
        return feats

    def close(self) -> None:
        """Close the KG and the feature cache."""
        for source in (self.kg, self.images):
            close = getattr(source, "close", None)
            if close is not None:
                close()


def read_tsvs(paths: str | Path | Sequence[str | Path], spec: ChannelSpec) -> tuple[dict[str, str], str]:
    """The texts of one or several TSV files of a channel, as one map (the files must share their key).

    Raises:
        MnerInputError: a bad file; a file keyed otherwise than the first; a key given by two files.
    """
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    texts, key = read_keyed_tsv(paths[0], spec.keys, spec.field)
    for path in paths[1:]:
        more, more_key = read_keyed_tsv(path, spec.keys, spec.field)
        if more_key != key:
            raise MnerInputError(
                f"keyed by {more_key}, but {paths[0]} by {key}: give files keyed alike", path
            )
        both = next((k for k in more if k in texts), None)
        if both is not None:
            raise MnerInputError(
                f"{key} {both!r} is in {paths[0]} too: a key may be given by one file only", path
            )
        texts.update(more)
    return texts, key


def unsourced_warning(channels: Sequence[str], sourced: set[str]) -> str | None:
    """One line, before any post is tagged, on the channels of ``channels`` (a model's) that a job with file
    sources for ``sourced`` cannot fill for every post; None when it can. A post can bring its own text fields
    and image; a channel without a field (knowledge) only its file gives."""
    parts = []
    for name in channels:
        spec = CHANNELS[name]
        if spec.source in (None, "features") or name in sourced:
            continue
        given = f"'{name}', and no {spec.file_noun} is given ({spec.file_flag})"
        if spec.field is None:
            parts.append(f"{given}: every post is tagged without it")
        elif spec.from_attributes:
            parts.append(f"{given}: a post without its own {spec.field} or an image is tagged without it")
        else:
            parts.append(f"{given}: a post without its own is tagged without it")
    return "the model was trained with " + "; ".join(parts) if parts else None


def image_readers(channels: Sequence[str], kg: bool) -> list[str]:
    """The channels of ``channels`` (a model's) that ``ChannelSources.fill`` gives something from a post's image
    features: an image channel (attributes, regions), a caption that stands in from the attribute labels, and
    knowledge when a KG is given (``kg``: the image vector drives its image match). Empty: the model's tags never
    depend on an image, and a Pipeline need not read one."""
    return [
        name
        for name in channels
        if CHANNELS[name].reads == "image"
        or CHANNELS[name].from_attributes
        or (CHANNELS[name].source == "kg" and kg)
    ]


def _unreadable(post: Post, spec: ChannelSpec) -> bool:
    """Whether the post carries a value for the channel from which its list cannot be read."""
    value = getattr(post, spec.field or spec.name, None)
    return bool(value) and spec.readable is not None and not spec.readable(value, post.tokens)


def knowledge_words(knowledge: Knowledge) -> tuple[str, ...]:
    """What a post's ``knowledge`` channel reads of a ``Knowledge``: its triples as compact words."""
    return tuple(knowledge.words(compact=True))


def attribute_caption(attributes: Sequence[tuple[str, float]]) -> str:
    """A caption made of an image's attribute labels, most probable first: ``"Egyptian cat tabby tiger cat"``."""
    return " ".join(label for label, _ in attributes)
