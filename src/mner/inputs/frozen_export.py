"""The ONNX export of a frozen text encoder (``mner.inputs.frozen``), made once from its package's weights. Needs
torch and transformers (imported by ``mner.inputs.frozen`` only when the file is missing)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mner.data import MnerInputError
from mner.inputs.pieces import quiet_transformers
from mner.runtime.ort import OPSET, onnx_session


class _LastLayers(nn.Module):
    """A transformer's last ``layers`` hidden states, stacked: (batch, pieces, layers, dim)."""

    def __init__(self, model: nn.Module, layers: int):
        super().__init__()
        self.model, self.layers = model, layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        ).hidden_states
        return torch.stack(states[-self.layers :], dim=2)


def export_text_encoder(name: str, folder: Path, path: Path, layers: int) -> Path:
    """The ONNX file of a frozen text encoder (``mner.inputs.frozen``): word pieces and their mask → the last
    ``layers`` hidden states of each piece; checked against PyTorch on a sample before it is kept."""
    from transformers import AutoModel

    with quiet_transformers():
        model = AutoModel.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, add_pooling_layer=False
        ).eval()
    wrapped = _LastLayers(model, layers).eval()
    ids = torch.tensor([[0, 2000, 3000, 4000, 2], [0, 2500, 2, 1, 1]], dtype=torch.int64)
    ids = ids.clamp(max=model.config.vocab_size - 1)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.part")
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = wrapped(ids, mask).numpy()
            torch.onnx.export(
                wrapped,
                (ids, mask),
                str(partial),
                input_names=["input_ids", "attention_mask"],
                output_names=["states"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "pieces"},
                    "attention_mask": {0: "batch", 1: "pieces"},
                    "states": {0: "batch", 1: "pieces"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        (got,) = onnx_session(partial, 1).run(
            None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        )
        real = mask.numpy().astype(bool)
        if not np.allclose(got[real], expected[real], atol=1e-3):
            raise MnerInputError(f"the ONNX export of {name} differs from PyTorch", path)
        os.replace(partial, path)
    except OSError as err:
        raise MnerInputError(
            f"cannot write the text encoder's ONNX file ({err.strerror or err})", path
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return path
