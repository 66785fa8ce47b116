"""The outputs of tagging jobs: where records go, and what a rerun finds there.

- ``OutputFile``: a JSONL output being appended to — refused if it is the input or holds lines that are not
  mner records, locked against a second writer, a last line cut by an interrupted run removed, and the ids
  already there counted, so a rerun skips exactly the posts written (``mner.serving.jobs.Resume``; duplicate
  ids included).
- ``ParquetOutput``: the same for a folder of Parquet parts, each written whole and carrying mner's marker in
  its schema (``parquet_schema``): another tool's parts are refused, untouched.
- ``open_output``: the one for a path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from mner.channels.spec import text_fields
from mner.data import MnerInputError
from mner.serving.jobs import input_kind

RECORD_KEYS = ({"id", "tokens", "entities"}, {"id", "line", "error"})  # a tagged post; an error record


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
        self.created = not path.exists()  # made by this run: removed on close if nothing was written to it
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
        """Release the lock; an output this run made and wrote nothing to is removed (a job that failed before
        its first record leaves no empty file behind)."""
        if self.created and not self.file.closed and self.file.tell() == 0:
            with contextlib.suppress(OSError):
                if os.path.getsize(self.path) == 0:
                    os.unlink(self.path)
        self.file.close()  # closing releases the lock


# ------------------------------------------------------------------------------------ Parquet output


def parquet_schema():
    """The columns of a Parquet output: the JSONL record's fields (a tagged post fills tokens, entities — with
    their scores and character offsets —, attributes, knowledge, caption, context, warnings; an error record
    fills line and error)."""
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
    marker = json.dumps({"writer": "mner tag", "format": 1}).encode("utf-8")
    return pa.schema(
        [
            ("id", pa.string()),
            ("tokens", pa.list_(pa.string())),
            ("entities", pa.list_(entity)),
            ("attributes", pa.list_(attribute)),
            ("knowledge", pa.string()),  # the knowledge object as JSON text; null without a KG
            *((name, pa.string()) for name in text_fields()),  # the channels' text fields
            ("warnings", pa.list_(pa.string())),  # empty unless the post had something it could not use
            ("line", pa.int64()),  # error records only
            ("error", pa.string()),  # error records only
        ],
        metadata={PARQUET_MARKER: marker},  # what tells mner's parts from another tool's
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
            "warnings": row.get("warnings") or [],
        }
        out.append(record)
    return out


ENTITY_KEYS = ("start", "end", "type", "text", "score", "start_char", "end_char")  # mner.data.Span.to_dict
PARQUET_MARKER = b"mner"  # the key of the schema metadata every part of an mner output carries


def is_mner_part(schema) -> bool:
    """A part file of an ``mner tag`` Parquet output: its schema is ``parquet_schema()``, marked as mner's."""
    metadata = schema.metadata or {}
    return PARQUET_MARKER in metadata and schema.remove_metadata().equals(parquet_schema().remove_metadata())


NOT_WRITTEN_HERE = "give another --out: mner never changes a folder it did not write"


def damaged_part(part: Path, err: Exception) -> MnerInputError:
    """The error for a part of mner's own output that cannot be read, and what to do about it."""
    reason = " ".join(str(err).split())[:200]
    return MnerInputError(
        f"a damaged part of this mner output (it cannot be read: {reason}): move it out of the folder and run "
        "again, which tags its posts again, or give another --out",
        part,
    )


def _check_part_schema(schema, part: Path) -> None:
    """Refuse a part whose schema is not this version's mner part."""
    if PARQUET_MARKER in (schema.metadata or {}) and not is_mner_part(schema):
        raise MnerInputError(
            "a part written by another version of mner (its columns differ from this version's); "
            "give another --out, or tag again into a new folder",
            part,
        )
    if not is_mner_part(schema):
        raise MnerInputError(
            "not a part of an mner tag output (its schema is not mner's, or it lacks mner's marker); "
            f"{NOT_WRITTEN_HERE}",
            part,
        )


