"""mner: multimodal named entity recognition for social-media posts (text + image + knowledge).

The import is light: torch and the model code load only when a tagger is used.
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
    # Tagger pulls in torch; resolve it only when asked for.
    if name in ("Tagger", "load_tagger"):
        from mner import tagger

        return getattr(tagger, name)
    raise AttributeError(f"module 'mner' has no attribute {name!r}")
