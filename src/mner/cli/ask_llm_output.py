"""The output of ``mner ask-llm``: a context TSV (``id<TAB>context``) appended to by one run at a time, and its
sidecar ``OUT.meta.json``, which records each run (the endpoint, the model, the prompt's version, the answer
form, whether images were sent, the counts, and the TSV lines of the rows it wrote). A run that would append
answers of another endpoint, model, prompt version, answer form or image setting than the rows already there is
refused unless asked for (``allow_mixed``). A sidecar that is damaged in any way is one clear error, never a
traceback, and no partial file is ever left beside it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import typer

from mner.data import MnerInputError, parse_json

HEADER = "id\tcontext\n"
MAX_META_BYTES = 16 * 1024 * 1024  # a sidecar grows by about 600 bytes a run
# what a run asks with: two runs that differ in one of these write answers of two sources
SOURCE = ("endpoint", "model", "prompt_version", "response_format", "images")


class ContextOutput:
    """A context TSV being appended to by one ``mner ask-llm`` at a time, and its ``.meta.json`` sidecar.

    Opening locks it, checks that it is one (its header; every row readable, keys once; a sidecar mner can read
    and write back), and reads the ids already there. A last row without its line break is kept (mner writes
    each row whole, so such a row is the user's): the line break is added. A row that cannot be written whole
    is undone. Closing an output that this run created and wrote no row to removes it (and the sidecar this run
    created).
    """

    def __init__(self, path: Path):
        """Raises:
        MnerInputError: another run holds it, it is not an ``mner ask-llm`` output, or a row of it is bad.
        """
        self.path = path
        self.meta_path = path.with_name(path.name + ".meta.json")
        self.created = not path.exists()
        self.meta_created = False
        self.rows = 0  # written by this run
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise MnerInputError("expected a file path, got a directory", path) from None
        except FileNotFoundError:
            raise MnerInputError(f"folder {str(path.parent)!r} does not exist", path) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise MnerInputError(
                "another mner ask-llm is writing to this file: wait for it or give another --out", path
            ) from None
        try:
            self.done, self.lines = self._scan()
            self.meta = self._read_meta()
            if os.fstat(self.fd).st_size == 0:
                self._append(HEADER.encode("utf-8"))
                self.lines = 1
        except BaseException:
            self.close()
            raise

    def _scan(self) -> tuple[set[str], int]:
        """The ids already written (every row checked: a key and a tab, each key once) and the number of lines;
        nothing is changed but a missing last line break, added."""
        from mner.data import bounded_lines

        if os.fstat(self.fd).st_size == 0:
            return set(), 0
        done: set[str] = set()
        number = 0
        with open(self.path, "rb") as f:
            for number, raw in bounded_lines(f, self.path):
                if isinstance(raw, MnerInputError):
                    raise raw
                if number == 1:
                    _check_header(raw, self.path)
                    continue
                name = _row_key(raw, self.path, number)
                if name in done:
                    raise MnerInputError(
                        f"id {name!r} is given twice (first on an earlier line)", self.path, number
                    )
                if name:
                    done.add(name)
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
        if last != b"\n":
            self._append(b"\n")
            typer.echo(
                f"{self.path}: its last row had no line break: kept as it is, the line break added", err=True
            )
        return done, number

    def _read_meta(self) -> dict:
        """The sidecar, or a new one; whatever is read can be written back (checked here, once).

        Raises:
            MnerInputError: it is not a sidecar of ``mner ask-llm``, or cannot be read, or not written back (too
            deep, a lone surrogate, too big).
        """
        if not self.meta_path.exists() and not self.meta_path.is_symlink():
            self.meta_created = True
            return {"written_by": "mner ask-llm", "format": 1, "runs": []}
        try:
            with open(self.meta_path, "rb") as f:
                raw = f.read(MAX_META_BYTES + 1)
            if len(raw) > MAX_META_BYTES:
                raise ValueError(f"over {MAX_META_BYTES:,} bytes")
            meta = parse_json(raw)
            if not isinstance(meta, dict) or meta.get("written_by") != "mner ask-llm":
                raise ValueError("not written by mner ask-llm")
            if not isinstance(meta.get("runs"), list) or not all(isinstance(r, dict) for r in meta["runs"]):
                raise ValueError("its 'runs' is not a list of runs")
            _serialised(meta)
        except (OSError, ValueError, RecursionError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise MnerInputError(
                f"not the sidecar of an 'mner ask-llm' output ({reason}); move it away or give another --out",
                self.meta_path,
            ) from None
        return meta

    def start_run(self, client, image: bool, allow_mixed: bool = False) -> dict:
        """Record a run in the sidecar before the first request (``finish_run`` completes it).

        Raises:
            MnerInputError: the rows already there came from another source (``SOURCE``) and not
            ``allow_mixed``.
        """
        from mner.channels.llm import completions_url, shown_url

        run = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "finished": None,
            "endpoint": shown_url(completions_url(client.endpoint)),
            "model": client.model,
            "answered_by": Counter(),  # the model name each answer gives, by count
            "prompt_version": client.prompt.version,
            "response_format": "json_schema" if client.structured else "none",
            "answers": Counter(),  # json_schema: the schema's JSON; instructions: text
            "images": image,
            "first_line": self.lines
            + 1,  # its rows are the TSV's lines first_line .. first_line + written - 1
        }
        if self.done and not allow_mixed:
            self._refuse_another_source(run)
        self.meta["runs"].append(run)
        self._write_meta()
        return run

    def _refuse_another_source(self, run: dict) -> None:
        for earlier in self.meta["runs"]:
            if earlier.get("written") == 0:  # wrote no row (a run that stopped before the end may have)
                continue
            differ = [key for key in SOURCE if earlier.get(key) != run[key]]
            if differ:
                was = "; ".join(f"{key} {earlier.get(key)!r} (this run: {run[key]!r})" for key in differ)
                raise MnerInputError(
                    f"its rows came from another source ({was[:400]}): one file would mix the answers of "
                    "two; give another --out, or --allow-mixed to append anyway (the sidecar records the "
                    "lines each run wrote)",
                    self.path,
                )

    def finish_run(self, run: dict, counts: dict) -> None:
        run["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        run.update({key.replace(" ", "_"): n for key, n in counts.items()})
        with contextlib.suppress(MnerInputError):  # a full disk is said once, by the write that failed
            self._write_meta()

    def _write_meta(self) -> None:
        partial = self.meta_path.with_name(f".{self.meta_path.name}.{os.getpid()}")
        try:
            data = _serialised(self.meta)
            partial.write_bytes(data)
            os.replace(partial, self.meta_path)
        except (OSError, ValueError, RecursionError) as err:
            partial.unlink(missing_ok=True)
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise MnerInputError(f"cannot write ({reason})", self.meta_path) from None

    def write_row(self, post_id: str, context: str) -> None:
        self._append(f"{post_id}\t{context}\n".encode("utf-8", "replace"))
        self.rows += 1
        self.lines += 1

    def _append(self, data: bytes) -> None:
        """Append ``data`` whole, or not at all.

        Raises:
            MnerInputError: the write failed (a full disk, a file over its size limit), naming the file.
        """
        size = os.fstat(self.fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(self.fd, data[written:])
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, size)  # no half row left for a rerun to misread
            raise MnerInputError(f"cannot write ({err.strerror or err})", self.path) from None

    def close(self) -> bool:
        """Unlock; remove the output if this run created it and wrote no row to it (and the sidecar, if this run
        created that too). Returns whether it was removed."""
        if self.fd < 0:
            return False
        removed = False
        if self.created and self.rows == 0 and os.fstat(self.fd).st_size <= len(HEADER):
            with contextlib.suppress(OSError):
                os.unlink(self.path)
                removed = True
            if removed and self.meta_created:
                with contextlib.suppress(OSError):
                    os.unlink(self.meta_path)
        os.close(self.fd)
        self.fd = -1
        return removed


def _check_header(raw: bytes, path: Path) -> None:
    if raw + b"\n" != HEADER.encode("utf-8"):
        raise MnerInputError(
            f"not an 'mner ask-llm' output (its header is not {HEADER.strip()!r}); give another --out",
            path,
            1,
        )


def _row_key(raw: bytes, path: Path, number: int) -> str:
    """The id of a row ('' for a blank line)."""
    key, tab, _ = raw.partition(b"\t")
    if raw.strip() and (not tab or not key.strip()):
        what = "no tab" if not tab else "an empty id"
        raise MnerInputError(f"expected 'id<TAB>context', got {what}", path, number)
    return key.decode("utf-8", "replace").strip()


def _serialised(meta: dict) -> bytes:
    """The sidecar's bytes. Raises ValueError or RecursionError where it cannot be written (a lone surrogate,
    nesting deeper than Python's encoder goes)."""
    return (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