class ParquetOutput:
    """A Parquet output: a folder of ``part-NNNNN.parquet`` files (one dataset to pyarrow, pandas, Spark, Ray),
    each written whole under a temporary name and renamed, so a killed job leaves only whole parts; records
    are buffered up to ``part_size`` a part. Every part carries mner's marker in its schema metadata: a folder
    holding anything else (another tool's parts included) is refused, untouched. Locked against a second
    writer; the ids already written counted. A folder this run made and left empty is removed on close."""

    def __init__(self, path: Path, input_path: str | Path | None = None, part_size: int = 1000):
        """Open, check and lock the folder ``path`` (made if absent; its parent must exist).

        Raises:
            MnerInputError: a file, a folder that is not an mner output, or one another job holds.
        """
        self.path, self.part_size, self.buffer = Path(path), part_size, []
        if self.path.exists() and not self.path.is_dir():
            raise MnerInputError(
                "a Parquet output is a folder of part files; this is a file: give another --out", self.path
            )
        self.created = not self.path.exists()
        if self.created:
            try:
                self.path.mkdir()
            except FileNotFoundError:
                raise MnerInputError(f"folder {str(self.path.parent)!r} does not exist", self.path) from None
        self._check_foreign()
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
        self.parts = 0  # the number the next part file takes
        self.written = 0  # parts this run wrote
        self.cut = 0
        import pyarrow.parquet as pq

        for part in sorted(self.path.glob("part-*.parquet")):
            try:
                ids = pq.read_table(part, columns=["id"]).column("id").to_pylist()
            except Exception as err:  # noqa: BLE001 - its schema was mner's: the rest of it is damaged
                self.close()
                raise damaged_part(part, err) from None
            self.done.update(ids)
            number = part.stem.removeprefix("part-")
            self.parts = max(self.parts, int(number) + 1 if number.isdigit() else 0)

    def _check_foreign(self) -> None:
        """Refuse a folder holding anything but mner's parts and lock (read only: nothing is written); a part
        that cannot be read is damaged where the folder is mner's (its lock file, or other parts of mner's)."""
        import pyarrow.parquet as pq

        damaged, parts = [], 0
        for entry in sorted(self.path.iterdir()):
            name = entry.name
            if name == ".mner-lock" or name.startswith(".part-"):
                continue
            if not (name.startswith("part-") and name.endswith(".parquet") and entry.is_file()):
                raise MnerInputError(
                    f"not an mner tag output folder (it holds {name!r}); {NOT_WRITTEN_HERE}", self.path
                )
            parts += 1
            try:
                schema = pq.read_schema(entry)
            except Exception as err:  # noqa: BLE001 - a damaged or foreign file can fail in many ways
                damaged.append((entry, err))
                continue
            _check_part_schema(schema, entry)
        if damaged:
            entry, err = damaged[0]
            if (self.path / ".mner-lock").exists() or parts > len(damaged):
                raise damaged_part(entry, err)
            raise MnerInputError(f"not a readable part of an mner output ({err}); {NOT_WRITTEN_HERE}", entry)

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
            partial.unlink(missing_ok=True)
            raise MnerInputError(f"cannot write ({err.strerror or err})", self.path / name) from None
        self.parts += 1
        self.written += 1

    def close(self) -> None:
        """Write what is buffered and release the lock (a folder this run made and wrote nothing to: removed)."""
        try:
            if self.buffer and not self.lock.closed:
                self._flush(self.buffer)
                self.buffer = []
        finally:
            if self.created and not self.lock.closed and self.written == 0:
                for entry in self.path.iterdir():
                    if entry.name == ".mner-lock" or entry.name.startswith(".part-"):
                        entry.unlink()
                with contextlib.suppress(OSError):
                    self.path.rmdir()
            self.lock.close()


def open_output(path: Path, input_path: str | Path):
    """The output a job appends to: a Parquet folder for a ``.parquet`` path, else a JSONL file."""
    if input_kind(path) == "parquet":
        return ParquetOutput(path, input_path)
    return OutputFile(path, Path(input_path) if "://" not in str(input_path) else None)
