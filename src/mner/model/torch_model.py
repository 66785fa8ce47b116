"""The model on PyTorch: a network with its config and record; it trains (``mner.training``), tags (a ``Runner``:
emissions from the network), saves a model folder and loads one back (``load_torch_model``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mner.config import ModelConfig
from mner.data import MnerInputError, Post
from mner.decoding import CrfScores
from mner.inputs.batching import BatchBuilder, input_builder
from mner.model.card import model_card
from mner.model.encoders import migrate_v1_keys
from mner.model.features import migrate_feature_keys
from mner.model.folder import (
    CONFIG_KEYS,
    FORMAT_VERSION,
    check_model_out,
    check_weights_hash,
    file_sha256,
    open_model_folder,
)
from mner.model.network import TaggingNetwork, as_tensors, build_network
from mner.model.runner import Runner
from mner.version import __version__

if TYPE_CHECKING:
    from mner.vision import ImageFeatures

log = logging.getLogger(__name__)


class TorchModel(Runner):
    """A network with its config, batch builder and record; ``predict`` returns spans and never mutates posts."""

    runtime = "torch"

    def __init__(self, network: TaggingNetwork, record: dict | None = None):
        self.network = network.eval()
        self.config: ModelConfig = network.config
        self.batches = BatchBuilder(self.config, input_builder(self.config))
        self.record = dict(record or {})

    @classmethod
    def new(cls, config: ModelConfig) -> TorchModel:
        return cls(build_network(config))

    def batch(
        self,
        posts: Sequence[Post],
        with_tags: bool = False,
        images: Mapping[str, ImageFeatures] | None = None,
    ):
        """The network's input for ``posts``: a ``TaggingBatch`` of torch tensors on the network's device."""
        device = next(self.network.parameters()).device
        return as_tensors(self.batches.build(posts, with_tags=with_tags, images=images), device)

    def emissions(self, batch) -> np.ndarray:
        self.network.eval()
        with torch.inference_mode():
            device = next(self.network.parameters()).device
            return self.network.emissions(as_tensors(batch, device)).float().cpu().numpy()

    def crf_scores(self) -> CrfScores:
        return self.network.crf.scores()

    def round_to_float16(self) -> None:
        """Round every float32 weight to the nearest float16 value, in place, and save the weights as float16 from
        now on (half the folder; the network still computes in float32, on weights float16 can hold exactly)."""
        with torch.no_grad():
            for tensor in self.network.state_dict().values():
                if tensor.dtype == torch.float32:
                    tensor.copy_(tensor.half().float())
        self.record["weights_dtype"] = "float16"

    def save(self, folder: str | Path, card: str | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the model card (``card``, or one made from the
        config and the record) into ``folder``.

        Raises:
            MnerInputError: ``folder`` holds such a file that mner did not write (``check_model_out``).
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        check_model_out(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = {"format_version", "mner_version", "weights_sha256"}
        record = {k: v for k, v in self.record.items() if k in CONFIG_KEYS - written}
        if self.config.encoder_spec.pretrained:
            from mner.inputs.pieces import encoder_record

            # the tokenizer and the architecture are read from this package again at load time
            record["encoder"] = self.record.get("encoder") or encoder_record(self.config.encoder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        if self.record.get("weights_dtype") == "float16":
            # rounded once (round_to_float16), so float16 holds every weight exactly
            state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
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


def _check_shapes(config, state: dict, config_path: Path, weights_path: Path) -> None:
    """Refuse a config whose network's weights have other shapes than the saved ones, before building it (a
    changed ``"hidden": 100000000`` would otherwise ask for 176 GB). The network is laid out on the meta device:
    shapes, no memory.

    Raises:
        MnerInputError: a weight's shape differs, naming it and both shapes.
    """
    try:
        with torch.device("meta"):
            probe = TaggingNetwork(config, pretrained=False)
    except Exception:  # noqa: BLE001 - an encoder that cannot be laid out there: load_state_dict checks later
        return
    for name, tensor in probe.state_dict().items():
        saved = state.get(name)
        if saved is not None and tuple(saved.shape) != tuple(tensor.shape):
            raise MnerInputError(
                f"the model config does not match its weights: {name!r} is {list(saved.shape)} in "
                f"{weights_path.name}, {list(tensor.shape)} by the config (a changed or damaged config.json)",
                config_path,
            )


def load_torch_model(folder: str | Path | None = None) -> TorchModel:
    """Load a model folder (the model shipped in the package when ``folder`` is None; a packaged model by
    its name, e.g. ``"paper-full"``).

    Raises:
        MnerInputError: the folder, its config or its weights are missing, corrupt or do not match.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = open_model_folder(folder)
    record, config, weights_path, config_path = (
        folder.record,
        folder.config,
        folder.weights,
        folder.path / "config.json",
    )
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise MnerInputError(f"corrupt safetensors file ({err})", weights_path) from None
    check_weights_hash(folder)
    bad = next((name for name, tensor in state.items() if not torch.isfinite(tensor).all()), None)
    if bad is not None:
        raise MnerInputError(f"weight {bad!r} holds NaN or infinite values: a damaged model", weights_path)
    if record.get("format_version", 1) < 2:
        state = migrate_v1_keys(state)
    state = migrate_feature_keys(state)  # a reading unit's weights of before format 4 (renamed where found)
    _check_shapes(config, state, config_path, weights_path)
    try:
        network = build_network(config, pretrained=False)  # every weight comes from model.safetensors
    except ValueError as err:  # a transformer encoder whose package is not installed
        raise MnerInputError(str(err), config_path) from None
    except RuntimeError as err:  # a config too large to build (an allocation refused)
        reason = " ".join(str(err).split())[:200]
        raise MnerInputError(f"the model config cannot be built ({reason})", config_path) from None
    if config.encoder_spec.pretrained:
        from mner.inputs.pieces import check_encoder_record

        check_encoder_record(record.get("encoder"), str(config_path))
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise MnerInputError(f"weights do not match config.json: {first}", weights_path) from None
    return TorchModel(network, record)
