"""``mner images``: image features (ImageNet attributes, regional features, image vectors) and their cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mner.cli.errors import user_errors
from mner.cli.options import App, RuntimeOption, ThreadsOption

app = App(
    help="Image features: ImageNet attributes, 7×7 regional features and image vectors (EfficientNet-Lite).",
    no_args_is_help=True,
)

Backbone = Annotated[
    str, typer.Option(help="Image encoder: lite0 (224 px), lite1 (240 px) or lite2 (260 px).")
]


@app.command()
@user_errors
def extract(
    images: Annotated[
        Path, typer.Option("--images", help="Folder of images; an image's id is its file stem.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Feature cache file (SQLite); created, or added to.")],
    backbone: Backbone = "lite0",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 16,
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
) -> None:
    """Encode every image of a folder into a feature cache; images already there are skipped."""
    from mner.runtime.images import load_image_encoder
    from mner.vision import EncoderConfig, extract_folder

    config = EncoderConfig.for_backbone(backbone)
    summary = extract_folder(
        images,
        out,
        config,
        batch_size,
        progress=True,
        load=lambda c: load_image_encoder(c, runtime, threads or 1),
    )
    for line in summary.lines():
        typer.echo(line)


@app.command()
@user_errors
def attributes(
    path: Annotated[Path, typer.Argument(help="An image file.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON: attributes and the regions' shape.")
    ] = False,
    backbone: Backbone = "lite0",
    top_k: Annotated[int, typer.Option(min=1, max=1000, help="How many ImageNet classes to show.")] = 5,
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
) -> None:
    """Print an image's top ImageNet classes with their probabilities."""
    from mner.runtime.images import load_image_encoder
    from mner.vision import EncoderConfig
    from mner.vision.decode import load_pixels

    config = EncoderConfig.for_backbone(backbone, top_k=top_k)
    pixels = load_pixels(path, config)  # a bad file fails here, before the model loads
    features = load_image_encoder(config, runtime, threads or 1).encode_pixels(pixels[None])[0]
    if json_output:
        typer.echo(json.dumps(features.to_json()))
        return
    for label, probability in features.attributes:
        typer.echo(f"{probability:.3f}  {label}")
