"""``mner combine``: one model folder from trained ones — an ensemble of members (seeds), a text path."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from mner.cli.errors import user_errors
from mner.cli.options import ChannelArgs, ThreadsOption, channel_options


@channel_options(files=("tsv", "kg"), several=True)
@user_errors
def combine(
    members: Annotated[
        list[Path],
        typer.Option(
            "--member",
            help="A trained model folder; give it once per member (k seeds of one config: an ensemble).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the combined model to.")],
    text_model: Annotated[
        Path | None,
        typer.Option(
            help="A text-only model folder (same labels): it tags the posts whose context names nothing in them."
        ),
    ] = None,
    untyped_model: Annotated[
        Path | None,
        typer.Option(
            help="A context model trained on lists with their kinds hidden: it tags the posts whose context names "
            "something in them without kinds that name a type."
        ),
    ] = None,
    test_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--test", help="Score this CoNLL file with the combined model into its card (once per file)."
        ),
    ] = None,
    float16: Annotated[
        bool,
        typer.Option(
            "--float16",
            help="Store the weights as float16: half the folder; each weight rounded once, the network still "
            "computes in float32 (the card's scores are the rounded model's).",
        ),
    ] = False,
    threads: ThreadsOption = None,
    channels: ChannelArgs = None,
) -> None:
    """Combine trained models into one folder: the ensemble of --member models (their mean emissions and CRF
    scores: one network, one ONNX graph) and, with --text-model, its text path."""
    try:
        from mner.model.combine import combine as combine_models
        from mner.runtime.export import export_model
    except ImportError as err:
        raise typer.BadParameter(
            f"combining needs PyTorch and onnx ({err}): pip install 'mner[train]'"
        ) from None
    from mner.channels.sources import ChannelSources
    from mner.cli.core import fill, gold
    from mner.evaluate import entity_scores
    from mner.model.torch_model import load_torch_model
    from mner.runtime.ort import torch_threads

    torch_threads(threads or 1)
    combined = combine_models(members, out, text_model, untyped_model, float16=float16)
    export_model(combined, out)
    runner = combined
    paths = {key: combined.record.get(f"{key}_path") for key in ("text", "untyped")}
    if any(paths.values()):
        from mner.model.folder import open_model_folder
        from mner.runtime.runners import RoutedRunner, onnx_export_state

        loaded = {}
        for key, name in paths.items():
            if name is None:
                continue
            loaded[key] = load_torch_model(out / name)
            if onnx_export_state(open_model_folder(out / name)) is not None:
                export_model(loaded[key], out / name)  # its copy runs on ONNX Runtime too
        runner = RoutedRunner(combined, loaded.get("text"), loaded.get("untyped"))
    sources = ChannelSources.open(channels.files, combined.config.image_backbone)
    for number, path in enumerate(test_files or []):
        test = fill(sources, gold(path, None), combined.config.channels, str(path)).posts
        types = list(combined.config.labels.types)
        scored = entity_scores([list(p.tags) for p in test], runner.predict_tags(test), types)
        label = "test" if number == 0 else f"test {number + 1}"
        combined.record.setdefault("scores", {})[label] = {**scored.to_json(), "file": str(path)}
        typer.echo(f"{path}: F1 {100 * scored.f1:.2f}", err=True)
    given = [
        *(("--member", m) for m in members),
        ("--text-model", text_model),
        ("--untyped-model", untyped_model),
        *(("--test", t) for t in test_files or []),
    ]
    if float16:
        given.append(("--float16", True))
    given += [
        (f, v) for f, value in channels.flags.items() for v in (value if isinstance(value, list) else [value])
    ]
    combined.record.setdefault("training", {})["command"] = "mner combine " + " ".join(
        flag if v is True else f"{flag} {shlex.quote(str(v))}"
        for flag, v in [*given, ("--out", out)]
        if v is not None
    )
    combined.save(out)  # the same weights (the export stays current), the record with its scores and command
    typer.echo(
        f"wrote {out}: {len(members)} member(s)"
        + (", a text path" if text_model else "")
        + (", an untyped path" if untyped_model else "")
    )
