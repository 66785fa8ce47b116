"""Option types that several commands share (one help text each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOption = Annotated[
    Path | None,
    typer.Option(
        help="Model folder, or a packaged model by name (default: the shipped 'default'; also 'paper-full')."
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
