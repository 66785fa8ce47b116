"""``mner export``: a model's network as ONNX (``model.onnx`` beside its weights) and its image encoder, so that
predict, tag, serve and evaluate run on ONNX Runtime without torch."""

from __future__ import annotations

import typer

from mner.cli.errors import user_errors
from mner.cli.options import ModelOption, ThreadsOption


@user_errors
def export(model: ModelOption = None, threads: ThreadsOption = None) -> None:
    """Export a model folder to ONNX (checked against PyTorch) and its image encoder to mner's cache."""
    import time

    try:
        from mner.model.torch_model import load_torch_model
        from mner.runtime.export import export_image_encoder, export_model
    except ImportError as err:
        raise typer.BadParameter(
            f"exporting needs PyTorch and onnx ({err}): pip install 'mner[train]'"
        ) from None
    from mner.vision import EncoderConfig

    start = time.perf_counter()
    from mner.model.folder import resolve_model
    from mner.runtime.ort import torch_threads

    torch_model = load_torch_model(model)
    torch_threads(threads or 1)
    folder = resolve_model(model)
    path = export_model(torch_model, folder)
    image = export_image_encoder(EncoderConfig.for_backbone(torch_model.config.image_backbone))
    typer.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {folder / 'onnx.json'}; image encoder "
        f"{image}; {time.perf_counter() - start:.1f} s"
    )
