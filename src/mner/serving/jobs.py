"""Tagging jobs: posts from a file, tagged by a Pipeline in batches, written as records; resumable.

The parts ``mner tag`` runs on one process and the Ray job runs on its workers:

- ``read_lines``: each input line (JSONL) or row (Parquet) as the post to tag or the error that says why it
  cannot be; ``post_input`` turns one decoded object into that. ``plan_chunks`` / ``read_chunk``: the input
  cut into chunks that workers read where the input is.
- ``tag_lines``: a batch of lines → records in order: the ``TagResult`` of each post, or ``{"id", "line",
  "error"}`` naming ``FILE:LINE`` and what was expected. Bad input never fails a job.
- ``Resume``: the one resume rule, by id, of both engines (the first ``n`` lines with an id the output holds
  ``n`` times are written): ``mner tag`` applies it line by line, the Ray job through ``skip_written``.
  The outputs themselves are ``mner.serving.outputs``.

Memory stays bounded on any input: chunks and batches end at a number of posts or of bytes, whichever comes
first; lines, Parquet rows and a URI input's images are read as they are used.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mner.channels.posts import post_from_json
from mner.channels.spec import text_fields
from mner.data import MnerInputError

if TYPE_CHECKING:
    from mner.serving.pipeline import Pipeline, PostInput


@dataclass
class InputLine:
    """One input line: its id, and either the post to tag or the error record to write instead."""

    number: int
    id: str
    post: PostInput | None = None
    error: str | None = None
    image: str | None = None  # the post's image as mner opens it (a path, a URI), for its errors
    size: int = 0  # bytes of input it holds (its line, its image's bytes): what a batch is bounded by


def line_id(obj: object, default: str) -> str:
    """The id a line's record carries: its own "id" (a string or a number), else ``<stem>-<line>``."""
    if (
        isinstance(obj, dict)
        and isinstance(obj.get("id"), str | int | float)
        and not isinstance(obj["id"], bool)
    ):
        return str(obj["id"])
    return default


def post_input(obj: object, number: int, source: str, base: Path | str, confined: bool) -> InputLine:
    """The line's post, or its error naming ``source:number`` (``source``: the input path as given)."""
    from mner.serving.pipeline import PostInput

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
    given_as_text = text is not None and obj.get("tokens") is None  # tokenised again, with character offsets
    return InputLine(
        number,
        ident,
        image=None if image is None else str(image),
        post=PostInput(
            text if text is not None else " ".join(post.tokens),
            image,
            post_id=ident,
            tokens=None if given_as_text else post.tokens,
            **{name: getattr(post, name) for name in text_fields()},
        ),
    )


def read_lines(path: str | Path, images_root: Path | None = None, images: bool = True) -> Iterator[InputLine]:
    """Each post of a JSONL file (non-blank lines) or a Parquet file (rows) as an ``InputLine``, streamed:
    constant memory (a chunk's lines are read as they are used; a URI input's images one line at a time, none
    with ``images`` false: the Pipeline will not read them); a JSONL line over ``mner.data.MAX_LINE_BYTES`` is
    that line's error, not a memory spike.

    Raises:
        MnerInputError: the file cannot be opened (on the call, before the first line).
    """
    chunks = plan_chunks(path, per_chunk=1 << 62)  # opens the file: a missing input fails here
    return (line for chunk in chunks for line in read_chunk(chunk, images_root, images))


# ------------------------------------------------------------------------------------------ inputs

CHUNK_BYTES = 16 * 1024 * 1024  # a JSONL chunk ends at this many bytes, whatever its line count
BATCH_BYTES = 4 * 1024 * 1024  # a batch ends at this many bytes of input (text and image bytes) ...
# ... or at its number of posts: memory follows the bytes a batch holds, not only its count (a line is at
# most mner.data.MAX_LINE_BYTES: such a line is a batch of its own)
PARQUET_PIECES = 16  # a Parquet row group is cut into at most this many chunks (each reads the group up to
# its rows: more pieces would decode the group's first rows again and again)


@dataclass(frozen=True)
class Chunk:
    """A piece of an input that one worker reads: bytes ``start:end`` of a JSONL file (``first`` is the line
    number at ``start``) or rows ``start:end`` of a Parquet file (``first`` = start + 1); ``skip``: ranges
    ``[a, b)`` of its post numbers (input line or row numbers) whose posts are in the output already."""

    path: str  # as given: a local path or a URI pyarrow can open (s3://, gs://, hdfs://, file://)
    kind: str  # "jsonl" or "parquet"
    start: int
    end: int
    first: int
    skip: tuple[tuple[int, int], ...] = ()

    def skips(self, number: int) -> bool:
        return any(a <= number < b for a, b in self.skip)


