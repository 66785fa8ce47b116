"""ONNX Runtime sessions, mner's cache folder, and the one thread setting for torch, ONNX Runtime and image
decoding. No torch here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mner.data import MnerInputError
from mner.paths import cache_folder

DEFAULT_THREADS = 1  # measured best when other jobs share the CPU (BENCHMARKS.md, "Threads")
_threads = DEFAULT_THREADS


def set_threads(threads: int | None) -> int:
    """Use ``threads`` (None: the default) for torch, ONNX Runtime and image decoding from now on."""
    global _threads
    _threads = DEFAULT_THREADS if threads is None else threads
    if _threads < 1:
        raise MnerInputError(f"threads must be at least 1, got {_threads}")
    os.environ["OMP_NUM_THREADS"] = str(_threads)  # for libraries that read it when they start
    if sys.modules.get("torch") is not None:  # already imported: set it now (else set when it is loaded)
        sys.modules["torch"].set_num_threads(_threads)
    return _threads


def threads() -> int:
    return _threads


def onnx_session(path: str | Path):
    """An ONNX Runtime session on the CPU with the configured threads."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MnerInputError("ONNX inference needs onnxruntime (pip install onnxruntime)") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Idle worker threads sleep instead of spinning: a spinning thread takes a core that decoding, the HTTP
    # loop or another job needs (BENCHMARKS.md, "Threads" and "mner serve": 2 threads on a busy 2-core machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def image_encoder_path(config) -> Path:
    """Where the ONNX file of an image encoder config (``mner.vision.EncoderConfig``) is kept."""
    return cache_folder() / f"vision-{config.backbone}-grid{config.grid}.onnx"
