"""One model folder from several: an ensemble of members trained with different seeds (one network, one ONNX
graph: ``mner.model.network.EnsembleNetwork``), a text path (a text-only model kept in a folder inside, which tags
the posts whose context names nothing in them) and an untyped path (a context model that tags the posts whose
context names them without kinds that name a type): ``mner.runtime.runners.RoutedRunner``.

    mner combine --member runs/ctx/seed1 --member runs/ctx/seed2 --member runs/ctx/seed3 \\
                 --text-model runs/text/seed1 --out runs/default
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from mner.data import MnerInputError
from mner.model.folder import MODEL_FILES, MODELS, check_model_out, resolve_model
from mner.model.network import EnsembleNetwork
from mner.model.torch_model import TorchModel, load_torch_model

TEXT_PATH = "text"  # the folder inside a model folder that holds its text path
UNTYPED_PATH = "untyped"  # ... and its untyped path


def _not_model_files(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n not in MODEL_FILES]


def combine(
    members: Sequence[str | Path],
    out: str | Path,
    text_model: str | Path | None = None,
    untyped_model: str | Path | None = None,
    float16: bool = False,
) -> TorchModel:
    """Write the model of ``members`` (one: a copy; several: their ensemble) to ``out``, with ``text_model``
    (a model folder reading text alone) as its text path and ``untyped_model`` (a context model trained on lists
    with their kinds hidden) as its untyped path; returns the combined model (saved, not exported). ``float16``:
    its weights rounded to float16 and stored so (``TorchModel.round_to_float16``; the paths as they are).

    Raises:
        MnerInputError: no member; members of different configs (vocabularies, sizes, channels, labels); an
            ensemble or a model with a text path given as a member; a text model that reads more than text or
            has other labels; ``out`` is a packaged model's folder or one of the inputs, or holds files of the
            names it writes that mner did not write (``mner.model.folder.check_model_out``).
    """
    if not members:
        raise MnerInputError("give at least one --member model folder")
    out = Path(out)
    loaded = [load_torch_model(m) for m in members]
    config = loaded[0].config
    _check_members(members, loaded)
    _check_out(out, [*members, *(m for m in (text_model, untyped_model) if m is not None)])
    paths = {TEXT_PATH: text_model, UNTYPED_PATH: untyped_model}
    check_model_out(out, tuple(name for name, path in paths.items() if path is not None))
    combined = _combined(members, loaded)
    if text_model is not None:
        _check_text_path(load_torch_model(text_model), config, text_model)
        combined.record["text_path"] = TEXT_PATH
    if untyped_model is not None:
        _check_untyped_path(load_torch_model(untyped_model), config, untyped_model)
        combined.record["untyped_path"] = UNTYPED_PATH
    if float16:
        combined.round_to_float16()
    combined.save(out)
    for path, name in ((text_model, TEXT_PATH), (untyped_model, UNTYPED_PATH)):
        if path is not None:  # the model's folder as it is: weights, card, its ONNX export
            shutil.rmtree(out / name, ignore_errors=True)
            # the model's own files only (not a training log or a benchmark's cache beside them)
            shutil.copytree(resolve_model(path), out / name, ignore=_not_model_files)
    return combined


def _check_members(members: Sequence[str | Path], loaded: list[TorchModel]) -> None:
    """Each member is one trained network with the first member's config."""
    first, config = members[0], loaded[0].config
    for path, model in zip(members, loaded, strict=True):
        if model.config.ensemble != 1 or model.record.get("text_path"):
            raise MnerInputError("a member must be one trained network, not a combined model", path)
        differs = _first_difference(config.to_dict(), model.config.to_dict())
        if differs is not None:
            raise MnerInputError(
                f"its config differs from {first}'s in {differs!r}: members must share one", path
            )


def _check_out(out: Path, inputs: list[str | Path]) -> None:
    """``out`` is neither one of the models combined nor a packaged model's folder."""
    folders = [resolve_model(m).resolve() for m in inputs]
    if out.resolve() in folders or out.resolve() in {m.folder.resolve() for _, m in MODELS.items()}:
        raise MnerInputError(
            "--out is one of the models combined or a packaged model: give another folder", out
        )


def _combined(members: Sequence[str | Path], loaded: list[TorchModel]) -> TorchModel:
    """One member as it is, or the ensemble of several (their CRF transitions averaged)."""
    if len(loaded) == 1:
        return TorchModel(loaded[0].network, dict(loaded[0].record))
    config = loaded[0].config
    network = EnsembleNetwork(dataclasses.replace(config, ensemble=len(loaded)), pretrained=False)
    for member, model in zip(network.members, loaded, strict=True):
        member.load_state_dict(model.network.state_dict())
    with torch.no_grad():
        for name in ("start_transitions", "end_transitions", "transitions"):
            mean = torch.stack([getattr(m.network.crf, name) for m in loaded]).mean(0)
            getattr(network.crf, name).copy_(mean)
    combined = TorchModel(network, {})  # how each member was trained: "members", and their own cards
    combined.record["members"] = [_member_record(path, model) for path, model in zip(members, loaded)]
    return combined


def _check_text_path(text: TorchModel, config, where: str | Path) -> None:
    if [c for c in text.config.channels if c != "text"] or text.config.tags != config.tags:
        raise MnerInputError(
            "a text path must read text alone and have the same labels as the members", where
        )
    if text.record.get("text_path"):
        raise MnerInputError("a text path cannot have a text path of its own", where)


def _check_untyped_path(untyped: TorchModel, config, where: str | Path) -> None:
    if "context" not in untyped.config.channels or untyped.config.tags != config.tags:
        raise MnerInputError(
            "an untyped path must read the context and have the same labels as the members", where
        )
    if untyped.record.get("text_path") or untyped.record.get("untyped_path"):
        raise MnerInputError("an untyped path cannot have paths of its own", where)


def _first_difference(a: dict, b: dict) -> str | None:
    return next((key for key in a if a[key] != b.get(key)), None)


def _member_record(path, model: TorchModel) -> dict:
    """Where a member came from and what it scored (its card's figures)."""
    training = model.record.get("training", {})
    return {
        "folder": str(path),
        "seed": training.get("train", {}).get("seed"),
        "dev_f1": training.get("dev_f1"),
        "scores": model.record.get("scores", {}),
    }
