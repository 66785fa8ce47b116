"""Tagging posts with a model on any runtime: ``Runner`` builds the batches (``mner.inputs.batching``), asks its
runtime for the emissions, and decodes them with the one BIO-constrained Viterbi (``mner.decoding``); posts
longer than the model's window are tagged in consecutive windows, posts in batches; each entity gets its
probability from the CRF's forward–backward pass (``Span.score``). The PyTorch
``mner.model.torch_model.TorchModel`` and the ONNX Runtime ``mner.runtime.runners.OnnxRunner`` differ only in
``emissions``. No torch here."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from mner.config import ModelConfig
from mner.data import MnerInputError, Post, Span
from mner.decoding import CrfScores, entity_probabilities, forward_backward, never_entity, viterbi
from mner.inputs.batching import BatchBuilder, TaggingBatch

if TYPE_CHECKING:
    from mner.vision import ImageFeatures

log = logging.getLogger("mner.model")


class Runner:
    """A model that tags: ``predict`` returns spans and never mutates its posts. Subclasses give
    ``emissions`` and ``crf_scores``."""

    config: ModelConfig
    batches: BatchBuilder
    record: dict
    runtime: str  # "onnx" or "torch": where its emissions come from

    def emissions(self, batch: TaggingBatch) -> np.ndarray:
        """Per-token tag scores of a batch's posts, shape (batch, seq_len, num_tags): the runtime's one step."""
        raise NotImplementedError

    def crf_scores(self) -> CrfScores:
        """The CRF's scores, BIO-constrained over the model's tags."""
        raise NotImplementedError

    def use_features(self, threads: int = 1, quantized: bool | None = None, cached: bool = False) -> None:
        """A model reading a frozen encoder's features (``ModelConfig.features``): read them through the graph it
        was trained on (``features_graph``), or ``quantized`` True/False: int8/fp32, kept in the feature cache or
        not (``mner.inputs.frozen``). Nothing for other models."""
        for runner in self.runners():
            if runner.config.features is not None:
                runner.batches.inputs.use_features(threads, quantized, cached)

    def runners(self) -> list[Runner]:
        """The models behind this one (itself; a routed model's paths)."""
        return [self]

    def decode_batch(
        self, posts: Sequence[Post], images: Mapping[str, ImageFeatures] | None
    ) -> list[list[str]]:
        """BIO tags of each post of one batch (each within the model's window)."""
        batch = self.batches.build(posts, images=images)
        emissions = never_entity(self.emissions(batch), [p.tokens for p in posts], self.config.tags)
        paths = viterbi(emissions, batch.mask, self.crf_scores())
        return [[self.config.tags[i] for i in path] for path in paths]

    def decode_entities(
        self, posts: Sequence[Post], images: Mapping[str, ImageFeatures] | None
    ) -> list[list[Span]]:
        """The entities of each post of one batch (each within the model's window), each with its probability
        under the CRF (``mner.decoding.entity_probabilities``) as ``score``."""
        batch = self.batches.build(posts, images=images)
        emissions = never_entity(self.emissions(batch), [p.tokens for p in posts], self.config.tags)
        scores = self.crf_scores()
        paths = viterbi(emissions, batch.mask, scores)
        found = entity_probabilities(forward_backward(emissions, batch.mask, scores), paths, self.config.tags)
        return [
            [Span(s, e, etype, " ".join(post.tokens[s:e]), p) for s, e, etype, p in entities]
            for post, entities in zip(posts, found, strict=True)
        ]

    def predict(
        self, posts: Sequence[Post], batch_size: int = 64, images: Mapping[str, ImageFeatures] | None = None
    ) -> list[list[Span]]:
        """Entity spans for each post, each with its probability as ``score``. Posts longer than
        ``max_post_tokens`` are tagged in consecutive windows of that length (logged), so no token is dropped."""
        read, groups = self._as_read(posts)
        spans: list[list[Span]] = [[] for _ in posts]
        for (i, first, _), found in self._by_window(read, batch_size, images, self.decode_entities):
            spans[i].extend(
                Span(s.start + first, s.end + first, s.type, s.text, s.score) for s in found
            )  # a window's entities, at their places in the whole post
        if groups is None:
            return spans
        from mner.inputs.markers import split_spans

        return [split_spans(row, g, p.tokens) for row, g, p in zip(spans, groups, posts, strict=True)]

    def predict_tags(
        self,
        posts: Sequence[Post],
        batch_size: int = 64,
        images: Mapping[str, ImageFeatures] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[str]]:
        """BIO tags for each post, one per token; ``images`` maps ``Post.image`` to image features.

        Args:
            progress: called after each batch with (pieces tagged, pieces in all): a post is one piece, or one
                per window of a post over ``max_post_tokens``.
        """
        read, groups = self._as_read(posts)
        tags: list[list[str]] = [[] for _ in posts]
        for (i, _, _), row in self._by_window(read, batch_size, images, self.decode_batch, progress):
            tags[i].extend(row)
        if groups is None:
            return tags
        from mner.inputs.markers import split

        return [split(row, g, len(p.tokens)) for row, g, p in zip(tags, groups, posts, strict=True)]

    def _as_read(self, posts: Sequence[Post]) -> tuple[list[Post], list | None]:
        """The posts as the model reads them, and where each read token comes from (None: as written): with
        ``join_markers``, a lone "@"/"#" joined to the token after it (``mner.inputs.markers``)."""
        for post in posts:
            if not post.tokens:
                raise MnerInputError(f"post {post.id!r} is empty: expected at least one token")
        if not self.config.join_markers:
            return list(posts), None
        from mner.inputs.markers import join

        joined = [join(p.tokens) for p in posts]
        read = [dataclasses.replace(p, tokens=t, tags=None) for p, (t, _) in zip(posts, joined, strict=True)]
        return read, [g for _, g in joined]

    def _by_window(self, posts, batch_size, images, decode, progress=None):
        """``(post index, its first token, window), decode(...)`` of each window of each post, in order."""
        limit = self.config.max_post_tokens
        pieces: list[tuple[int, int, Post]] = []
        for i, post in enumerate(posts):
            if len(post.tokens) > limit:
                windows = -(-len(post.tokens) // limit)
                log.warning(
                    "post %r has %d tokens (model limit %d): tagged in %d windows",
                    post.id,
                    len(post.tokens),
                    limit,
                    windows,
                )
            for s in range(0, len(post.tokens), limit):
                pieces.append((i, s, dataclasses.replace(post, tokens=post.tokens[s : s + limit], tags=None)))
        for s in range(0, len(pieces), batch_size):
            chunk = pieces[s : s + batch_size]
            yield from zip(chunk, decode([p for _, _, p in chunk], images), strict=True)
            if progress is not None:
                progress(s + len(chunk), len(pieces))
