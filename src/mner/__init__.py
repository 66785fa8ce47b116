"""mner: multimodal named entity recognition for social-media posts (text + image + knowledge).

The import is light: the runtime loads only when a tagger is used. ``load_tagger()`` runs a model on ONNX
Runtime when its folder holds a current export (no torch), else on PyTorch; ``Tagger`` is the PyTorch tagger
(training, saving).
"""

from mner.data import ENTITY_TYPES, MnerInputError, Post, Span, tokenize
from mner.version import __version__

__all__ = [
    "ENTITY_TYPES",
    "MnerInputError",
    "Post",
    "Span",
    "Tagger",
    "__version__",
    "load_tagger",
    "tokenize",
]


def __getattr__(name: str):
    # resolved only when asked for: the runtime imports NumPy and ONNX Runtime, the Tagger torch
    if name == "load_tagger":
        from mner.runtime.runners import load_tagger

        return load_tagger
    if name == "Tagger":
        from mner.model.torch_model import Tagger

        return Tagger
    raise AttributeError(f"module 'mner' has no attribute {name!r}")
