"""mner: multimodal named entity recognition for social-media posts (text + image + knowledge).

    from mner import Pipeline
    pipeline = Pipeline()                                  # the shipped default model, on ONNX Runtime
    result = pipeline.tag("Bears win in Chicago", context="Named entities:1. Bears (sports team)")
    result.entities                                        # (Span(0, 1, 'ORG', 'Bears'), ...)

``Pipeline`` is the one way to tag posts: it loads a model (ONNX Runtime when its folder holds a current
export, else PyTorch), fills each post's channels from what it carries and the files given, and tags it. The
import is light: the Pipeline's runtime loads only when it is used. Training is ``mner.training``.
"""

from mner.data import ENTITY_TYPES, MnerInputError, Post, Span, tokenize
from mner.version import __version__

__all__ = [
    "ENTITY_TYPES",
    "MnerInputError",
    "Pipeline",
    "Post",
    "PostInput",
    "Span",
    "TagResult",
    "__version__",
    "tokenize",
]


def __getattr__(name: str):
    # resolved only when asked for: the Pipeline imports NumPy and ONNX Runtime
    if name in ("Pipeline", "PostInput"):
        from mner.serving import pipeline

        return getattr(pipeline, name)
    if name == "TagResult":
        from mner.serving.result import TagResult

        return TagResult
    raise AttributeError(f"module 'mner' has no attribute {name!r}")
