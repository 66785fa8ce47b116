"""Option types that several commands share (one help text each), and the app every command group is made
with: help as plain text (a help text's ``[model]`` is shown, not read as markup; a flag is shown as a flag)
and usage lines that name arguments in capitals (``mner kg lookup [OPTIONS] TEXT``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand


class UsageCommand(TyperCommand):
    """A command whose usage line names its arguments ``TEXT`` / ``[TEXT]``, not ``{text}``."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                pieces.extend(param.get_usage_pieces(ctx))
                continue
            name = (param.metavar or param.name or "").upper() + ("..." if param.nargs != 1 else "")
            pieces.append(name if param.required else f"[{name}]")
        return pieces


class App(typer.Typer):
    """``typer.Typer`` with plain-text help and ``UsageCommand`` commands."""

    def __init__(self, **settings):
        super().__init__(rich_markup_mode=None, **settings)

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", UsageCommand)
        return super().command(*args, **kwargs)


def _say_which_model(model: Path | None) -> Path | None:
    """A bare packaged model's name that is also a folder here loads the folder: say so, once, on stderr."""
    from mner.model.folder import shadowed_model_note

    note = shadowed_model_note(model)
    if note is not None:
        typer.echo(f"note: {note}", err=True)
    return model


ModelOption = Annotated[
    Path | None,
    typer.Option(
        help="Model folder, or a packaged model by name: 'default' (the default), 'text' or 'paper-full'; a folder of "
        "that name here comes first, 'pkg:NAME' is always the packaged one.",
        callback=_say_which_model,
    ),
]
CaptionsOption = Annotated[
    Path | None,
    typer.Option(
        "--captions", help="Captions TSV (image_id<TAB>caption) for models with a 'caption' channel."
    ),
]
KgOption = Annotated[
    Path | None,
    typer.Option("--kg", help="Knowledge-graph file (mner kg build) for models with a 'knowledge' channel."),
]
ImagesCacheOption = Annotated[
    Path | None,
    typer.Option(
        "--images-cache",
        help="Image feature cache (mner images extract) for the 'attributes' and 'image' channels.",
    ),
]
ContextOption = Annotated[
    Path | None,
    typer.Option(
        "--context",
        help="Context TSV (image_id<TAB>text or id<TAB>text, with that header): free text about each post, e.g. "
        "an LLM's notes (mner context); for models with a 'context' channel.",
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Threads for torch, ONNX Runtime and image decoding (default 1: what measured best with other jobs "
        "on the CPU; raise it on an otherwise idle machine).",
    ),
]
RuntimeOption = Annotated[
    str,
    typer.Option(
        help="auto (ONNX Runtime when the model has a current export, else PyTorch), onnx or torch.",
    ),
]
