"""Tagging posts with a model on any runtime: ``Runner`` builds the batches (``mner.inputs.batching``), asks its
runtime for the emissions, and decodes them with the one BIO-constrained Viterbi (``mner.decoding``); posts
longer than the model's window are tagged in consecutive windows, posts in batches. The PyTorch
``mner.model.torch_model.TorchModel`` and the ONNX Runtime ``mner.runtime.runners.OnnxRunner`` differ only in
``emissions``. No torch here."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from mner.config import ModelConfig
from mner.data import MnerInputError, Post, Span, spans_from_tags
from mner.decoding import CrfScores, viterbi
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

    def decode_batch(
        self, posts: Sequence[Post], images: Mapping[str, ImageFeatures] | None
    ) -> list[list[str]]:
        """BIO tags of each post of one batch (each within the model's window)."""
        batch = self.batches.build(posts, images=images)
        paths = viterbi(self.emissions(batch), batch.mask, self.crf_scores())
        return [[self.config.tags[i] for i in path] for path in paths]

    def predict(
        self, posts: Sequence[Post], batch_size: int = 64, images: Mapping[str, ImageFeatures] | None = None
    ) -> list[list[Span]]:
        """Entity spans for each post. Posts longer than ``max_post_tokens`` are tagged in consecutive
        windows of that length (logged), so no token is dropped."""
        return [
            spans_from_tags(tags, post.tokens)
            for post, tags in zip(posts, self.predict_tags(posts, batch_size, images), strict=True)
        ]

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
        for post in posts:
            if not post.tokens:
                raise MnerInputError(f"post {post.id!r} is empty: expected at least one token")
        originals, groups = posts, None
        if (
            self.config.join_markers
        ):  # the model reads "@" + "name" as "@name"; tags go back on the post's tokens
            from mner.inputs.markers import join

            joined = [join(p.tokens) for p in posts]
            groups = [g for _, g in joined]
            posts = [
                dataclasses.replace(p, tokens=t, tags=None) for p, (t, _) in zip(posts, joined, strict=True)
            ]
        limit = self.config.max_post_tokens
        pieces: list[tuple[int, Post]] = []
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
                pieces.append((i, dataclasses.replace(post, tokens=post.tokens[s : s + limit], tags=None)))
        tags: list[list[str]] = [[] for _ in posts]
        for s in range(0, len(pieces), batch_size):
            chunk = pieces[s : s + batch_size]
            for (i, _), row in zip(chunk, self.decode_batch([p for _, p in chunk], images), strict=True):
                tags[i].extend(row)
            if progress is not None:
                progress(s + len(chunk), len(pieces))
        if groups is not None:
            from mner.inputs.markers import split

            tags = [split(row, g, len(p.tokens)) for row, g, p in zip(tags, groups, originals, strict=True)]
        return tags
