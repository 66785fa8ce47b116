"""Tagging jobs: posts from a file, tagged by a Pipeline in batches, written as records; resumable.

The parts ``mner tag`` runs on one process and the Ray job runs on its workers:

- ``read_lines``: each input line (JSONL) as the post to tag or the error that says why it cannot be;
  ``post_input`` turns one decoded object into that.
- ``tag_lines``: a batch of lines → records in order: the ``TagResult`` of each post, or ``{"id", "line",
  "error"}`` naming ``FILE:LINE`` and what was expected. Bad input never fails a job.
- ``OutputFile``: an output being appended to — refused if it is the input or holds lines that are not mner
  records, locked against a second writer, a last line cut by an interrupted run removed, and the ids
  already there counted, so a rerun skips exactly the posts written (``Resume``; duplicate ids included).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mner.data import MnerInputError, iter_jsonl, post_from_json

if TYPE_CHECKING:
    from mner.pipeline import Pipeline, PostInput

RECORD_KEYS = ({"id", "tokens", "entities"}, {"id", "line", "error"})  # a tagged post; an error record


@dataclass
class InputLine:
    """One input line: its id, and either the post to tag or the error record to write instead."""

    number: int
    id: str
    post: PostInput | None = None
    error: str | None = None


def line_id(obj: object, default: str) -> str:
    """The id a line's record carries: its own "id" (a string or a number), else ``<stem>-<line>``."""
    if (
        isinstance(obj, dict)
        and isinstance(obj.get("id"), str | int | float)
        and not isinstance(obj["id"], bool)
    ):
        return str(obj["id"])
    return default


def post_input(obj: object, number: int, source: str, base: Path, confined: bool) -> InputLine:
    """The line's post, or its error naming ``source:number`` (``source``: the input path as given)."""
    from mner.pipeline import PostInput

    default_id = f"{Path(source).stem}-{number}"
    ident = line_id(obj, default_id)
    if isinstance(obj, MnerInputError):
        return InputLine(number, ident, error=f"{source}:{number}: {obj.reason}")
    try:
        if isinstance(obj, dict) and obj.get("id") is not None and ident == default_id and obj["id"] != ident:
            raise ValueError("'id' must be a string or a number")
        post = post_from_json(obj, where=default_id)
        image = None if post.image is None else image_path(post.image, base, confined)
    except ValueError as err:  # MnerInputError is one
        return InputLine(number, ident, error=f"{source}:{number}: {err}")
    text = post.extra.get("text")
    return InputLine(
        number,
        ident,
        PostInput(
            text if text is not None else " ".join(post.tokens),
            image,
            post.caption,
            ident,
            tokens=post.tokens,
            context=post.context,
        ),
    )


def read_lines(path: Path, images_root: Path | None = None) -> Iterator[InputLine]:
    """Each non-blank line of a JSONL file as an ``InputLine`` (constant memory; a line over
    ``mner.data.MAX_LINE_BYTES`` is an error, not a memory spike).

    Raises:
        MnerInputError: the file cannot be opened (on the call, before the first line).
    """
    lines = iter_jsonl(path)
    base = images_root if images_root is not None else path.parent
    return (post_input(obj, number, str(path), base, images_root is not None) for number, obj in lines)


def image_path(value: str, base: Path, confined: bool) -> Path:
    """The image file a post names, relative to ``base``; with ``confined``, it must resolve inside ``base``.

    Raises:
        MnerInputError: a confined path that leaves ``base`` (``..``, an absolute path, a symlink out).
    """
    path = base / value  # an absolute ``value`` replaces base
    if confined:
        root = base.resolve()
        if not path.resolve().is_relative_to(root):
            raise MnerInputError(f"image {value!r} is outside --images-root {base}")
    return path


def error_record(line: InputLine, message: str) -> dict:
    return {"id": line.id, "line": line.number, "error": message}


