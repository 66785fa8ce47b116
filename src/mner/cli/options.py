"""Option types that several commands share (one help text each), and the app every command group is made
with: help as plain text (a help text's ``[model]`` is shown, not read as markup; a flag is shown as a flag)
and usage lines that name arguments in capitals (``mner kg lookup [OPTIONS] TEXT``)."""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from mner.channels.spec import CHANNELS, file_sources, text_fields


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
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Threads for torch, ONNX Runtime and image decoding (default 1: what measured best with other jobs "
        "on the CPU; raise it on an otherwise idle machine).",
    ),
]
MinScoreOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Leave out entities whose probability (the 'score' of each entity, from the model's CRF) is below "
        "this (0 to 1; default 0: every entity the model finds).",
    ),
]
LabelMapOption = Annotated[
    Path | None,
    typer.Option(
        "--label-map",
        help="TSV file of 'from<TAB>to' lines that rename or merge entity types in the CoNLL files read ('to' "
        "may be O to drop a type); without it the data's types are used as they are (Twitter-2017's MISC as "
        "OTHER, where a file's types are the benchmark's).",
    ),
]
AttributesOption = Annotated[
    bool,
    typer.Option(
        "--attributes",
        help="Read each post's image for its top-5 ImageNet classes ('attributes'). Without it an image is read "
        "only by a model that uses it (image channels, a caption from the image, a KG's image match); "
        "otherwise it is not opened and 'attributes' is null.",
    ),
]
RuntimeOption = Annotated[
    str,
    typer.Option(
        help="auto (ONNX Runtime when the model has a current export, else PyTorch), onnx or torch.",
    ),
]


@dataclass
class ChannelArgs:
    """What a command's channel options were given (``channel_options``)."""

    files: dict[str, Path | list[Path]] = field(default_factory=dict)  # channel → the file(s) that fill it
    texts: dict[str, str] = field(default_factory=dict)  # a text field → the post's text for it
    max_chars: dict[str, int] = field(default_factory=dict)  # a text field → the service's limit on it
    flags: dict[str, object] = field(default_factory=dict)  # option flag → its value, as given (for the card)


# a file option's spelling in the last release → its name now: accepted for one release, with a notice
RENAMED_FILE_FLAGS = {"--context": "--context-file"}


def renamed_flag_notice(old: str, new: str) -> str:
    """The one line a renamed flag prints when it is used under its old spelling."""
    return f"note: {old} FILE is now {new} FILE; the old spelling goes in the next release"


def channel_options(
    files: tuple[str, ...] = (), texts: bool = False, limits: bool = False, several: bool = False
):
    """Give a command one option per channel file (``files``: the sources to offer, "tsv", "kg", "features"), per
    channel text field (``texts``: ``--caption``, ``--context``), or per text field's service limit (``limits``:
    ``--max-text-chars``, ...), all made from ``mner.channels.spec.CHANNELS``; the command receives them as
    ``channels: ChannelArgs``. With ``several``, a TSV option may be given once per data file (their texts are
    read as one). A channel added to the registry gets its options everywhere at once."""

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)
        hints = typing.get_type_hints(func, include_extras=True)
        added = (
            _file_params(files, several)
            + (_text_params() if texts else [])
            + (_limit_params() if limits else [])
        )
        # hidden options for the file flags' old spellings (not where the old spelling is a text: predict --context)
        renamed = [] if texts else _renamed_params(files, several)
        kept = [p for p in signature.parameters.values() if p.name != "channels"]

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            _fold_renamed(kwargs, renamed)
            return func(*args, channels=_channel_args(added, kwargs), **kwargs)

        extra = [p for p, _, _ in added] + [p for p, _, _, _ in renamed]
        wrapper.__signature__ = signature.replace(parameters=[*kept, *extra])
        wrapper.__annotations__ = {
            **{k: v for k, v in hints.items() if k != "channels"},
            **{p.name: p.annotation for p in extra},
        }
        del wrapper.__wrapped__  # typer reads the signature above, not the function's own
        return wrapper

    return decorate


