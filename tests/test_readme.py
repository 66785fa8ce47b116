"""The README's commands run as written, in order, on a fresh checkout.

Every fenced ``bash`` block of README.md runs in one fresh folder laid out like a clone (the repository's tracked
top-level entries linked in, ``../shared`` beside it), one after the other, each under ``set -euo pipefail``;
fenced ``python`` blocks run with the same interpreter. A block preceded by the line
``<!-- not run by tests/test_readme.py: REASON -->`` is skipped (long trainings, a server that runs until stopped,
a cluster, an LLM endpoint), and the reason must say why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED, needs_twitter2015

SKIP = re.compile(r"<!-- not run by tests/test_readme\.py: (.+?) -->")
FENCE = re.compile(r"^```(\w*)\s*$")


def readme_blocks(text: str) -> list[tuple[int, str, str, str | None]]:
    """(first line number, language, code, skip reason) of each fenced block, in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening and opening.group(1):
            start, body = i + 1, []
            i += 1
            while not FENCE.match(lines[i]):
                body.append(lines[i])
                i += 1
            before = lines[start - 2] if start >= 2 else ""
            skip = SKIP.search(before)
            blocks.append((start, opening.group(1), "\n".join(body), skip.group(1) if skip else None))
        i += 1
    return blocks


def test_every_skipped_block_says_why_and_the_rest_are_bash_or_python():
    blocks = readme_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "README.md has no fenced blocks"
    for line, language, _, skip in blocks:
        assert language in {"bash", "python", "text"}, f"README.md:{line}: fence language {language!r}"
        assert skip is None or len(skip) > 10, f"README.md:{line}: a skipped block needs its reason"
    assert sum(skip is None for _, language, _, skip in blocks if language == "bash") >= 8


@pytest.mark.slow
@needs_twitter2015
def test_the_readme_commands_run_in_order_on_a_fresh_checkout(tmp_path):
    clone = tmp_path / "main"
    clone.mkdir()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for entry in sorted({line.split("/")[0] for line in tracked.splitlines()}):
        (clone / entry).symlink_to(ROOT / entry)
    (clone / ".venv").symlink_to(Path(sys.executable).parents[1])
    (tmp_path / "shared").symlink_to(SHARED)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MNER_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    ran = 0
    for line, language, code, skip in readme_blocks((ROOT / "README.md").read_text(encoding="utf-8")):
        if skip is not None or language == "text":
            continue
        if language == "bash":
            command = ["bash", "-c", "set -euo pipefail\n" + code]
        else:
            command = [sys.executable, "-c", code]
        done = subprocess.run(
            command, check=False, cwd=clone, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, (
            f"README.md:{line}: the {language} block failed (exit {done.returncode})\n{code}\n"
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )
        ran += 1
    assert ran >= 8
