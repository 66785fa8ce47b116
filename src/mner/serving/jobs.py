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

import dataclasses
import fcntl
import io
import json
import os
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

RECORD_KEYS = ({"id", "tokens", "entities"}, {"id", "line", "error"})  # a tagged post; an error record
ENTITY_KEYS = ("start", "end", "type", "text", "score", "start_char", "end_char")  # mner.data.Span.to_dict


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
        PostInput(
            text if text is not None else " ".join(post.tokens),
            image,
            post_id=ident,
            tokens=None if given_as_text else post.tokens,
            **{name: getattr(post, name) for name in text_fields()},
        ),
    )


def read_lines(path: str | Path, images_root: Path | None = None) -> Iterator[InputLine]:
    """Each post of a JSONL file (non-blank lines) or a Parquet file (rows) as an ``InputLine``, streamed:
    constant memory; a JSONL line over ``mner.data.MAX_LINE_BYTES`` is that line's error, not a memory spike.

    Raises:
        MnerInputError: the file cannot be opened (on the call, before the first line).
    """
    chunks = plan_chunks(path)  # opens the file: a missing input fails here
    return (line for chunk in chunks for line in read_chunk(chunk, images_root))


# ------------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class Chunk:
    """A piece of an input that one worker reads: bytes ``start:end`` of a JSONL file (``first`` is the line
    number at ``start``) or rows ``start:end`` of a Parquet file (``first`` = start + 1); the first ``skip``
    posts of it are already in the output."""

    path: str  # as given: a local path or a URI pyarrow can open (s3://, gs://, hdfs://, file://)
    kind: str  # "jsonl" or "parquet"
    start: int
    end: int
    first: int
    skip: int = 0


def input_kind(path: str | Path) -> str:
    return "parquet" if str(path).lower().rstrip("/").endswith(".parquet") else "jsonl"


def _open(path: str | Path):
    """A seekable binary file: local, or through pyarrow's filesystems for a URI.

    Raises:
        MnerInputError: it cannot be opened.
    """
    text = str(path)
    try:
        if "://" in text:
            from pyarrow import fs

            filesystem, inner = fs.FileSystem.from_uri(text)
            return filesystem.open_input_file(inner)
        return open(text, "rb")
    except FileNotFoundError:
        raise MnerInputError("file not found", text) from None
    except IsADirectoryError:
        raise MnerInputError("expected a file, got a directory", text) from None
    except (OSError, ValueError) as err:
        raise MnerInputError(f"cannot open ({err})", text) from None


