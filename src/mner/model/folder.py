"""Model folders, read without torch: the packaged models, where a name points, and a folder's checked
``config.json``. A model folder holds ``config.json`` (the model config, labels, versions, training record,
the weights' SHA-256), ``model.safetensors`` (the weights; never pickles), ``README.md`` (the model card)
and, once exported, ``model.onnx`` with ``onnx.json`` (``mner.runtime.export``) for inference without torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mner.config import ModelConfig
from mner.data import MnerInputError
from mner.registry import Registry

# 2: the encoder's weights under "encoder." (format 1 files are read and renamed); 3: config keys renamed, one word
# a meaning (mner.config.RENAMED_KEYS: format 2 configs are read with their keys renamed); 4: a reading unit's keys
# are one block ("context": {...}; flat keys are moved into it, mner.config.migrate_keys) and its weights are its
# module's ("encoder.token_features.context.alignment.weight"; older names are renamed on load wherever found,
# mner.model.features.migrate_feature_keys)
FORMAT_VERSION = 4
PACKAGED = Path(__file__).resolve().parents[1] / "models"


@dataclass(frozen=True)
class PackagedModel:
    """A model folder shipped inside the package."""

    folder: Path
    description: str


MODELS: Registry[PackagedModel] = Registry("packaged model")
MODELS.register(
    "default",
    PackagedModel(
        PACKAGED / "default",
        "3 GloVe BiLSTM-CRFs reading the post's context (an LLM's entity list) aligned to it, an untyped path and "
        "a text path on frozen all-mpnet-base-v2 features; Twitter-2015 + Twitter-2017",
    ),
)
# the default's text path, which tags its posts without a usable context: one copy of its weights
MODELS.register(
    "text",
    PackagedModel(
        PACKAGED / "default" / "text",
        "the default's text path: a BiLSTM-CRF on frozen MPNet features + GloVe",
    ),
)
MODELS.register(
    "fast",
    PackagedModel(
        PACKAGED / "fast",
        "the default before the pretrained encoder: the same context and untyped paths, a GloVe text path; "
        "faster, no MPNet needed",
    ),
)
MODELS.register(
    "paper-full",
    PackagedModel(
        PACKAGED / "paper-full", "the paper's network: text + caption + knowledge through the fusion"
    ),
)
DEFAULT_MODEL = MODELS["default"].folder
CONFIG_KEYS = {
    "format_version",
    "mner_version",
    "model",
    "encoder",
    "training",
    "scores",
    "weights_sha256",
    "members",  # an ensemble's members: where each came from and what it scored (mner.model.combine)
    "text_path",  # a folder inside this one holding the text-only model that tags posts the context names nothing in
    "untyped_path",  # ... the context model that tags posts whose context gives names but no kinds that name a type
    "weights_dtype",  # "float16": model.safetensors and model.onnx store the weights as float16 (mner combine --float16)
}


def packaged_models() -> list[str]:
    """Names of the packaged models whose folders are installed ("default", ...)."""
    return [name for name, m in MODELS.items() if (m.folder / "config.json").is_file()]


PACKAGED_PREFIX = "pkg:"  # "pkg:default": the packaged model even where a folder "default" is here


def resolve_model(folder: str | Path | None) -> Path:
    """A model folder path: ``None`` is the shipped default; ``pkg:NAME`` is the packaged model NAME; a bare
    name that is not a folder here but is a packaged model ("paper-full") is that packaged model.

    Raises:
        MnerInputError: ``pkg:NAME`` names no packaged model.
    """
    if folder is None:
        return DEFAULT_MODEL
    if str(folder).startswith(PACKAGED_PREFIX):
        name = str(folder)[len(PACKAGED_PREFIX) :]
        if name not in MODELS:
            raise MnerInputError(
                f"no packaged model of that name (packaged models: {', '.join(MODELS)})", folder
            )
        return MODELS[name].folder
    path = Path(folder)
    if not path.exists() and len(path.parts) == 1 and path.name in MODELS:
        return MODELS[path.name].folder
    return path


def shadowed_model_note(folder: str | Path | None) -> str | None:
    """For a bare packaged model's name that is also a folder here (``--model default`` with ./default): which
    of the two is loaded, and how to ask for the other. None where the name is not ambiguous."""
    if folder is None or str(folder).startswith(PACKAGED_PREFIX):
        return None
    path = Path(folder)
    if len(path.parts) == 1 and path.name in MODELS and path.exists():
        return (
            f"model {str(folder)!r}: the folder ./{path.name} here, not the packaged model of that name "
            f"(--model {PACKAGED_PREFIX}{path.name} loads that one)"
        )
    return None


@dataclass(frozen=True)
class ModelFolder:
    """A model folder whose config.json was read and checked."""

    path: Path
    record: dict
    config: ModelConfig

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"


def open_model_folder(folder: str | Path | None) -> ModelFolder:
    """Resolve ``folder`` (None: the shipped default; a packaged model's name) and read its config.

    Raises:
        MnerInputError: the folder, its config or its weights file are missing, or the config is bad.
    """
    folder = resolve_model(folder)
    config_path = folder / "config.json"
    if not folder.is_dir():
        raise MnerInputError(
            f"model folder not found (packaged models: {', '.join(packaged_models())})", folder
        )
    record = read_config(config_path)
    try:
        config = ModelConfig.from_dict(record["model"])
    except (TypeError, ValueError) as err:
        raise MnerInputError(f"bad 'model' section: {err}", config_path) from None
    if not (folder / "model.safetensors").is_file():
        raise MnerInputError("missing: expected the model weights here", folder / "model.safetensors")
    return ModelFolder(folder, record, config)


def check_weights_hash(folder: ModelFolder) -> None:
    """Refuse weights whose SHA-256 is not the one config.json records (a damaged or replaced file)."""
    expected = folder.record.get("weights_sha256")
    if expected is not None and file_sha256(folder.weights) != expected:
        raise MnerInputError(
            "the weights differ from the ones this model was saved with (their SHA-256 is not "
            "the one config.json records): a damaged or replaced file",
            folder.weights,
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_config(path: Path) -> dict:
    if not path.is_file():
        raise MnerInputError("missing: expected the model config here", path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MnerInputError(f"not valid JSON ({err})", path) from None
    if not isinstance(record, dict) or "model" not in record:
        raise MnerInputError("expected a JSON object with a 'model' section", path)
    unknown = sorted(set(record) - CONFIG_KEYS)
    if unknown:
        raise MnerInputError(f"unknown key(s) {unknown}; expected some of {sorted(CONFIG_KEYS)}", path)
    if record.get("weights_dtype", "float32") not in ("float32", "float16"):
        raise MnerInputError(
            f'weights_dtype {record["weights_dtype"]!r}: expected "float32" or "float16"', path
        )
    if record.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise MnerInputError(
            f"format_version {record['format_version']} is newer than this mner "
            f"understands ({FORMAT_VERSION}): upgrade mner",
            path,
        )
    return record


# ------------------------------------------------------------------------------------ where a model is written

MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "README.md",
    "model.onnx",
    "onnx.json",
)  # what a model writes
CARD_HEADING = "# mner model card"  # the first line of every card mner writes (mner.model.card)
MAX_CONFIG_BYTES = 256 * 1024 * 1024  # a config.json larger than this is not read to see whose it is
NOT_MINE = "mner never overwrites a file it did not write; give another --out"


def check_model_out(folder: str | Path, subfolders: tuple[str, ...] = ()) -> None:
    """Refuse to write a model into ``folder`` where that would replace something mner did not write. A folder
    that is absent or holds none of the names a model writes (``MODEL_FILES``, and ``subfolders``, which are
    replaced whole) is fine, and so is an mner model folder (its config.json an mner model's, its README.md a
    model card); other files beside them (a training log) are never touched. Reads only: nothing is written.

    Raises:
        MnerInputError: ``folder`` is a file, or holds one of those names that is not an mner model's.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MnerInputError("exists and is not a folder: a model is a folder; give another --out", folder)
    if not folder.is_dir():
        return
    present = [
        folder / name for name in MODEL_FILES if (folder / name).exists() or (folder / name).is_symlink()
    ]
    for path in present:
        if path.is_symlink() or not path.is_file():
            raise MnerInputError(f"exists and is not a file of an mner model: {NOT_MINE}", path)
    config = folder / "config.json"
    if config in present and not is_model_config(config):
        raise MnerInputError(f"exists and is not an mner model's config: {NOT_MINE}", config)
    if present and config not in present:
        raise MnerInputError(
            f"exists in a folder that holds no mner model (no config.json): {NOT_MINE}", present[0]
        )
    card = folder / "README.md"
    if card in present and not _is_model_card(card):
        raise MnerInputError(f"exists and is not an mner model card: {NOT_MINE}", card)
    for name in subfolders:  # replaced whole: it must be an mner model folder holding nothing else
        inner = folder / name
        if inner.exists() or inner.is_symlink():
            _check_replaceable(inner)


def _check_replaceable(inner: Path) -> None:
    if inner.is_symlink() or not inner.is_dir():
        raise MnerInputError(f"exists and is not an mner model folder: {NOT_MINE}", inner)
    others = sorted(p.name for p in inner.iterdir() if p.name not in MODEL_FILES)
    if others:
        raise MnerInputError(
            f"holds {others[0]!r}, which is not an mner model's file, and would be replaced: {NOT_MINE}",
            inner,
        )
    check_model_out(inner)


def is_model_config(path: Path) -> bool:
    """Whether ``path`` is a config.json that mner wrote for a model (any format version)."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return False
        record = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return (
        isinstance(record, dict)
        and isinstance(record.get("model"), dict)
        and "mner_version" in record
        and set(record) <= CONFIG_KEYS
    )


def _is_model_card(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            first = handle.readline(len(CARD_HEADING.encode()) + 1)
    except OSError:
        return False
    return first.startswith(CARD_HEADING.encode())
