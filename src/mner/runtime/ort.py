"""ONNX Runtime sessions and where mner keeps the image encoders' ONNX files. No torch here.

Thread counts are never global: every caller passes its own (the Pipeline owns one for its sessions, its
image decoding and, on PyTorch, torch's process-wide setting; training passes its own to torch).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mner.data import MnerInputError
from mner.paths import cache_folder

OPSET = 17  # the ONNX opset of every graph mner exports (models, the image and text encoders)
_WEIGHTS = "weights.bin"  # the weights of a graph kept by optimized_session, beside it
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


def _onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise MnerInputError("ONNX inference needs onnxruntime (pip install onnxruntime)") from None
    return ort


def onnx_session(
    path: str | Path, threads: int = DEFAULT_THREADS, optimize: bool = True, save_to: Path | None = None
):
    """An ONNX Runtime session on the CPU with ``threads`` intra-op threads. ``optimize=False`` loads a graph as
    it is (one ONNX Runtime optimized before); ``save_to`` keeps the graph ONNX Runtime optimized (the level that
    fuses nodes into its CPU kernels, short of the layout changes), its weights in ``weights.bin`` beside it,
    for ``optimized_session``."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    elif save_to is not None:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(save_to)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", _WEIGHTS)
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
    options.intra_op_num_threads = check_threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Idle worker threads sleep instead of spinning: a spinning thread takes a core that decoding, the HTTP
    # loop or another job needs (BENCHMARKS.md, "Threads" and "mner serve": 2 threads on a busy 2-core machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def optimized_path(path: Path) -> Path:
    """The folder where ``optimized_session`` keeps ONNX Runtime's optimized form of ``path`` (``model.onnx`` and
    its weights beside it in ``weights.bin``), named by ONNX Runtime's version: another version optimizes anew."""
    return path.with_name(f"{path.stem}.ort-{_onnxruntime().__version__}")


def optimized_session(path: Path, threads: int = DEFAULT_THREADS):
    """A session of a large graph made in mner's cache (a text encoder), whose optimized form is kept beside it
    the first time, its weights in a file of their own: what brought ``mner predict``'s start-up under 1 s
    (BENCHMARKS.md, "Start-up since then"). Made again when ``path`` is newer or the kept form is unreadable;
    where it cannot be written, the session is opened as ``onnx_session`` opens it."""
    state = _onnxruntime().capi.onnxruntime_pybind11_state
    refused = (state.Fail, state.InvalidArgument, state.InvalidGraph, state.InvalidProtobuf, state.NoSuchFile)
    folder = optimized_path(path)
    saved = folder / "model.onnx"
    replace = folder.exists()  # stale or damaged when not opened below
    try:
        if saved.is_file() and saved.stat().st_mtime >= path.stat().st_mtime:
            return onnx_session(saved, threads, optimize=False)
    except (OSError, *refused):
        pass  # damaged, or removed meanwhile: optimized again below
    partial = folder.with_name(f"{folder.name}.{os.getpid()}.part")
    try:
        partial.mkdir(parents=True, exist_ok=True)
        session = onnx_session(path, threads, save_to=partial / saved.name)
    except (OSError, *refused):
        shutil.rmtree(partial, ignore_errors=True)
        return onnx_session(path, threads)
    try:
        if replace:
            shutil.rmtree(folder, ignore_errors=True)
        os.rename(partial, folder)
    except OSError:
        pass  # another process kept its form first: that one stays
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return session


def torch_threads(threads: int) -> None:
    """Set torch's thread count (a process-wide setting in torch) when torch is loaded."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(check_threads(threads))


def image_encoder_path(config) -> Path:
    """Where the ONNX file of an image encoder config (``mner.vision.EncoderConfig``) is kept."""
    return cache_folder() / f"vision-{config.backbone}-grid{config.grid}.onnx"
