"""A trained tagger: load a model folder, predict spans for posts, save it back.

A model folder holds ``config.json`` (the model config, labels, versions, training record; with a
transformer encoder, its package and version), ``model.safetensors`` (weights, a fine-tuned transformer's
included; never pickles) and ``README.md`` (the model card).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from mner.data import MnerInputError, Post, Span, spans_from_tags
from mner.embeddings import load_word_vectors
from mner.model import BiLstmCrfTagger, ModelConfig, batch_to, encode_batch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PACKAGED_MODELS = Path(__file__).parent / "models"
DEFAULT_MODEL = PACKAGED_MODELS / "default"


def packaged_models() -> list[str]:
    """Names of the model folders shipped in the package ("default", ...)."""
    return sorted(p.name for p in PACKAGED_MODELS.iterdir() if (p / "config.json").is_file())


def resolve_model(folder: str | Path | None) -> Path:
    """A model folder path: ``None`` is the shipped default; a bare name that is not a folder here but is
    a packaged model ("paper-full") is that packaged model."""
    if folder is None:
        return DEFAULT_MODEL
    path = Path(folder)
    if not path.exists() and len(path.parts) == 1 and (PACKAGED_MODELS / path.name / "config.json").is_file():
        return PACKAGED_MODELS / path.name
    return path
_CONFIG_KEYS = {"format_version", "mner_version", "model", "encoder", "training", "scores"}


class Tagger:
    """A network with its config and word vectors; ``predict`` returns spans and never mutates posts."""

    def __init__(self, network: BiLstmCrfTagger, record: dict | None = None):
        self.network = network.eval()
        self.config: ModelConfig = network.config
        # a transformer encoder reads word pieces: GloVe is loaded for the BiLSTM only
        self.vectors = load_word_vectors(self.config.word_embeddings) if self.config.encoder == "bilstm" else None
        self.record = dict(record or {})

    @classmethod
    def new(cls, config: ModelConfig) -> Tagger:
        return cls(BiLstmCrfTagger(config))

    def predict(self, posts: Sequence[Post], batch_size: int = 64, images=None) -> list[list[Span]]:
        """Entity spans for each post. Posts longer than ``max_post_tokens`` are tagged in consecutive
        windows of that length (logged), so no token is dropped."""
        return [spans_from_tags(tags, post.tokens)
                for post, tags in zip(posts, self.predict_tags(posts, batch_size, images), strict=True)]

    def predict_tags(self, posts: Sequence[Post], batch_size: int = 64, images=None) -> list[list[str]]:
        """BIO tags for each post, one per token; ``images`` maps image ids to image features."""
        for post in posts:
            if not post.tokens:
                raise MnerInputError(f"post {post.id!r} is empty: expected at least one token")
        limit = self.config.max_post_tokens
        pieces: list[tuple[int, Post]] = []
        for i, post in enumerate(posts):
            if len(post.tokens) > limit:
                log.warning("post %r has %d tokens (model limit %d): tagged in %d windows", post.id,
                            len(post.tokens), limit, -(-len(post.tokens) // limit))
            for s in range(0, len(post.tokens), limit):
                pieces.append((i, dataclasses.replace(post, tokens=post.tokens[s:s + limit], tags=None)))
        tags: list[list[str]] = [[] for _ in posts]
        self.network.eval()
        device = next(self.network.parameters()).device
        with torch.inference_mode():
            for s in range(0, len(pieces), batch_size):
                chunk = pieces[s:s + batch_size]
                batch = batch_to(encode_batch([p for _, p in chunk], self.config, self.vectors, images=images),
                                 device)
                for (i, _), row in zip(chunk, self.network.decode(batch)):
                    tags[i].extend(row)
        return tags

    def save(self, folder: str | Path, card: str | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card into ``folder``."""
        from safetensors.torch import save_file

        import mner

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"format_version": FORMAT_VERSION, "mner_version": mner.__version__,
                  "model": self.config.to_dict(), **{k: v for k, v in self.record.items() if k in _CONFIG_KEYS}}
        if self.config.encoder != "bilstm":
            from mner.transformer import encoder_record

            # the tokenizer and the architecture are read from this package again at load time
            config["encoder"] = self.record.get("encoder") or encoder_record(self.config.encoder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
        (folder / "README.md").write_text(card or "# mner model\n", encoding="utf-8")
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
        raise MnerInputError(f"model folder not found (packaged models: {', '.join(packaged_models())})", folder)
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
    try:
        network = BiLstmCrfTagger(config, pretrained=False)  # every weight comes from model.safetensors
    except ValueError as err:  # a transformer encoder whose package is not installed
        raise MnerInputError(str(err), config_path) from None
    if config.encoder != "bilstm":
        from mner.transformer import check_encoder_record

        check_encoder_record(record.get("encoder"), str(config_path))
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise MnerInputError(f"weights do not match config.json: {first}", weights_path) from None
    return Tagger(network, record)


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
        raise MnerInputError(f"format_version {record['format_version']} is newer than this mner "
                             f"understands ({FORMAT_VERSION}): upgrade mner", path)
    return record