def tag_lines(pipeline: Pipeline, lines: list[InputLine], source: str) -> list[dict]:
    """The record of each line, in order: one encoder and one tagger call for the batch's posts."""
    posts = [line for line in lines if line.error is None]
    results = iter(pipeline.tag_many([line.post for line in posts]) if posts else [])
    records = []
    for line in lines:
        if line.error is not None:
            records.append(error_record(line, line.error))
            continue
        result = next(results)
        if isinstance(result, MnerInputError):
            records.append(error_record(line, f"{source}:{line.number}: {result}"))
        else:
            records.append(result.to_dict())
    return records


def batches(lines: Iterable[InputLine], size: int) -> Iterator[list[InputLine]]:
    batch: list[InputLine] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def is_record(obj: object) -> bool:
    """An ``mner tag`` output line: a tagged post or an error record."""
    return isinstance(obj, dict) and any(keys <= obj.keys() for keys in RECORD_KEYS)


def record_line(record: dict) -> str:
    """One output line; text that cannot be written as UTF-8 is escaped rather than lost."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record)
    return line + "\n"


@dataclass
class Resume:
    """Which input lines an earlier run already wrote: the first ``done[id]`` lines with each id."""

    done: Counter = field(default_factory=Counter)

    def skip(self, ident: str) -> bool:
        if self.done[ident] > 0:
            self.done[ident] -= 1
            return True
        return False


class OutputFile:
    """A JSONL output being appended to by one job at a time (see the module docstring)."""

    def __init__(self, path: Path, input_path: Path | None = None):
        """Open, lock and check ``path``.

        Raises:
            MnerInputError: the output is the input, another job holds it, or a line of it is not an mner
            record (nothing is changed then).
        """
        self.path = path
        if input_path is not None and path.exists() and os.path.samefile(path, input_path):
            raise MnerInputError(
                "--out is the input file: give another --out (the input is never overwritten)", path
            )
        try:
            self.file = open(path, "ab")  # noqa: SIM115 - closed by close()
        except IsADirectoryError:
            raise MnerInputError("expected a file path, got a directory", path) from None
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise MnerInputError(
                "another mner job is writing to this file: wait for it or give another --out", path
            ) from None
        try:
            self.done, self.cut = self._scan()
        except MnerInputError:
            self.close()
            raise

    def _scan(self) -> tuple[Counter, int]:
        """The ids already written, and the bytes of an incomplete last line removed (0 if none)."""
        done: Counter = Counter()
        complete = 0  # bytes of the lines that are records
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    obj = json.loads(raw)
                except (ValueError, RecursionError):
                    obj = None
                if is_record(obj):
                    done[str(obj["id"])] += 1
                    complete += len(raw)
                    if not raw.endswith(b"\n"):  # our last record, its newline not written yet
                        self.file.write(b"\n")
                    continue
                if raw.endswith(b"\n") or obj is not None:  # a whole line, or a whole JSON value, not ours
                    raise MnerInputError(
                        "not an mner tag record (a tagged post or an error record); give another "
                        "--out: mner never changes a file it did not write",
                        self.path,
                        number,
                    )
                if not done:
                    raise MnerInputError(
                        "not an mner tag output (its only line is not a record); give another "
                        "--out: mner never changes a file it did not write",
                        self.path,
                        number,
                    )
                os.truncate(self.path, complete)  # a record cut mid-write by an interrupted run
                return done, len(raw)
        return done, 0

    def write(self, records: Iterable[dict]) -> None:
        """Append records and flush them to the file.

        Raises:
            MnerInputError: the write failed (a full disk, a file over its size limit), naming the file.
        """
        try:
            self.file.write("".join(record_line(r) for r in records).encode("utf-8"))
            self.file.flush()
        except OSError as err:
            raise MnerInputError(f"cannot write ({err.strerror or err})", self.path) from None

    def close(self) -> None:
        self.file.close()  # closing releases the lock