def input_kind(path: str | Path) -> str:
    return "parquet" if str(path).lower().rstrip("/").endswith(".parquet") else "jsonl"


def _open(path: str | Path):
    """A seekable binary file: local, or through pyarrow's filesystems for a URI.

    Raises:
        MnerInputError: it cannot be opened, or it is not a file that can be read twice (a pipe, a terminal:
        a job reads its input once to plan and once to tag).
    """
    text = str(path)
    try:
        if "://" in text:
            from pyarrow import fs

            filesystem, inner = fs.FileSystem.from_uri(text)
            return filesystem.open_input_file(inner)
        handle = open(text, "rb")  # noqa: SIM115 - returned to the caller
    except FileNotFoundError:
        raise MnerInputError("file not found", text) from None
    except IsADirectoryError:
        raise MnerInputError("expected a file, got a directory", text) from None
    except (OSError, ValueError) as err:
        raise MnerInputError(f"cannot open ({getattr(err, 'strerror', None) or err})", text) from None
    if not handle.seekable():
        handle.close()
        raise MnerInputError(
            "not a regular file (a pipe or a terminal): mner reads its input twice (to plan, then to tag); "
            "write the posts to a file and give that",
            text,
        )
    return handle


def plan_chunks(path: str | Path, per_chunk: int = 1000) -> Iterator[Chunk]:
    """The input cut into chunks of about ``per_chunk`` posts (a JSONL chunk also ends at ``CHUNK_BYTES``; a
    Parquet chunk is a row group, or one of at most ``PARQUET_PIECES`` pieces of a big one). The file is
    scanned once, in blocks.

    Raises:
        MnerInputError: the input cannot be opened or read (on the call).
    """
    path = str(path)
    handle = _open(path)
    if input_kind(path) == "parquet":
        return iter(_parquet_chunks(handle, path, per_chunk))
    return _jsonl_chunks(handle, path, per_chunk)


