"""One object that tags raw posts end to end; ``mner predict``, ``mner tag`` and the HTTP service share it.

A raw post (text or tokens, an optional image as a file or bytes, its channels' text fields) is checked and its
image decoded (``mner.vision.decode``, the checks every mner image goes through), the images of a batch go
through one encoder call (the encoder of the model's ``image_backbone``, loaded on the first image), then
``mner.channels.sources`` fills the post's channels exactly as training does (caption, knowledge from the KG with
the image vector, attributes and regions) and the model tags them. Each post gives a ``TagResult``: its entities
with their probabilities (``Span.score``) and, for a post given as raw text, where each is in that text
(``Span.start_char``/``end_char``; ``Span.text`` is then the text's own characters there).

An image is read (decoded and encoded) only where something uses it: the model reads an image channel, a caption
made from the attribute labels, or knowledge from a KG (its image match) — ``mner.channels.sources.image_readers`` —,
or the image's classes are asked for (``Pipeline(attributes=True)``, ``PostInput.attributes``: ``--attributes``,
the service's ``"attributes": true``). Otherwise the image is never opened (a file that is not an image fails
nothing) and the result's ``attributes`` is None (``null``): not read.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mner.channels.posts import long_text_problem
from mner.channels.sources import ChannelReport, ChannelSources, image_readers
from mner.channels.spec import CHANNELS, text_fields
from mner.data import MnerInputError, Post, Span, tokenize_with_offsets
from mner.serving.reading import context_reading
from mner.serving.result import ImageAttribute, TagResult

if TYPE_CHECKING:
    import numpy as np

    from mner.vision import ImageFeatures
    from mner.vision.encoder import PixelEncoder

EMPTY_TEXT = "text is empty: expected the words of a post"
UPLOAD_NAME = "<upload>"  # what errors call an image given as bytes


@dataclass(frozen=True)
class PostInput:
    """One raw post: its text, an optional image (a path, or the file's bytes), an id, and its channels' text
    fields (``mner.channels.spec.text_fields``)."""

    text: str
    image: str | Path | bytes | None = None
    post_id: str | None = None
    # words already split (JSONL "tokens"): used instead of tokenising text
    tokens: Sequence[str] | None = None
    caption: str | None = None  # a caption of the image
    context: str | None = None  # free text about the post (an LLM's notes on it)
    attributes: bool = False  # read the image for its classes even where the model reads no image


@dataclass
class Prepared:
    """A post that passed the input checks: its tokens, where they are in its raw text (None for a post given as
    tokens), and its image's pixels (or None)."""

    item: PostInput
    tokens: tuple[str, ...]
    pixels: np.ndarray | None  # shape: (input_size, input_size, 3) uint8
    offsets: list[tuple[int, int]] | None = None  # each token's (start, end) in item.text
    unread: bool = False  # it has an image, left unread: nothing asked for it


class Pipeline:
    """A model (on ONNX Runtime or PyTorch), its image encoder (loaded on the first image), the files that fill
    its channels, and the threads it runs on: the one way to tag posts with mner.

    Safe to share between threads: one batch is tagged at a time (``prepare`` runs unlocked, alongside).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        files: Mapping[str, str | Path | None] | None = None,
        runtime: str = "auto",
        threads: int | None = None,
        min_score: float = 0.0,
        attributes: bool = False,
    ):
        """Load the model (``None``: the shipped default; a packaged model's name; a folder) and open the files
        that fill its channels (``files``: channel name → path, e.g. ``{"knowledge": "kg.sqlite", "context":
        "context.tsv"}``; ``mner.channels.spec`` says which file each channel reads).

        Args:
            threads: ONNX Runtime's threads (PyTorch's, a process-wide setting in torch, on that runtime) and the
                threads that prepare posts (tokens, decoded images); default 1.
            min_score: entities whose probability (``Span.score``) is below it are left out of the results.
            attributes: read every post's image for its top classes (``TagResult.attributes``); without it an
                image is read only where the model uses it (``image_readers``), a post's own
                ``PostInput.attributes`` aside.

        Raises:
            MnerInputError: a bad model folder or file, a ``min_score`` outside 0..1. A channel without a file (a 'knowledge' channel and no
            KG) is masked for every post, as for a post the KG knows nothing about; likewise a post without its
            own context or caption and no file for it.
        """
        from mner.runtime.ort import check_threads
        from mner.runtime.runners import load_runner
        from mner.vision.config import EncoderConfig

        if not 0.0 <= min_score <= 1.0:
            raise MnerInputError(f"min_score {min_score!r}: expected a probability from 0 to 1")
        self.model = model
        self.min_score = min_score
        self.threads = check_threads(threads)
        self.runtime = runtime
        self.runner = load_runner(
            model, runtime, self.threads
        )  # ONNX Runtime when the model has a current export
        self.channels = list(self.runner.config.channels)
        given = {name: path for name, path in (files or {}).items() if path is not None}
        refused = [name for name in given if CHANNELS[name].source == "features"]
        if refused:
            raise MnerInputError(
                f"the '{refused[0]}' channel is read from each post's image here, not from a feature cache"
            )
        self.files = {name: str(path) for name, path in given.items()}
        self.sources = ChannelSources.open(given)
        self.attributes = attributes
        # the model's channels that use a post's image (with these files): none, and an image is read on request
        self.image_readers = image_readers(self.channels, kg=self.sources.kg is not None)
        self.encoder_config = EncoderConfig.for_backbone(self.runner.config.image_backbone)
        self.last_report = ChannelReport()  # what the last batch's channel filling found
        self._encoder: PixelEncoder | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pool_lock = threading.Lock()

    @property
    def kg(self):
        """The open KG (a ``mner.knowledge.KnowledgeStore``), or None."""
        return self.sources.kg

    @property
    def encoder(self) -> PixelEncoder:
        """The image encoder, loaded on first use."""
        if self._encoder is None:
            from mner.runtime.images import load_image_encoder

            self._encoder = load_image_encoder(self.encoder_config, self.runtime, self.threads)
        return self._encoder

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The Pipeline's ``threads`` threads that prepare posts (decoding images releases the GIL)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mner-prepare")
            return self._pool

    def describe(self) -> dict:
        """What is loaded, for a health check."""
        return {
            "model": str(self.model) if self.model is not None else "default",
            "channels": list(self.channels),
            "files": dict(self.files),
            "image_backbone": self.runner.config.image_backbone,
            "runtime": self.runner.runtime,
            "threads": self.threads,
            "min_score": self.min_score,
            "images": self.images_line(),
            "warnings": self.warnings(),
        }

    def reads_image(self, item: PostInput | None = None) -> bool:
        """Whether a post's image is read: the model uses it, or its classes are asked for (by this Pipeline, or by
        ``item``)."""
        return bool(self.image_readers) or self.attributes or (item is not None and item.attributes)

    def images_line(self) -> str:
        """What this Pipeline does with posts' images, in words (``/health``'s ``images``)."""
        if self.image_readers:
            return "read: the model reads " + ", ".join(f"'{c}'" for c in self.image_readers)
        if self.attributes:
            return "read for their classes (attributes); the model reads no image"
        return "not read: the model reads no image (a post asking for attributes has its image read)"

    def warnings(self) -> list[str]:
        """What this pipeline cannot fill for every post (``mner.channels.sources.unsourced_warning``): one line,
        or none."""
        warning = self.sources.unsourced_warning(self.channels)
        return [] if warning is None else [warning]

    def tag(
        self,
        text: str,
        image: str | Path | bytes | None = None,
        post_id: str | None = None,
        attributes: bool = False,
        **fields: str | None,
    ) -> TagResult:
        """Tag one post; ``fields``: its channels' text fields (``caption=``, ``context=``); ``attributes``: read
        its image for its classes even where the model reads no image.

        Raises:
            MnerInputError: the text is empty.
            ImageError: the image cannot be used (the error names it and says why).
        """
        result = self.tag_many([PostInput(text, image, post_id=post_id, attributes=attributes, **fields)])[0]
        if isinstance(result, MnerInputError):
            raise result
        return result

    def tag_many(self, items: Sequence[PostInput]) -> list[TagResult | MnerInputError]:
        """Tag a batch: one encoder call for all its images, one model call for all its posts.

        A post with bad input gives its MnerInputError (or ImageError) in its place; the others are tagged.
        """
        return self.tag_prepared(self.prepare_many(items))

    def tag_prepared(self, prepared: Sequence[Prepared | MnerInputError]) -> list[TagResult | MnerInputError]:
        """``tag_many`` of posts already through ``prepare``: the same results, errors kept in their places."""
        checked = list(prepared)
        good = [c for c in checked if isinstance(c, Prepared)]
        with self._lock:
            features = self._encode([c.pixels for c in good])
            results = iter(self._tag_decoded(good, features))
        return [next(results) if isinstance(c, Prepared) else c for c in checked]

    def prepare_many(self, items: Sequence[PostInput]) -> list[Prepared | MnerInputError]:
        """``prepare`` of every item; with several threads and images, on the Pipeline's threads. Needs no lock."""
        with_images = sum(item.image is not None and self.reads_image(item) for item in items)
        if self.threads < 2 or with_images < 2:
            return [self.prepare(item) for item in items]
        return list(self.pool.map(self.prepare, items))

    def prepare_later(self, items: Sequence[PostInput]) -> Future:
        """``prepare`` of every item on one of the Pipeline's threads, while this thread goes on (tagging the batch
        before, in ``mner tag --threads 1``; the event loop, in the service): a future of the list."""
        return self.pool.submit(lambda: [self.prepare(item) for item in items])

    def close(self) -> None:
        """Close the KG file and stop the Pipeline's threads."""
        self.sources.close()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    # -------------------------------------------------------------------------------------- stages

    def prepare(self, item: PostInput) -> Prepared | MnerInputError:
        """A post's tokens and decoded pixels, or the error that says what is wrong with it; an image nothing
        reads (``reads_image``) is not opened.

        Needs no lock: call it from any thread, so that decoding the next posts' images overlaps tagging
        (the service and ``mner tag --threads 1`` do), then give the results to ``tag_prepared``.
        """
        from mner.vision.decode import load_pixels, pixels_from_bytes

        offsets = None
        try:
            if isinstance(item.text, str) and (problem := long_text_problem(item.text, item.tokens)):
                raise MnerInputError(problem)
            if item.tokens is not None:
                tokens = tuple(item.tokens)
            elif isinstance(item.text, str):
                words, offsets = tokenize_with_offsets(item.text)
                tokens = tuple(words)
            else:
                raise MnerInputError(f"text must be a string, got {type(item.text).__name__}")
            if not tokens:
                raise MnerInputError(EMPTY_TEXT)
            pixels = None
            unread = item.image is not None and not self.reads_image(item)  # never opened
            if not unread and isinstance(item.image, bytes | bytearray | memoryview):
                pixels = pixels_from_bytes(bytes(item.image), self.encoder_config, UPLOAD_NAME)
            elif not unread and item.image is not None:
                pixels = load_pixels(item.image, self.encoder_config)
        except MnerInputError as err:
            # kept without its traceback and context: their frames hold the post (an image's bytes) in a cycle
            # that only a full garbage collection frees (60 posts with an 8 MB image held 120 MB)
            err.__context__ = None
            return err.with_traceback(None)
        return Prepared(item, tokens, pixels, offsets, unread)

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
                **{name: getattr(d.item, name) or None for name in text_fields()},
            )
            for i, d in enumerate(decoded)
        ]
        filled = self.sources.fill(
            posts, self.channels, features=features, lists=self.runner.config.list_channels
        )
        self.last_report = filled.report
        spans = self.runner.predict(filled.posts, images=filled.images) if posts else []
        return [
            dataclasses.replace(
                _result(d, post, self._entities(d, post_spans), feats, knowledge, unread),
                read_as=context_reading(self.runner, post.tokens, post.context),
            )
            for d, post, post_spans, feats, knowledge, unread in zip(
                decoded, filled.posts, spans, features, filled.knowledge, filled.unreadable, strict=True
            )
        ]

    def _entities(self, prepared: Prepared, spans: list[Span]) -> list[Span]:
        """The entities at or above ``min_score``; in a post given as raw text, with their characters in it."""
        kept = [s for s in spans if s.score is None or s.score >= self.min_score]
        if prepared.offsets is None:
            return kept
        text, offsets = prepared.item.text, prepared.offsets
        return [
            dataclasses.replace(
                s,
                text=text[offsets[s.start][0] : offsets[s.end - 1][1]],
                start_char=offsets[s.start][0],
                end_char=offsets[s.end - 1][1],
            )
            for s in kept
        ]


def _image_id(image: str | Path | bytes | None) -> str | None:
    """The id of a post's image, as a feature cache and a captions or context file name it: the file's stem."""
    return Path(image).stem if isinstance(image, str | Path) else None


def _result(prepared: Prepared, post: Post, spans: list[Span], features, knowledge, unread) -> TagResult:
    if prepared.unread:
        attributes = None  # its image was not read
    elif features is None:
        attributes = ()
    else:
        attributes = tuple(ImageAttribute(label, p) for label, p in features.attributes)
    fields = {name: getattr(post, name) for name in text_fields()}
    warnings = tuple(f"the {c} lists no entity that can be read: tagged as a post without it" for c in unread)
    return TagResult(
        post.tokens,
        tuple(spans),
        attributes,
        knowledge,
        id=prepared.item.post_id,
        warnings=warnings,
        **fields,
    )
