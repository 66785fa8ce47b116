"""A trained tagger: load a model folder, predict spans for posts, save it back.

A model folder holds ``config.json`` (the model config, labels, versions, training record; with a
transformer encoder, its package and version), ``model.safetensors`` (weights, a fine-tuned transformer's
included; never pickles) and ``README.md`` (the model card, ``mner.card``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mner.batching import BatchBuilder, batch_to
from mner.card import model_card
from mner.config import ModelConfig
from mner.data import MnerInputError, Post, Span, spans_from_tags
from mner.encoders import input_builder, migrate_v1_keys
from mner.network import TaggingNetwork
from mner.registry import Registry
from mner.version import __version__

if TYPE_CHECKING:
    from mner.vision import ImageFeatures

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: the encoder's weights under "encoder." (format 1 files are read and renamed)
PACKAGED = Path(__file__).parent / "models"


@dataclass(frozen=True)
class PackagedModel:
    """A model folder shipped inside the package."""

    folder: Path
    description: str


MODELS: Registry[PackagedModel] = Registry("packaged model")
MODELS.register("default", PackagedModel(PACKAGED / "default", "the text-only BiLSTM-CRF (GloVe)"))
MODELS.register(
    "paper-full",
    PackagedModel(
        PACKAGED / "paper-full", "the paper's network: text + caption + knowledge through the fusion"
    ),
)
DEFAULT_MODEL = MODELS["default"].folder
_CONFIG_KEYS = {"format_version", "mner_version", "model", "encoder", "training", "scores", "weights_sha256"}


def packaged_models() -> list[str]:
    """Names of the packaged models whose folders are installed ("default", ...)."""
    return [name for name, m in MODELS.items() if (m.folder / "config.json").is_file()]


def resolve_model(folder: str | Path | None) -> Path:
    """A model folder path: ``None`` is the shipped default; a bare name that is not a folder here but is
    a packaged model ("paper-full") is that packaged model."""
    if folder is None:
        return DEFAULT_MODEL
    path = Path(folder)
    if not path.exists() and len(path.parts) == 1 and path.name in MODELS:
        return MODELS[path.name].folder
    return path


class Tagger:
    """A network with its config and batch builder; ``predict`` returns spans and never mutates posts."""

    def __init__(self, network: TaggingNetwork, record: dict | None = None):
        self.network = network.eval()
        self.config: ModelConfig = network.config
        self.batches = BatchBuilder(self.config, input_builder(self.config))
        self.record = dict(record or {})

    @classmethod
    def new(cls, config: ModelConfig) -> Tagger:
        return cls(TaggingNetwork(config))

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
        self, posts: Sequence[Post], batch_size: int = 64, images: Mapping[str, ImageFeatures] | None = None
    ) -> list[list[str]]:
        """BIO tags for each post, one per token; ``images`` maps ``Post.image`` to image features."""
        for post in posts:
            if not post.tokens:
                raise MnerInputError(f"post {post.id!r} is empty: expected at least one token")
        limit = self.config.max_post_tokens
        pieces: list[tuple[int, Post]] = []
        for i, post in enumerate(posts):
            if len(post.tokens) > limit:
                log.warning(
                    "post %r has %d tokens (model limit %d): tagged in %d windows",
                    post.id,
                    len(post.tokens),
                    limit,
                    -(-len(post.tokens) // limit),
                )
            for s in range(0, len(post.tokens), limit):
                pieces.append((i, dataclasses.replace(post, tokens=post.tokens[s : s + limit], tags=None)))
        tags: list[list[str]] = [[] for _ in posts]
        self.network.eval()
        device = next(self.network.parameters()).device
        with torch.inference_mode():
            for s in range(0, len(pieces), batch_size):
                chunk = pieces[s : s + batch_size]
                batch = batch_to(self.batches.build([p for _, p in chunk], images=images), device)
                for (i, _), row in zip(chunk, self.network.decode(batch), strict=True):
                    tags[i].extend(row)
        return tags

    def save(self, folder: str | Path, card: str | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the model card (``card``, or one made from the
        config and the record) into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = {"format_version", "mner_version", "weights_sha256"}
        record = {k: v for k, v in self.record.items() if k in _CONFIG_KEYS - written}
        if self.config.encoder_spec.pretrained:
            from mner.transformer import encoder_record

            # the tokenizer and the architecture are read from this package again at load time
            record["encoder"] = self.record.get("encoder") or encoder_record(self.config.encoder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        config = {
            "format_version": FORMAT_VERSION,
            "mner_version": __version__,
            "model": self.config.to_dict(),
            **{k: v for k, v in record.items() if k != "model"},
            "weights_sha256": file_sha256(folder / "model.safetensors"),  # checked on every load
        }
        (folder / "config.json").write_text(
            json.dumps(config, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (folder / "README.md").write_text(card or model_card(self.config, config), encoding="utf-8")
        return folder


def load_tagger(folder: str | Path | None = None) -> Tagger:
    """Load a model folder (the model shipped in the package when ``folder`` is None; a packaged model by
    its name, e.g. ``"paper-full"``).

    Raises:
        MnerInputError: the folder, its config or its weights are missing, corrupt or do not match.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_model(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    if not folder.is_dir():
        raise MnerInputError(
            f"model folder not found (packaged models: {', '.join(packaged_models())})", folder
        )
    record = _read_config(config_path)
    try:
        config = ModelConfig.from_dict(record["model"])
    except (TypeError, ValueError) as err:
        raise MnerInputError(f"bad 'model' section: {err}", config_path) from None
    if not weights_path.is_file():
        raise MnerInputError("missing: expected the model weights here", weights_path)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise MnerInputError(f"corrupt safetensors file ({err})", weights_path) from None
    if "weights_sha256" in record and file_sha256(weights_path) != record["weights_sha256"]:
        raise MnerInputError(
            "the weights differ from the ones this model was saved with (their SHA-256 is not "
            "the one config.json records): a damaged or replaced file",
            weights_path,
        )
    bad = next((name for name, tensor in state.items() if not torch.isfinite(tensor).all()), None)
    if bad is not None:
        raise MnerInputError(f"weight {bad!r} holds NaN or infinite values: a damaged model", weights_path)
    if record.get("format_version", 1) < 2:
        state = migrate_v1_keys(state)
    try:
        network = TaggingNetwork(config, pretrained=False)  # every weight comes from model.safetensors
    except ValueError as err:  # a transformer encoder whose package is not installed
        raise MnerInputError(str(err), config_path) from None
    if config.encoder_spec.pretrained:
        from mner.transformer import check_encoder_record

        check_encoder_record(record.get("encoder"), str(config_path))
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise MnerInputError(f"weights do not match config.json: {first}", weights_path) from None
    return Tagger(network, record)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise MnerInputError("missing: expected the model config here", path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MnerInputError(f"not valid JSON ({err})", path) from None
    if not isinstance(record, dict) or "model" not in record:
        raise MnerInputError("expected a JSON object with a 'model' section", path)
    unknown = sorted(set(record) - _CONFIG_KEYS)
    if unknown:
        raise MnerInputError(f"unknown key(s) {unknown}; expected some of {sorted(_CONFIG_KEYS)}", path)
    if record.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise MnerInputError(
            f"format_version {record['format_version']} is newer than this mner "
            f"understands ({FORMAT_VERSION}): upgrade mner",
            path,
        )
    return record
