"""The README's commands run as written, in order, on a fresh checkout, and print what the README shows.

Every fenced ``bash`` block of README.md runs in one fresh folder laid out like a clone (the repository's tracked
top-level entries linked in, ``../shared`` beside it where there is one), one after the other, each under
``set -euo pipefail``; fenced ``python`` blocks run with the same interpreter. A block preceded by the line
``<!-- not run by tests/test_readme.py: REASON -->`` is skipped (long trainings, a server that runs until stopped, a
cluster, an LLM endpoint), and the reason must say why. A block preceded by ``<!-- needs ../shared/: REASON -->``
reads the benchmark data or what is built from it: it runs where ``../shared`` is (``MNER_SHARED`` points elsewhere),
and is skipped where it is not — every other block runs all the same, so a clone without the data checks them.

A line ``#> TEXT`` in a block is a sample of its output: each must be found in one line of what the block printed
(stdout and stderr), ``...`` standing for any text, runs of spaces compared as one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import ROOT, SHARED

SKIP = re.compile(r"<!-- not run by tests/test_readme\.py: (.+?) -->")
NEEDS = re.compile(r"<!-- needs \.\./shared/: (.+?) -->")
FENCE = re.compile(r"^```(\w*)\s*$")
SAMPLE = "#> "


class Block(NamedTuple):
    line: int  # its first line's number in README.md
    language: str
    code: str
    skip: str | None  # why it is not run
    needs: str | None  # why it needs ../shared


def readme_blocks(text: str) -> list[Block]:
    """Each fenced block of the README, in order."""
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
            skip, needs = SKIP.search(before), NEEDS.search(before)
            blocks.append(
                Block(
                    start,
                    opening.group(1),
                    "\n".join(body),
                    skip.group(1) if skip else None,
                    needs.group(1) if needs else None,
                )
            )
        i += 1
    return blocks


def samples(code: str) -> list[str]:
    """The ``#>`` lines of a block, without their marker."""
    return [line.strip()[len(SAMPLE) :] for line in code.splitlines() if line.strip().startswith(SAMPLE)]


def _spaces(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def shown(sample: str, output: str) -> bool:
    """Whether one line of ``output`` holds ``sample``'s pieces (split at ``...``) in order."""
    pieces = [_spaces(p) for p in sample.split("...")]
    for line in output.splitlines():
        line, at = _spaces(line), 0
        for piece in pieces:
            found = line.find(piece, at)
            if found < 0:
                break
            at = found + len(piece)
        else:
            return True
    return False


@pytest.mark.parametrize(
    ("sample", "output", "found"),
    [
        ("tagged 4, errors 0", "note\ntagged 4, errors 0, skipped 0", True),
        ("tagged 4 ... posts/s", "tagged 4, errors 0; 9.1 posts/s", True),
        ("overall    73.11   70.65", "overall 73.11 70.65 71.86", True),
        ("...f1: 71.86...", '{"f1: 71.86"}', True),
        ("posts/s ... tagged 4", "tagged 4, errors 0; 9.1 posts/s", False),  # pieces in order
        ("tagged 4 ... posts/s", "tagged 4, errors 0\n9.1 posts/s", False),  # on one line
        ("[Berlin LOC]", "[Berlin ORG]", False),
    ],
)
def test_a_sample_line_is_found_in_one_line_of_the_output(sample, output, found):
    assert shown(sample, output) is found


def test_every_skipped_block_says_why_and_the_rest_are_bash_or_python():
    blocks = readme_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "README.md has no fenced blocks"
    for block in blocks:
        where = f"README.md:{block.line}"
        assert block.language in {"bash", "python", "text"}, f"{where}: fence language {block.language!r}"
        assert block.skip is None or len(block.skip) > 10, f"{where}: a skipped block needs its reason"
        assert block.needs is None or len(block.needs) > 10, f"{where}: say what of ../shared/ it needs"
        assert block.skip is None or not samples(block.code), f"{where}: a block not run shows no #> output"
        if block.skip is None and "../shared" in block.code:
            assert block.needs is not None, (
                f"{where}: it reads ../shared/: mark it <!-- needs ../shared/: ... -->"
            )
    runnable = [b for b in blocks if b.language == "bash" and b.skip is None]
    assert sum(b.needs is None for b in runnable) >= 8  # what a clone without the data still checks
    assert sum(len(samples(b.code)) for b in blocks) >= 20


def test_the_readme_is_a_guide_by_task():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 450
    headings = [line for line in text.splitlines() if line.startswith("#") and not line.startswith("#!")]
    headings = [h for h in headings if re.match(r"^#{1,6} ", h)]
    assert not [h for h in headings if re.search(r"#\d|issue", h, re.IGNORECASE)], headings
    for task in ("Install", "Data", "Tag posts", "Context", "Train", "Serve", "Scale out", "Python"):
        assert any(task in h for h in headings if h.startswith("## ")), task


@pytest.mark.slow
def test_the_readme_commands_run_in_order_on_a_fresh_checkout(tmp_path):
    clone = tmp_path / "main"
    clone.mkdir()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for entry in sorted({line.split("/")[0] for line in tracked.splitlines()}):
        (clone / entry).symlink_to(ROOT / entry)
    (clone / ".venv").symlink_to(Path(sys.executable).parents[1])
    has_data = (SHARED / "data").is_dir()
    if has_data:
        (tmp_path / "shared").symlink_to(SHARED)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MNER_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    ran = 0
    for block in readme_blocks((ROOT / "README.md").read_text(encoding="utf-8")):
        if block.skip is not None or block.language == "text" or (block.needs and not has_data):
            continue
        if block.language == "bash":
            command = ["bash", "-c", "set -euo pipefail\n" + block.code]
        else:
            command = [sys.executable, "-c", block.code]
        done = subprocess.run(
            command, check=False, cwd=clone, env=env, capture_output=True, text=True, timeout=900
        )
        report = f"\n{block.code}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        assert done.returncode == 0, (
            f"README.md:{block.line}: the {block.language} block failed (exit {done.returncode}){report}"
        )
        for sample in samples(block.code):
            assert shown(sample, done.stdout + "\n" + done.stderr), (
                f"README.md:{block.line}: the block did not print {sample!r}{report}"
            )
        ran += 1
    assert ran >= 8