def _parquet_file(handle, path: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(handle)
    except Exception as err:  # noqa: BLE001 - a damaged Parquet file can fail in many ways
        handle.close()
        raise MnerInputError(f"not a readable Parquet file ({err})", path) from None


def _parquet_chunks(handle, path: str, per_chunk: int) -> list[Chunk]:
    with handle:
        meta = _parquet_file(handle, path).metadata
        chunks, start = [], 0
        for group in range(meta.num_row_groups):
            rows = meta.row_group(group).num_rows
            pieces = min(PARQUET_PIECES, max(1, -(-rows // per_chunk)))
            cuts = [start + rows * k // pieces for k in range(pieces + 1)]
            chunks += [Chunk(path, "parquet", a, b, a + 1) for a, b in itertools.pairwise(cuts) if b > a]
            start += rows
    return chunks


def _jsonl_chunks(handle, path: str, per_chunk: int) -> Iterator[Chunk]:
    with handle:
        start = offset = 0
        lines, first = 0, 1
        while block := handle.read(1 << 20):
            at = 0
            while (newline := block.find(b"\n", at)) >= 0:
                lines += 1
                at = newline + 1
                if lines - first + 1 >= per_chunk or offset + at - start >= CHUNK_BYTES:
                    yield Chunk(path, "jsonl", start, offset + at, first)
                    start, first = offset + at, lines + 1
            offset += len(block)
        if offset > start:
            yield Chunk(path, "jsonl", start, offset, first)


def read_chunk(chunk: Chunk, images_root: Path | None = None, images: bool = True) -> Iterator[InputLine]:
    """The posts of a chunk, each a post to tag or its error, read as they are used (the posts of
    ``chunk.skip`` left out); with ``images`` false, images of an input given by URI are not fetched (to
    read ids, say), else each is fetched when its line is read."""
    uri = "://" in chunk.path
    base = (
        images_root
        if images_root is not None
        else (chunk.path.rsplit("/", 1)[0] if uri else Path(chunk.path).parent)
    )
    confined = images_root is not None
    items = _parquet_rows(chunk) if chunk.kind == "parquet" else _jsonl_items(chunk)
    for number, obj, size in items:
        if chunk.skips(number):
            continue
        line = post_input(obj, number, chunk.path, base, confined)
        line.size = size
        if uri and images_root is None and images:
            line = _with_image_bytes(line, chunk.path)
        yield line


def _jsonl_items(chunk: Chunk) -> Iterator[tuple[int, object, int]]:
    """(line number, decoded JSON value or the line's error, bytes) of each non-blank line of a chunk."""
    from mner.data import bounded_lines, parse_json

    with _open(chunk.path) as handle:
        handle.seek(chunk.start)
        limited = io.BufferedReader(_Limited(handle, chunk.end - chunk.start), buffer_size=1 << 16)
        for number, raw in bounded_lines(limited, Path(chunk.path), strip_bom=chunk.first == 1):
            number += chunk.first - 1
            if isinstance(raw, MnerInputError):
                yield number, MnerInputError(raw.reason, chunk.path, number), 0
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                message = f"not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
                yield number, MnerInputError(message, chunk.path, number), len(raw)
                continue
            if not line.strip():
                continue
            try:
                yield number, parse_json(line), len(raw)
            except ValueError as err:
                yield number, MnerInputError(str(err), chunk.path, number), len(raw)


class _Limited(io.RawIOBase):
    """At most ``size`` bytes of a binary file, from where it stands."""

    def __init__(self, handle, size: int):
        self.handle, self.left = handle, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            return 0
        data = self.handle.read(min(len(buffer), self.left))
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


PARQUET_FIELDS = ("id", "text", "tokens", "image", *text_fields())  # the JSONL post's fields


def _parquet_rows(chunk: Chunk) -> Iterator[tuple[int, object, int]]:
    """(row number, the row as a JSONL-like object or its error, bytes of its text) of each row of a chunk of a
    Parquet input, streamed a row group's batch at a time, reading only the columns a post has (missing and
    null fields left out). A row group that cannot be read (a damaged page) makes each of its rows not yet read
    an error, naming the file and the row."""
    with _open(chunk.path) as handle:
        parquet = _parquet_file(handle, chunk.path)
        meta = parquet.metadata
        columns = [name for name in parquet.schema_arrow.names if name in PARQUET_FIELDS]
        first = 0  # the 0-based row at which the row group starts
        for group in range(meta.num_row_groups):
            rows = meta.row_group(group).num_rows
            low, high = max(chunk.start, first), min(chunk.end, first + rows)
            if low < high:
                yield from _group_rows(parquet, group, first, low, high, columns, chunk.path)
            first += rows
            if first >= chunk.end:
                break


def _group_rows(parquet, group: int, first: int, low: int, high: int, columns: list[str], path: str):
    at = first  # the 0-based row of the next row the reader gives
    try:
        for batch in parquet.iter_batches(batch_size=256, row_groups=[group], columns=columns):
            if at + batch.num_rows <= low:
                at += batch.num_rows
                continue
            for row in batch.to_pylist():
                if low <= at < high:
                    obj = {k: v for k, v in row.items() if v is not None}
                    yield at + 1, obj, _row_bytes(obj)
                at += 1
            if at >= high:
                return
    except Exception as err:  # noqa: BLE001 - a damaged page can fail in many ways inside pyarrow
        reason = f"row group {group} cannot be read ({type(err).__name__}: {err})"
        for row in range(max(at, low), high):
            yield row + 1, MnerInputError(reason, path, row + 1), 0


def _row_bytes(obj: dict) -> int:
    return sum(
        len(v) if isinstance(v, str) else sum(len(t) for t in v if isinstance(t, str))
        for v in obj.values()
        if isinstance(v, str | list)
    )


def _with_image_bytes(line: InputLine, source: str) -> InputLine:
    """For an input given by URI: the post's image read through the same filesystem, as bytes."""
    if line.post is None or line.post.image is None:
        return line
    try:
        with _open(str(line.post.image)) as handle:
            data = _read_image(handle)
    except MnerInputError as err:
        return InputLine(line.number, line.id, error=f"{source}:{line.number}: {line.image}: {err.reason}")
    except OSError as err:
        message = f"{source}:{line.number}: {line.image}: cannot read ({err})"
        return InputLine(line.number, line.id, error=message)
    post = dataclasses.replace(line.post, image=data)
    return dataclasses.replace(line, post=post, size=line.size + len(data))


MAX_IMAGE_BYTES = (
    64 * 1024 * 1024
)  # an image file read through a URI filesystem; a larger one is its post's error


def _read_image(handle) -> bytes:
    """The file's bytes, read a block at a time (one read of the whole file leaves each file's size in the
    filesystem's memory pool: 60 posts with an 8 MB image grew the job by 210 MB).

    Raises:
        MnerInputError: the file is over ``MAX_IMAGE_BYTES``.
    """
    data = bytearray()
    while block := handle.read(1 << 20):
        data += block
        if len(data) > MAX_IMAGE_BYTES:
            raise MnerInputError(f"image file is over {MAX_IMAGE_BYTES:,} bytes, the most mner reads")
    return bytes(data)


def image_path(value: str, base: Path | str, confined: bool) -> Path | str:
    """The image file a post names, relative to ``base``; with ``confined``, it must resolve inside ``base``.

    Raises:
        MnerInputError: a confined path that leaves ``base`` (``..``, an absolute path, a symlink out).
    """
    if isinstance(base, str):  # the folder of an input given by URI
        return value if "://" in value else f"{base}/{value}"
    path = base / value  # an absolute ``value`` replaces base
    if confined:
        root = base.resolve()
        if not path.resolve().is_relative_to(root):
            raise MnerInputError(f"image {value!r} is outside --images-root {base}")
    return path


def error_record(line: InputLine, message: str) -> dict:
    return {"id": line.id, "line": line.number, "error": message}


def tag_lines(
    pipeline: Pipeline, lines: list[InputLine], source: str, prepared: list | None = None
) -> list[dict]:
    """The record of each line, in order: one encoder and one tagger call for the batch's posts.
    ``prepared``: ``Pipeline.prepare_many`` of their posts, done ahead (on another thread); None: prepared here."""
    posts = [line for line in lines if line.error is None]
    if prepared is None:
        prepared = pipeline.prepare_many([line.post for line in posts])
    results = iter(pipeline.tag_prepared(prepared) if posts else [])
    records = []
    for line in lines:
        if line.error is not None:
            records.append(error_record(line, line.error))
            continue
        result = next(results)
        if isinstance(result, MnerInputError):
            # an image's error names it as the post gave it, resolved (a/b/photo.jpg, a URI), not by its name
            what = f"{line.image}: {result.reason}" if result.path and line.image else str(result)
            records.append(error_record(line, f"{source}:{line.number}: {what}"))
        else:  # a job's records keep their columns: how a context was read is for one post's answer
            records.append(dataclasses.replace(result, read_as=None).to_dict())
    return records


def batches(lines: Iterable[InputLine], size: int, max_bytes: int = BATCH_BYTES) -> Iterator[list[InputLine]]:
    """``lines`` in batches of ``size`` lines, a batch ending early at ``max_bytes`` of input (``InputLine.size``):
    a batch of long lines holds few of them."""
    batch: list[InputLine] = []
    held = 0
    for line in lines:
        batch.append(line)
        held += line.size
        if len(batch) == size or held >= max_bytes:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


@dataclass
class Resume:
    """Which input lines an earlier run already wrote: the first ``done[id]`` lines with each id (the one rule
    of both engines: a rerun on another input skips only the ids the output holds)."""

    done: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self.done = +self.done  # a copy, without zero counts
        self.left = sum(self.done.values())

    def skip(self, ident: str) -> bool:
        if self.done[ident] > 0:
            self.done[ident] -= 1
            self.left -= 1
            return True
        return False


def skip_written(chunks: Iterable[Chunk], resume: Resume) -> tuple[list[Chunk], int]:
    """The chunks with the posts ``resume`` says are written marked in ``Chunk.skip`` (a chunk wholly written
    left out), and how many were marked. A chunk is read (its ids) only while ids of the output are left to
    match; the chunks after that are taken as they are."""
    left, skipped = [], 0
    for chunk in chunks:
        if resume.left > 0:
            ranges: list[list[int]] = []
            posts = 0
            for line in read_chunk(chunk, images=False):
                posts += 1
                if resume.skip(line.id):
                    skipped += 1
                    if ranges and ranges[-1][1] == line.number:
                        ranges[-1][1] = line.number + 1
                    else:
                        ranges.append([line.number, line.number + 1])
            if posts and sum(b - a for a, b in ranges) == posts:
                continue  # every post of it is written
            chunk = dataclasses.replace(chunk, skip=tuple((a, b) for a, b in ranges))
        left.append(chunk)
    return left, skipped
