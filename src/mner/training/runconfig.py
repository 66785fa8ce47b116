"""A training run's settings: the ``[model]`` and ``[train]`` tables of a TOML config file."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mner.channels.readers import READERS
from mner.config import ModelConfig, build_strict, migrate_keys, reading_block
from mner.data import MnerInputError

_MODEL_FIELDS_FROM_DATA = ("tags", "words", "chars")


SCHEDULES = ("constant", "linear")


@dataclass
class TrainConfig:
    """Optimisation settings (the paper: Adam, lr 0.001, batch 20, dropout 0.5).

    A transformer encoder is fine-tuned at ``encoder_lr``, everything else at ``lr``. ``schedule = "linear"``
    warms both up over the first ``warmup`` fraction of all steps (epochs × batches), then decays them
    linearly to zero at the last epoch; "constant" keeps them fixed."""

    epochs: int = 30
    batch_size: int = 20
    lr: float = 0.001
    encoder_lr: float = 5e-5
    layer_decay: float = (
        1.0  # < 1: layer-wise learning rates (the top layer at encoder_lr, each below × this)
    )
    schedule: str = "constant"
    warmup: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    patience: int = 6
    min_word_count: int = 2
    seed: int = 13
    threads: int | None = None
    device: str = "cpu"
    progress: bool = True
    # the share of training posts whose context is dropped at each step, so that the model also learns to tag
    # without it (a post without context at tagging time then keeps its meaning)
    context_dropout: float = 0.0
    # training-time corruption of each post's parsed entity list (mner.training.corruption), drawn anew at every
    # step: each entity dropped, each kind made generic ("entity") or another type's, up to ``spurious_names``
    # names of another post added (per post), the whole list swapped for another post's (per post)
    entity_drop: float = 0.0
    kind_generic: float = 0.0
    kind_generic_post: float = 0.0  # every kind of a post made generic (a list without kinds), per post
    kind_wrong: float = 0.0
    spurious: float = 0.0
    spurious_names: int = 2
    context_swap: float = 0.0

    def corruption_rates(self):
        """These settings as ``mner.training.corruption.CorruptionRates`` (context_dropout is the Trainer's own)."""
        from mner.training.corruption import CorruptionRates

        return CorruptionRates(
            drop=self.entity_drop,
            generic=self.kind_generic,
            generic_post=self.kind_generic_post,
            wrong=self.kind_wrong,
            spurious=self.spurious,
            spurious_names=self.spurious_names,
            swap=self.context_swap,
        )

    def __post_init__(self):
        self.corruption_rates()  # checks the rates
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay: a number in (0, 1], got {self.layer_decay!r}")
        if not 0 <= self.context_dropout < 1:
            raise ValueError(f"context_dropout {self.context_dropout}: expected a fraction in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}: expected one of {list(SCHEDULES)}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup {self.warmup}: expected a fraction of the steps in [0, 1)")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device {self.device!r}: expected 'cpu' or 'cuda' (or 'cuda:N')")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return build_strict(cls, values, "train config")


@dataclass
class RunConfig:
    """A config file: ``[model]`` options (sizes, dropout, channels) and ``[train]`` options."""

    model: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)


def read_run_config(path: str | Path | None) -> RunConfig:
    """Parse a TOML config file with optional ``[model]`` and ``[train]`` tables (and a reading unit's
    ``[model.context]``; its flat keys of before are moved into it); unknown keys raise."""
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MnerInputError("config file not found", path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MnerInputError(f"not valid TOML ({err})", path) from None
    unknown = sorted(set(values) - {"model", "train"})
    if unknown:
        raise MnerInputError(f"unknown section(s) {unknown}; expected [model] and/or [train]", path)
    try:
        model = migrate_keys(dict(values.get("model", {})))
        for name, unit in READERS.items():  # a reading unit's [model.NAME] table, checked as it is read
            if name in model:
                reading_block(unit, model[name])
    except ValueError as err:
        raise MnerInputError(str(err), path) from None
    known = {f.name for f in dataclasses.fields(ModelConfig)} - set(_MODEL_FIELDS_FROM_DATA)
    bad = sorted(set(model) - known)
    if bad:
        raise MnerInputError(f"unknown [model] key(s) {bad}; expected some of {sorted(known)}", path)
    try:
        train = TrainConfig.from_dict(dict(values.get("train", {})))
    except (TypeError, ValueError) as err:
        raise MnerInputError(str(err), path) from None
    return RunConfig(model, train)