Added = list[
    tuple[inspect.Parameter, str, object]
]  # (parameter, kind, key): the options channel_options adds


def _file_params(files: tuple[str, ...], several: bool) -> Added:
    """One option per channel file whose source is in ``files`` (``--captions``, ``--kg``, ...)."""
    added: Added = []
    for flag, specs in file_sources().items():
        if specs[0].source in files:
            many = several and specs[0].source == "tsv"
            help_text = specs[0].file_help + (
                " Give it once per data file, as many as needed." if many else ""
            )
            kind = list[Path] | None if many else Path | None
            annotation = Annotated[kind, typer.Option(flag, help=help_text)]
            name = flag.lstrip("-").replace("-", "_")
            added.append((_param(name, annotation, None), "file", (flag, [s.name for s in specs])))
    return added


def _text_params() -> Added:
    """One option per channel text field (``--caption``, ``--context``)."""
    added: Added = []
    for name in text_fields():
        spec = next(s for s in CHANNELS.values() if s.field == name and s.reads == "words")
        annotation = Annotated[str | None, typer.Option(spec.predict_flag, help=spec.predict_help)]
        added.append((_param(name, annotation, None), "text", name))
    return added


def _limit_params() -> Added:
    """One option per text field's service limit (``--max-text-chars``, ...)."""
    added: Added = []
    for spec in CHANNELS.values():
        if spec.field is None or spec.max_chars is None:
            continue
        what = "post text" if spec.reads == "text" else f"{spec.field} ({spec.summary})"
        option = typer.Option(min=1, help=f"Longest {what} accepted, in characters.")
        name = f"max_{spec.field}_chars"
        added.append((_param(name, Annotated[int, option], spec.max_chars), "limit", spec.field))
    return added


def _channel_args(added: Added, kwargs: dict) -> ChannelArgs:
    """What the added options were given, taken out of a command's ``kwargs``."""
    given = ChannelArgs()
    for parameter, kind, key in added:
        value = kwargs.pop(parameter.name, parameter.default)
        if kind == "file" and value:
            flag, channels = key
            given.flags[flag] = value
            given.files.update(dict.fromkeys(channels, value))
        elif kind == "text" and value is not None:
            given.texts[key] = value
        elif kind == "limit":
            given.max_chars[key] = value
    return given


def _renamed_params(files: tuple[str, ...], several: bool) -> list[tuple[inspect.Parameter, str, str, str]]:
    """The hidden options of the file flags' old spellings for the sources in ``files``."""
    out = []
    for flag, specs in file_sources().items():
        if specs[0].source in files:
            kind = list[Path] | None if several and specs[0].source == "tsv" else Path | None
            out.extend(_renamed_file_options(flag, flag.lstrip("-").replace("-", "_"), kind))
    return out


def _renamed_file_options(flag: str, name: str, kind) -> list[tuple[inspect.Parameter, str, str, str]]:
    """Hidden options for a file flag's old spellings (``RENAMED_FILE_FLAGS``): (parameter, the new option's
    parameter name, old flag, new flag). Not on a command where the old spelling means something else (``predict
    --context`` is the post's context text)."""
    return [
        (
            _param(f"renamed_{old.lstrip('-').replace('-', '_')}", _hidden(kind, old, flag), None),
            name,
            old,
            flag,
        )
        for old, new in RENAMED_FILE_FLAGS.items()
        if new == flag
    ]


def _fold_renamed(kwargs: dict, renamed: list[tuple[inspect.Parameter, str, str, str]]) -> None:
    """A value given under an old spelling becomes the new option's, with the one-line notice.

    Raises:
        typer.BadParameter: both spellings given.
    """
    for parameter, name, old, new in renamed:
        value = kwargs.pop(parameter.name, None)
        if not value:
            continue
        if kwargs.get(name):
            raise typer.BadParameter(f"give {new} only (not also {old})")
        typer.echo(renamed_flag_notice(old, new), err=True)
        kwargs[name] = value


def _hidden(kind, old: str, new: str):
    return Annotated[kind, typer.Option(old, hidden=True, help=f"Renamed {new}.")]


def _param(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation
    )
