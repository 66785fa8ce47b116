"""The ``mner`` command line: one command per verb; heavy imports happen inside the commands."""

from __future__ import annotations

from typing import Annotated

import typer

from mner.cli import ask_llm, combine, core, data, export, images, kg, serve, tag
from mner.cli.options import App

app = App(
    name="mner",
    help="Multimodal named entity recognition for social-media posts (text + image + knowledge).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from mner.version import __version__

        typer.echo(f"mner {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print mner's version and exit."
        ),
    ] = False,
) -> None:
    """Multimodal named entity recognition for social-media posts (text + image + knowledge)."""


for command in (
    core.train,
    core.evaluate,
    core.predict,
    core.demo,
    tag.tag,
    serve.serve,
    export.export,
    combine.combine,
):
    app.command()(command)
app.command("ask-llm")(ask_llm.ask_llm)
app.command("context", hidden=True)(ask_llm.ask_llm)  # its name before it was ask-llm
app.add_typer(images.app, name="images")
app.add_typer(kg.app, name="kg")
app.add_typer(data.app, name="data")


def main() -> None:
    """Console-script entry point."""
    app()
