"""One object that tags raw posts end to end; ``mner predict``, ``mner tag`` and the HTTP service share it.

How the model's channels are filled for a post (text, optional image, optional caption):

- text: ``mner.data.tokenize`` of the post's words (or the words given already split).
- image: decoded with the checks every mner image goes through (``mner.vision.decode``; a file or an
  upload's bytes), then the encoder of the model's ``image_backbone`` (loaded on the first image) gives its
  top-5 ImageNet attributes, its regions and its image vector (``ImageFeatures``). The images of a batch
  go through one encoder call.
- knowledge (when a KG is open): ``post_knowledge(kg, tokens, image_vector)`` with the policy
  image-then-text: the image vector drives the image-knowledge search; a post without an image takes the
  text fallback. ``Post.knowledge`` is ``mner.prepare.knowledge_words`` of the result, as in training.
- caption: the one given. For a model with a "caption" channel, a post with an image and no caption gets
  the image's attribute labels joined as words (``mner.prepare.attribute_caption``: "Egyptian cat tabby
  tiger cat ..."); the result's "caption" is the caption the post was tagged with, so it shows that.
- attributes / image channels: the features go to the tagger as ``images={key: ImageFeatures}`` with
  ``Post.image = key``; a post without an image is masked, never given a zero image.

The result for one post, the JSON contract of ``mner predict --json``, ``mner tag`` and the service::

    {"id": "...",                  # only when a post id was given
     "tokens": ["...", ...],
     "entities": [{"start": 0, "end": 2, "type": "PER", "text": "..."}],   # token offsets, end exclusive
     "attributes": [{"label": "Egyptian cat", "probability": 0.8213}],    # top 5; [] without an image
     "knowledge": {...} or null,   # Knowledge.to_dict() when a KG is open
     "caption": "..." or null}     # the caption used
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mner.data import MnerInputError, Post, tokenize
from mner.prepare import attribute_caption, knowledge_words

if TYPE_CHECKING:
    import numpy as np

    from mner.vision import ImageEncoder, ImageFeatures

EMPTY_TEXT = "text is empty: expected the words of a post"
UPLOAD_NAME = "<upload>"  # what errors call an image given as bytes


@dataclass(frozen=True)
class PostInput:
    """One raw post: its text, an optional image (a path, or the file's bytes), caption and id."""

    text: str
    image: str | Path | bytes | None = None
    caption: str | None = None
    post_id: str | None = None
    tokens: Sequence[str] | None = None  # words already split (JSONL "tokens"): used instead of tokenising text


@dataclass
class _Decoded:
    """A post that passed the input checks: its tokens and its image's pixels (or None)."""

    item: PostInput
    tokens: tuple[str, ...]
    pixels: np.ndarray | None  # shape: (input_size, input_size, 3) uint8


class Pipeline:
    """A tagger, its image encoder (loaded on the first image) and an optional KG.

    Safe to share between threads: one batch is tagged at a time.
    """

    def __init__(self, model: str | Path | None = None, kg: str | Path | None = None):
        """Load the tagger (``None``: the shipped model) and open the KG file, if given.

        Raises:
            MnerInputError: a bad model folder or KG file. A model with a 'knowledge' channel and no KG
            tags with that channel masked (as for a post the KG knows nothing about).
        """
        from mner.tagger import load_tagger
        from mner.vision.encoder import EncoderConfig

        self.model = model
        self.kg_path = kg
        self.tagger = load_tagger(model)
        self.channels = list(self.tagger.config.channels)
        self.kg = None
        if kg is not None:
            from mner.knowledge import open_kg

            self.kg = open_kg(kg)
        self.encoder_config = EncoderConfig.for_backbone(self.tagger.config.image_backbone)
        self._encoder: ImageEncoder | None = None
        self._lock = threading.Lock()

    @property
    def encoder(self) -> ImageEncoder:
        """The image encoder, loaded on first use."""
        if self._encoder is None:
            from mner.vision import load_encoder

            self._encoder = load_encoder(self.encoder_config)
        return self._encoder

    def describe(self) -> dict:
        """What is loaded, for a health check."""
        return {"model": str(self.model) if self.model is not None else "default",
                "channels": list(self.channels),
                "kg": str(self.kg_path) if self.kg_path is not None else None,
                "image_backbone": self.tagger.config.image_backbone}

    def tag(self, text: str, image: str | Path | bytes | None = None, caption: str | None = None,
            post_id: str | None = None) -> dict:
        """Tag one post; see the module docstring for the result.

        Raises:
            MnerInputError: the text is empty.
            ImageError: the image cannot be used (the error names it and says why).
        """
        result = self.tag_many([PostInput(text, image, caption, post_id)])[0]
        if isinstance(result, MnerInputError):
            raise result
        return result

    def tag_many(self, items: Sequence[PostInput]) -> list[dict | MnerInputError]:
        """Tag a batch: one encoder call for all its images, one tagger call for all its posts.

        A post with bad input gives its MnerInputError (or ImageError) in its place; the others are tagged.
        """
        with self._lock:
            checked = [self._check(item) for item in items]
            good = [c for c in checked if isinstance(c, _Decoded)]
            features = self._encode([c.pixels for c in good])
            results = iter(self._tag_decoded(good, features))
            return [next(results) if isinstance(c, _Decoded) else c for c in checked]

    def close(self) -> None:
        """Close the KG file."""
        if self.kg is not None:
            self.kg.close()

    # -------------------------------------------------------------------------------------- stages

    def _check(self, item: PostInput) -> _Decoded | MnerInputError:
        """Tokens and decoded pixels of a post, or the error that says what is wrong with it."""
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
        return _Decoded(item, tokens, pixels)

    def _encode(self, pixels: list[np.ndarray | None]) -> list[ImageFeatures | None]:
        """Image features of each post (None where it has no image), from one encoder call."""
        import numpy as np

        given = [p for p in pixels if p is not None]
        if not given:
            return [None] * len(pixels)
        encoded = iter(self.encoder.encode_pixels(np.stack(given)))  # stack shape: (B, size, size, 3)
        return [None if p is None else next(encoded) for p in pixels]

    def _tag_decoded(self, decoded: list[_Decoded], features: list[ImageFeatures | None]) -> list[dict]:
        image_channels = any(c in ("attributes", "image") for c in self.channels)
        posts, images, extras = [], {}, []
        for i, (d, feats) in enumerate(zip(decoded, features, strict=True)):
            caption = d.item.caption or None
            if caption is None and feats is not None and "caption" in self.channels:
                caption = attribute_caption(feats.attributes)
            knowledge = None
            if self.kg is not None:
                from mner.knowledge import post_knowledge

                knowledge = post_knowledge(self.kg, d.tokens, None if feats is None else feats.vector)
            key = None
            if feats is not None and image_channels:
                key = f"post-{i}"
                images[key] = feats
            posts.append(Post(d.tokens, id=d.item.post_id or f"#{i}", image=key, caption=caption,
                              knowledge=None if knowledge is None else knowledge_words(knowledge)))
            extras.append((feats, knowledge))
        spans = self.tagger.predict(posts, images=images or None) if posts else []
        return [_result(d.item.post_id, post, post_spans, feats, knowledge)
                for d, post, post_spans, (feats, knowledge) in zip(decoded, posts, spans, extras, strict=True)]


def _result(post_id: str | None, post: Post, spans, features, knowledge) -> dict:
    out: dict = {} if post_id is None else {"id": post_id}
    out["tokens"] = list(post.tokens)
    out["entities"] = [s.to_dict() for s in spans]
    out["attributes"] = [] if features is None else [
        {"label": label, "probability": round(float(p), 4)} for label, p in features.attributes]
    out["knowledge"] = None if knowledge is None else knowledge.to_dict()
    out["caption"] = post.caption
    return out
