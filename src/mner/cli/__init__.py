"""The ``mner`` command line: one command per verb; heavy imports happen inside the commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mner",
    help="Multimodal named entity recognition for social-media posts (text + image + knowledge).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Console-script entry point."""
    app()


from mner.cli import core as _core  # noqa: F401  (registers train/evaluate/predict/demo)
from mner.cli import images as _images
from mner.cli import tag as _tag  # noqa: F401  (registers tag)

app.add_typer(_images.app, name="images")
from mner.cli import kg as _kg

app.add_typer(_kg.app, name="kg")
from mner.cli import serve as _serve  # noqa: F401  (registers serve)
