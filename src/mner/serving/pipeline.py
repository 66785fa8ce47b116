"""One object that tags raw posts end to end; ``mner predict``, ``mner tag`` and the HTTP service share it.

A raw post (text or tokens, an optional image as a file or bytes, an optional caption) is checked and its
image decoded (``mner.vision.decode``, the checks every mner image goes through), the images of a batch go
through one encoder call (the encoder of the model's ``image_backbone``, loaded on the first image), then
``mner.channels.sources`` fills the post's channels exactly as training does (caption, knowledge from the KG with
the image vector, attributes and regions) and the tagger tags them. Each post gives a ``TagResult``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mner.channels.sources import ChannelReport, ChannelSources
from mner.data import MnerInputError, Post, Span, tokenize
from mner.serving.result import ImageAttribute, TagResult

if TYPE_CHECKING:
    import numpy as np

    from mner.vision import ImageEncoder, ImageFeatures

EMPTY_TEXT = "text is empty: expected the words of a post"
UPLOAD_NAME = "<upload>"  # what errors call an image given as bytes


@dataclass(frozen=True)
class PostInput:
    """One raw post: its text, an optional image (a path, or the file's bytes), caption, context and id."""

    text: str
    image: str | Path | bytes | None = None
    caption: str | None = None
    post_id: str | None = None
    # words already split (JSONL "tokens"): used instead of tokenising text
    tokens: Sequence[str] | None = None
    context: str | None = None  # free text about the post (an LLM's notes on it)


@dataclass
class Prepared:
    """A post that passed the input checks: its tokens and its image's pixels (or None)."""

    item: PostInput
    tokens: tuple[str, ...]
    pixels: np.ndarray | None  # shape: (input_size, input_size, 3) uint8


class Pipeline:
    """A tagger, its image encoder (loaded on the first image) and an optional KG.

    Safe to share between threads: one batch is tagged at a time (``prepare`` runs unlocked, alongside).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        kg: str | Path | None = None,
        context: str | Path | None = None,
        runtime: str = "auto",
    ):
        """Load the tagger (``None``: the shipped model), open the KG file and read the context TSV, if given.

        Raises:
            MnerInputError: a bad model folder, KG or context file. A model with a 'knowledge' channel and no
            KG tags with that channel masked (as for a post the KG knows nothing about); likewise a post
            without context.
        """
        from mner.runtime.runners import load_tagger
        from mner.vision.config import EncoderConfig

        self.model = model
        self.kg_path = kg
        self.runtime = runtime
        self.tagger = load_tagger(model, runtime)  # ONNX Runtime when the model has a current export
        self.channels = list(self.tagger.config.channels)
        self.sources = ChannelSources.open(kg=kg, context=context)
        self.encoder_config = EncoderConfig.for_backbone(self.tagger.config.image_backbone)
        self.last_report = ChannelReport()  # what the last batch's channel filling found
        self._encoder: ImageEncoder | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._decoder_lock = threading.Lock()

    @property
    def kg(self):
        """The open KG (a ``mner.knowledge.KnowledgeStore``), or None."""
        return self.sources.kg

    @property
    def encoder(self) -> ImageEncoder:
        """The image encoder, loaded on first use."""
        if self._encoder is None:
            from mner.runtime.runners import load_image_encoder

            self._encoder = load_image_encoder(self.encoder_config, self.runtime)
        return self._encoder

    def describe(self) -> dict:
        """What is loaded, for a health check."""
        return {
            "model": str(self.model) if self.model is not None else "default",
            "channels": list(self.channels),
            "kg": str(self.kg_path) if self.kg_path is not None else None,
            "image_backbone": self.tagger.config.image_backbone,
            "runtime": "onnx" if type(self.tagger).__name__ == "OnnxTagger" else "torch",
            "warnings": self.warnings(),
        }

    def warnings(self) -> list[str]:
        """What this pipeline cannot fill for every post (``mner.channels.sources.unsourced_warning``): one line, or none."""
        warning = self.sources.unsourced_warning(self.channels)
        return [] if warning is None else [warning]

    def tag(
        self,
        text: str,
        image: str | Path | bytes | None = None,
        caption: str | None = None,
        post_id: str | None = None,
        context: str | None = None,
    ) -> TagResult:
        """Tag one post.

        Raises:
            MnerInputError: the text is empty.
            ImageError: the image cannot be used (the error names it and says why).
        """
        result = self.tag_many([PostInput(text, image, caption, post_id, context=context)])[0]
        if isinstance(result, MnerInputError):
            raise result
        return result

    def tag_many(self, items: Sequence[PostInput]) -> list[TagResult | MnerInputError]:
        """Tag a batch: one encoder call for all its images, one tagger call for all its posts.

        A post with bad input gives its MnerInputError (or ImageError) in its place; the others are tagged.
        """
        with self._lock:
            return self._tag_prepared(self.prepare_many(items))

    def tag_prepared(self, prepared: Sequence[Prepared | MnerInputError]) -> list[TagResult | MnerInputError]:
        """``tag_many`` of posts already through ``prepare``: the same results, errors kept in their places."""
        with self._lock:
            return self._tag_prepared(list(prepared))

    def _tag_prepared(self, checked: list[Prepared | MnerInputError]) -> list[TagResult | MnerInputError]:
        good = [c for c in checked if isinstance(c, Prepared)]
        features = self._encode([c.pixels for c in good])
        results = iter(self._tag_decoded(good, features))
        return [next(results) if isinstance(c, Prepared) else c for c in checked]

    def prepare_many(self, items: Sequence[PostInput]) -> list[Prepared | MnerInputError]:
        """``prepare`` of every item; images decoded on the configured threads (Pillow decodes without the GIL).
        Needs no lock (see ``prepare``)."""
        from mner.runtime.ort import threads

        with_images = sum(item.image is not None for item in items)
        if threads() < 2 or with_images < 2:
            return [self.prepare(item) for item in items]
        with self._decoder_lock:  # prepare_many may run on several threads
            if self._decoder is None:
                self._decoder = ThreadPoolExecutor(threads(), thread_name_prefix="mner-decode")
        return list(self._decoder.map(self.prepare, items))

    def close(self) -> None:
        """Close the KG file."""
        self.sources.close()

    # -------------------------------------------------------------------------------------- stages

    def prepare(self, item: PostInput) -> Prepared | MnerInputError:
        """A post's tokens and decoded pixels, or the error that says what is wrong with it.

        Needs no lock: call it from any thread, so that decoding the next posts' images overlaps tagging
        (the service and ``mner tag --threads 1`` do), then give the results to ``tag_prepared``.
        """
        from mner.vision.decode import load_pixels, pixels_from_bytes

        try:
            if item.tokens is not None:
                tokens = tuple(item.tokens)
            elif isinstance(item.text, str):
                tokens = tuple(tokenize(item.text))
            else:
                raise MnerInputError(f"text must be a string, got {type(item.text).__name__}")
            if not tokens:
                raise MnerInputError(EMPTY_TEXT)
            pixels = None
            if isinstance(item.image, bytes | bytearray | memoryview):
                pixels = pixels_from_bytes(bytes(item.image), self.encoder_config, UPLOAD_NAME)
            elif item.image is not None:
                pixels = load_pixels(item.image, self.encoder_config)
        except MnerInputError as err:
            return err
        return Prepared(item, tokens, pixels)

    def _encode(self, pixels: list[np.ndarray | None]) -> list[ImageFeatures | None]:
        """Image features of each post (None where it has no image), from one encoder call."""
        import numpy as np

        given = [p for p in pixels if p is not None]
        if not given:
            return [None] * len(pixels)
        encoded = iter(self.encoder.encode_pixels(np.stack(given)))  # stack shape: (B, size, size, 3)
        return [None if p is None else next(encoded) for p in pixels]

    def _tag_decoded(self, decoded: list[Prepared], features: list[ImageFeatures | None]) -> list[TagResult]:
        posts = [
            Post(
                d.tokens,
                id=d.item.post_id or f"#{i}",
                image=_image_id(d.item.image),
                caption=d.item.caption or None,
                context=d.item.context or None,
            )
            for i, d in enumerate(decoded)
        ]
        filled = self.sources.fill(posts, self.channels, features=features)
        self.last_report = filled.report
        spans = self.tagger.predict(filled.posts, images=filled.images) if posts else []
        return [
            _result(d.item.post_id, post, post_spans, feats, knowledge)
            for d, post, post_spans, feats, knowledge in zip(
                decoded, filled.posts, spans, features, filled.knowledge, strict=True
            )
        ]


def _image_id(image: str | Path | bytes | None) -> str | None:
    """The id of a post's image, as a feature cache and a captions or context file name it: the file's stem."""
    return Path(image).stem if isinstance(image, str | Path) else None


def _result(post_id: str | None, post: Post, spans: list[Span], features, knowledge) -> TagResult:
    attributes = (
        () if features is None else tuple(ImageAttribute(label, p) for label, p in features.attributes)
    )
    return TagResult(post.tokens, tuple(spans), attributes, knowledge, post.caption, post_id, post.context)
