"""ONNX Runtime sessions and where mner keeps the image encoders' ONNX files. No torch here.

Thread counts are never global: every caller passes its own (the Pipeline owns one for its sessions, its
image decoding and, on PyTorch, torch's process-wide setting; training passes its own to torch).
"""

from __future__ import annotations

from pathlib import Path

from mner.data import MnerInputError
from mner.paths import cache_folder

OPSET = 17  # the ONNX opset of every graph mner exports (models, the image and text encoders)
DEFAULT_THREADS = 1  # measured best when other jobs share the CPU (BENCHMARKS.md, "Threads")


def check_threads(threads: int | None) -> int:
    """``threads``, or the default for None.

    Raises:
        MnerInputError: fewer than one.
    """
    threads = DEFAULT_THREADS if threads is None else threads
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise MnerInputError(f"threads must be at least 1, got {threads!r}")
    return threads


def onnx_session(path: str | Path, threads: int = DEFAULT_THREADS):
    """An ONNX Runtime session on the CPU with ``threads`` intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MnerInputError("ONNX inference needs onnxruntime (pip install onnxruntime)") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = check_threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Idle worker threads sleep instead of spinning: a spinning thread takes a core that decoding, the HTTP
    # loop or another job needs (BENCHMARKS.md, "Threads" and "mner serve": 2 threads on a busy 2-core machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def torch_threads(threads: int) -> None:
    """Set torch's thread count (a process-wide setting in torch) when torch is loaded."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(check_threads(threads))


def image_encoder_path(config) -> Path:
    """Where the ONNX file of an image encoder config (``mner.vision.EncoderConfig``) is kept."""
    return cache_folder() / f"vision-{config.backbone}-grid{config.grid}.onnx"