def plan_chunks(path: str | Path, per_chunk: int = 1000) -> Iterator[Chunk]:
    """The input cut into chunks of about ``per_chunk`` posts (the file is scanned once, in blocks).

    Raises:
        MnerInputError: the input cannot be opened or read (on the call).
    """
    path = str(path)
    if input_kind(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(_open(path)).metadata.num_rows
        except Exception as err:  # noqa: BLE001 - a damaged Parquet file can fail in many ways
            raise MnerInputError(f"not a readable Parquet file ({err})", path) from None
        return iter(
            [Chunk(path, "parquet", s, min(s + per_chunk, rows), s + 1) for s in range(0, rows, per_chunk)]
        )
    handle = _open(path)
    return _jsonl_chunks(handle, path, per_chunk)


def _jsonl_chunks(handle, path: str, per_chunk: int) -> Iterator[Chunk]:
    with handle:
        start = offset = 0
        lines, first = 0, 1
        while block := handle.read(1 << 20):
            at = 0
            while (newline := block.find(b"\n", at)) >= 0:
                lines += 1
                at = newline + 1
                if lines % per_chunk == 0:
                    yield Chunk(path, "jsonl", start, offset + at, first)
                    start, first = offset + at, lines + 1
            offset += len(block)
        if offset > start:
            yield Chunk(path, "jsonl", start, offset, first)


def read_chunk(chunk: Chunk, images_root: Path | None = None, images: bool = True) -> list[InputLine]:
    """The posts of a chunk (each a post to tag or its error), the first ``chunk.skip`` left out; with
    ``images`` false, images of an input given by URI are not fetched (to count posts, say)."""
    uri = "://" in chunk.path
    base = (
        images_root
        if images_root is not None
        else (chunk.path.rsplit("/", 1)[0] if uri else Path(chunk.path).parent)
    )
    confined = images_root is not None
    if chunk.kind == "parquet":
        items = ((chunk.first + i, obj) for i, obj in enumerate(_parquet_rows(chunk)))
    else:
        items = _jsonl_items(chunk)
    lines = [post_input(obj, number, chunk.path, base, confined) for number, obj in items][chunk.skip :]
    if uri and images_root is None and images:
        lines = [_with_image_bytes(line, chunk.path) for line in lines]
    return lines


def _jsonl_items(chunk: Chunk) -> Iterator[tuple[int, object]]:
    from mner.data import bounded_lines, parse_json

    with _open(chunk.path) as handle:
        handle.seek(chunk.start)
        limited = io.BufferedReader(_Limited(handle, chunk.end - chunk.start), buffer_size=1 << 16)
        for number, raw in bounded_lines(limited, Path(chunk.path), strip_bom=chunk.first == 1):
            number += chunk.first - 1
            if isinstance(raw, MnerInputError):
                yield number, MnerInputError(raw.reason, chunk.path, number)
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                message = f"not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
                yield number, MnerInputError(message, chunk.path, number)
                continue
            if not line.strip():
                continue
            try:
                yield number, parse_json(line)
            except ValueError as err:
                yield number, MnerInputError(str(err), chunk.path, number)


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


def _parquet_rows(chunk: Chunk) -> Iterator[dict]:
    """The rows of a chunk of a Parquet input as JSONL-like objects (missing and null fields left out)."""
    import pyarrow.parquet as pq

    with _open(chunk.path) as handle:
        table = pq.ParquetFile(handle).read(columns=None).slice(chunk.start, chunk.end - chunk.start)
    columns = [c for c in table.column_names if c in PARQUET_FIELDS]
    for row in table.select(columns).to_pylist():
        yield {k: v for k, v in row.items() if v is not None}


def _with_image_bytes(line: InputLine, source: str) -> InputLine:
    """For an input given by URI: the post's image read through the same filesystem, as bytes."""
    if line.post is None or line.post.image is None:
        return line
    try:
        with _open(str(line.post.image)) as handle:
            data = handle.read()
    except MnerInputError as err:
        return InputLine(line.number, line.id, error=f"{source}:{line.number}: {err}")
    return InputLine(line.number, line.id, dataclasses.replace(line.post, image=data))


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
        except FileNotFoundError:
            raise MnerInputError(f"folder {str(path.parent)!r} does not exist", path) from None
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


# ------------------------------------------------------------------------------------ Parquet output


def parquet_schema():
    """The columns of a Parquet output: the JSONL record's fields (a tagged post fills tokens, entities — with
    their scores and character offsets —, attributes, knowledge, caption, context; an error record fills line and
    error)."""
    import pyarrow as pa

    entity = pa.struct(
        [
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("type", pa.string()),
            ("text", pa.string()),
            ("score", pa.float64()),
            ("start_char", pa.int64()),  # null for a post given as tokens
            ("end_char", pa.int64()),
        ]
    )
    attribute = pa.struct([("label", pa.string()), ("probability", pa.float64())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("tokens", pa.list_(pa.string())),
            ("entities", pa.list_(entity)),
            ("attributes", pa.list_(attribute)),
            ("knowledge", pa.string()),  # the knowledge object as JSON text; null without a KG
            *((name, pa.string()) for name in text_fields()),  # the channels' text fields
            ("warnings", pa.list_(pa.string())),  # null unless the post had something it could not use
            ("line", pa.int64()),  # error records only
            ("error", pa.string()),  # error records only
        ]
    )


def records_table(records: list[dict]):
    """Records as a table of ``parquet_schema()``."""
    import pyarrow as pa

    rows = []
    for record in records:
        row = {
            **record,
            "entities": [{k: e.get(k) for k in ENTITY_KEYS} for e in record.get("entities", [])]
            if "entities" in record
            else None,
        }
        if record.get("knowledge") is not None:
            row["knowledge"] = json.dumps(record["knowledge"], ensure_ascii=False)
        rows.append(row)
    schema = parquet_schema()
    return pa.Table.from_pylist(
        [{name: row.get(name) for name in schema.names} for row in rows], schema=schema
    )


def table_records(table) -> list[dict]:
    """Records from a table of ``parquet_schema()``: what the JSONL output holds for the same posts."""
    out = []
    for row in table.to_pylist():
        if row["error"] is not None:
            out.append({"id": row["id"], "line": row["line"], "error": row["error"]})
            continue
        record = {
            "id": row["id"],
            "tokens": row["tokens"],
            "entities": row["entities"],
            "attributes": row["attributes"],
            "knowledge": None if row["knowledge"] is None else json.loads(row["knowledge"]),
            **{name: row[name] for name in text_fields()},
        }
        record["warnings"] = row.get("warnings") or []
        out.append(record)
    return out


class ParquetOutput:
    """A Parquet output: a folder of ``part-NNNNN.parquet`` files (one dataset to pyarrow, pandas, Spark, Ray),
    each written whole under a temporary name and renamed, so a killed job leaves only whole parts; records
    are buffered up to ``part_size`` a part. Locked against a second writer; the ids already written counted."""

    def __init__(self, path: Path, input_path: str | Path | None = None, part_size: int = 1000):
        self.path, self.part_size, self.buffer = Path(path), part_size, []
        if self.path.exists() and not self.path.is_dir():
            raise MnerInputError(
                "a Parquet output is a folder of part files; this is a file: give another --out", self.path
            )
        self.path.mkdir(parents=True, exist_ok=True)
        foreign = sorted(
            p.name
            for p in self.path.iterdir()
            if not (p.name.startswith("part-") and p.suffix == ".parquet")
            and p.name != ".mner-lock"
            and not p.name.startswith(".part-")
        )
        if foreign:
            raise MnerInputError(
                f"not an mner tag output folder (it holds {foreign[0]!r}); give another --out: mner "
                "never changes a folder it did not write",
                self.path,
            )
        self.lock = open(self.path / ".mner-lock", "ab")  # noqa: SIM115 - closed by close()
        try:
            fcntl.flock(self.lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock.close()
            raise MnerInputError(
                "another mner job is writing to this folder: wait for it or give another --out", self.path
            ) from None
        for stale in self.path.glob(".part-*"):  # a part a killed job did not finish
            stale.unlink()
        self.done: Counter = Counter()
        self.parts = 0
        self.cut = 0
        import pyarrow.parquet as pq

        for part in sorted(self.path.glob("part-*.parquet")):
            try:
                ids = pq.read_table(part, columns=["id"]).column("id").to_pylist()
            except Exception as err:  # noqa: BLE001
                self.close()
                raise MnerInputError(f"not a readable part of an mner output ({err})", part) from None
            self.done.update(ids)
            self.parts += 1

    def write(self, records: Iterable[dict]) -> None:
        self.buffer.extend(records)
        while len(self.buffer) >= self.part_size:
            self._flush(self.buffer[: self.part_size])
            self.buffer = self.buffer[self.part_size :]

    def _flush(self, records: list[dict]) -> None:
        import pyarrow.parquet as pq

        name = f"part-{self.parts:05d}.parquet"
        partial = self.path / f".{name}.{os.getpid()}"
        try:
            pq.write_table(records_table(records), partial)
            os.replace(partial, self.path / name)
        except OSError as err:
            raise MnerInputError(f"cannot write ({err.strerror or err})", self.path / name) from None
        self.parts += 1

    def close(self) -> None:
        """Write what is buffered and release the lock."""
        try:
            if self.buffer and not self.lock.closed:
                self._flush(self.buffer)
                self.buffer = []
        finally:
            self.lock.close()


def open_output(path: Path, input_path: str | Path):
    """The output a job appends to: a Parquet folder for a ``.parquet`` path, else a JSONL file."""
    if input_kind(path) == "parquet":
        return ParquetOutput(path, input_path)
    return OutputFile(path, Path(input_path) if "://" not in str(input_path) else None)
