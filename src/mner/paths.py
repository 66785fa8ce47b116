"""Where mner keeps files it makes once (an ONNX image encoder, a word-vector index): ``MNER_CACHE``, default
``~/.cache/mner``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_folder() -> Path:
    return Path(os.environ.get("MNER_CACHE") or Path.home() / ".cache" / "mner")
