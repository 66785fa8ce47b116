"""The image network's one head (PyTorch): normalised pixels → regions, image vector, class probabilities.

``ImageHead`` is what ``mner.vision.ImageEncoder`` runs on PyTorch and what ``mner.runtime.export`` exports to
ONNX, so both runtimes compute the same function; ``mner.vision.encoder.features_from_outputs`` turns its
outputs into ``ImageFeatures`` for both.
"""

from __future__ import annotations

import torch
from torch import nn


def pooling_matrix(size: int, grid: int) -> torch.Tensor:
    """(grid, size): row i averages the cells adaptive average pooling gives bin i (floor/ceil bounds)."""
    matrix = torch.zeros(grid, size)
    for i in range(grid):
        start, end = (i * size) // grid, -(-((i + 1) * size) // grid)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class ImageHead(nn.Module):
    """Normalised pixels (batch, 3, size, size) → regions (batch, grid², C), unit image vector (batch, C),
    class probabilities (batch, classes).

    A feature map larger than the grid is pooled by fixed matrices: adaptive average pooling for this input
    size, in operations ONNX has (it cannot express adaptive pooling with a dynamic size)."""

    def __init__(self, network: nn.Module, grid: int, input_size: int):
        super().__init__()
        self.network, self.grid = network, grid
        with torch.inference_mode():
            h, w = network.extract_features(torch.zeros(1, 3, input_size, input_size)).shape[-2:]
        self.pool = (h, w) != (grid, grid)
        self.register_buffer("rows", pooling_matrix(h, grid))
        self.register_buffer("cols", pooling_matrix(w, grid))

    def forward(self, x: torch.Tensor):
        fmap = self.network.extract_features(x)  # shape: (batch, C, h, w); h = w = 7 for lite0 at 224
        pooled = fmap.mean(dim=(2, 3))  # shape: (batch, C)
        probs = self.network._fc(pooled).softmax(dim=-1)  # shape: (batch, 1000)
        if self.pool:
            fmap = self.rows @ fmap @ self.cols.T  # shape: (batch, C, grid, grid)
        regions = fmap.flatten(2).transpose(1, 2)  # shape: (batch, grid², C)
        return regions, nn.functional.normalize(pooled, dim=-1), probs
