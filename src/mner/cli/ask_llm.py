"""``mner ask-llm``: ask an LLM (any OpenAI-compatible chat endpoint) for the context of each post of a JSONL
file, written as a context file (``id<TAB>context``) that ``--context-file`` reads, with a sidecar
``OUT.meta.json`` that records, run by run, the endpoint, the model it says answered, the prompt's version and
how the answers came (JSON schema or instructions). Resumable: a rerun asks only for the posts not in the
output yet (so posts that failed are asked again). One run at a time on an output (a lock), rows written whole
(a failed write is undone), nothing of the user's ever truncated."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from mner.cli.errors import error_text, user_errors
from mner.data import MnerInputError

HEADER = "id\tcontext\n"


@user_errors
def ask_llm(
    input_file: Annotated[
        Path,
        typer.Option(
            "--in", help='Posts, one JSON object a line: {"id"?, "text" (or "tokens"), "caption"?, "image"?}.'
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Context TSV to write (id<TAB>context), with OUT.meta.json beside it; if it exists, its posts "
            "are skipped.",
        ),
    ],
    endpoint: Annotated[
        str,
        typer.Option(help="The chat-completions endpoint, e.g. http://127.0.0.1:8080/v1 (llama.cpp, vLLM)."),
    ],
    model: Annotated[str, typer.Option(help="The model name the endpoint serves.")],
    api_key_env: Annotated[
        str,
        typer.Option(
            help="Name of the environment variable holding the API key (sent as a Bearer token), if any."
        ),
    ] = "MNER_LLM_API_KEY",
    image: Annotated[
        bool,
        typer.Option(
            "--image/--no-image",
            help="Send each post's image (its 'image' field, a JPEG, PNG, GIF or WebP file) with it, as an "
            "image_url part: for vision-capable endpoints.",
        ),
    ] = False,
    images_root: Annotated[
        Path | None,
        typer.Option(
            help="With --image: image paths are relative to this folder and may not leave it (default: relative "
            "to the input file's folder)."
        ),
    ] = None,
    structured: Annotated[
        bool,
        typer.Option(
            "--structured/--no-structured",
            help="Ask for the answer's JSON schema (response_format); an endpoint that refuses it (HTTP 400) is "
            "asked with the instructions alone.",
        ),
    ] = True,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight at once.")] = 4,
    retries: Annotated[int, typer.Option(min=0, max=20, help="Tries after the first, with backoff.")] = 4,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds one answer may take in all (connecting, waiting, reading it)."),
    ] = 60.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Ask an LLM what each post mentions (an entity list with kinds, then reasoning): a context TSV."""
    from tqdm import tqdm

    from mner.channels.llm import ChatClient
    from mner.channels.posts import iter_jsonl_posts

    posts = iter_jsonl_posts(input_file)  # a missing input fails here, before anything is written
    if out.exists() and input_file.exists() and os.path.samefile(out, input_file):
        raise MnerInputError(
            "--out is the input file: give another --out (the input is never overwritten)", out
        )
    client = ChatClient(
        endpoint, model, os.environ.get(api_key_env) or None, timeout, retries, structured=structured
    )
    base = images_root if images_root is not None else input_file.parent
    output = ContextOutput(out)
    run = output.start_run(client, image)
    counts = {"written": 0, "failed": 0, "skipped": 0, "bad lines": 0, "cut": 0}
    start = time.perf_counter()
    try:
        with (
            ThreadPoolExecutor(concurrency) as pool,
            tqdm(unit="post", desc="asking", disable=quiet or not sys.stderr.isatty(), leave=False) as bar,
        ):
            pending: deque = deque()
            try:
                for line_no, post in posts:
                    where = f"{input_file}:{line_no}"
                    problem = _bad_line(post, where)
                    if problem is not None:
                        counts["bad lines"] += 1
                        typer.echo(f"error: {problem}", err=True)
                        continue
                    if post.id in output.done:
                        counts["skipped"] += 1
                        continue
                    output.done.add(post.id)  # a later line with the same id is the same post: asked once
                    text = post.extra.get("text") or " ".join(post.tokens)
                    picture = _image_path(post.image, base, images_root is not None) if image else None
                    future = pool.submit(_ask, client, text, post.caption, picture)
                    pending.append((where, post.id, future))
                    while len(pending) >= 2 * concurrency:  # a bounded window: constant memory on any input
                        _finish(pending.popleft(), output, run, counts, bar)
                while pending:
                    _finish(pending.popleft(), output, run, counts, bar)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        output.finish_run(run, counts)
        output.close()
    rate = (counts["written"] + counts["failed"]) / max(time.perf_counter() - start, 1e-9)
    typer.echo(
        f"wrote {counts['written']}, failed {counts['failed']}, skipped {counts['skipped']} (already in the "
        f"output), bad lines {counts['bad lines']}; {rate:.1f} posts/s",
        err=True,
    )
    if counts["failed"]:
        typer.echo(f"{counts['failed']} post(s) failed: run the same command again to retry them", err=True)
        raise typer.Exit(1)


def _bad_line(post, where: str) -> str | None:
    """Why a line cannot be asked for (its error, or an id a context file cannot key by), or None."""
    if isinstance(post, MnerInputError):
        return error_text(post)
    if any(c in post.id for c in "\t\r\n"):
        return f"{where}: id {post.id!r} holds a tab or a line break: a TSV key cannot"
    if not post.id.strip():
        return f"{where}: id {post.id!r} is empty: a context file's key cannot be"
    if post.id != post.id.strip():
        return (
            f"{where}: id {post.id!r} begins or ends with a space: a context file's key cannot (it would be read "
            f"back as {post.id.strip()!r})"
        )
    return None


def _image_path(value: str | None, base: Path, confined: bool) -> Path | str | None:
    """The image file a post names, relative to ``base``; a confined path leaving ``base`` is that post's error."""
    if value is None:
        return None
    path = base / value
    if confined and not path.resolve().is_relative_to(base.resolve()):
        return f"image {value!r} is outside --images-root {base}"
    return path


def _ask(client, text: str, caption: str | None, picture: Path | str | None):
    """On a pool thread: the post's image read (only posts in flight hold one), then the endpoint asked."""
    from mner.channels.llm import LLMError, image_data_url

    if isinstance(picture, str):
        raise LLMError(picture)
    return client.ask(text, caption, None if picture is None else image_data_url(picture))


def _finish(item, output: ContextOutput, run: dict, counts: dict, bar) -> None:
    """Write a post's answer (or report its failure: any exception of a post is that post's error)."""
    where, post_id, future = item
    try:
        answer = future.result()
    except Exception as err:  # noqa: BLE001 - LLMError, or anything else: that post's error, never a crash
        reason = str(err) if type(err).__name__ == "LLMError" else f"{type(err).__name__}: {err}"
        counts["failed"] += 1
        typer.echo(f"error: {where}: id {post_id!r}: {reason}", err=True)
    else:
        output.write_row(post_id, answer.context)
        counts["written"] += 1
        run["answered_by"][answer.model or "(not said)"] += 1
        run["answers"]["json_schema" if answer.structured else "instructions"] += 1
        if answer.cut:
            counts["cut"] += 1
            typer.echo(
                f"note: {where}: id {post_id!r}: the answer is {len(answer.context) + answer.cut:,} characters; "
                f"its first {len(answer.context):,} are kept",
                err=True,
            )
    bar.update(1)


class ContextOutput:
    """A context TSV being appended to by one ``mner ask-llm`` at a time, and its ``.meta.json`` sidecar.

    Opening locks it, checks that it is one (its header; every row readable, keys once), and reads the ids
    already there. A last row without its line break is kept (mner writes each row whole, so such a row is the
    user's): the line break is added. A row that cannot be written whole is undone.
    """

    def __init__(self, path: Path):
        """Raises:
        MnerInputError: another run holds it, it is not an ``mner ask-llm`` output, or a row of it is bad.
        """
        self.path = path
        self.meta_path = path.with_name(path.name + ".meta.json")
        self.created = not path.exists()
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
            self.done = self._scan()
            self.meta = self._read_meta()
            if os.fstat(self.fd).st_size == 0:
                self._append(HEADER.encode("utf-8"))
        except BaseException:
            self.close()
            raise

    def _scan(self) -> set[str]:
        """The ids already written (every row checked: a key and a tab, each key once); nothing is changed but a
        missing last line break, added."""
        from mner.data import bounded_lines

        if os.fstat(self.fd).st_size == 0:
            return set()
        done: set[str] = set()
        last = b"\n"
        with open(self.path, "rb") as f:
            for number, raw in bounded_lines(f, self.path):
                if isinstance(raw, MnerInputError):
                    raise raw
                if number == 1:
                    if raw + b"\n" != HEADER.encode("utf-8"):
                        raise MnerInputError(
                            f"not an 'mner ask-llm' output (its header is not {HEADER.strip()!r}); give another "
                            "--out",
                            self.path,
                            1,
                        )
                    continue
                key, tab, _ = raw.partition(b"\t")
                if raw.strip() and (not tab or not key.strip()):
                    what = "no tab" if not tab else "an empty id"
                    raise MnerInputError(f"expected 'id<TAB>context', got {what}", self.path, number)
                name = key.decode("utf-8", "replace").strip()
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
        return done

    def _read_meta(self) -> dict:
        if not self.meta_path.exists():
            return {"written_by": "mner ask-llm", "format": 1, "runs": []}
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            if meta.get("written_by") != "mner ask-llm" or not isinstance(meta.get("runs"), list):
                raise ValueError("not written by mner ask-llm")
        except (OSError, ValueError, AttributeError) as err:
            raise MnerInputError(
                f"not the sidecar of an 'mner ask-llm' output ({err}); move it away or give another --out",
                self.meta_path,
            ) from None
        return meta

    def start_run(self, client, image: bool) -> dict:
        """Record a run in the sidecar before the first request (``finish_run`` completes it)."""
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
        }
        self.meta["runs"].append(run)
        self._write_meta()
        return run

    def finish_run(self, run: dict, counts: dict) -> None:
        run["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        run.update({key.replace(" ", "_"): n for key, n in counts.items()})
        with contextlib.suppress(MnerInputError):  # a full disk is said once, by the write that failed
            self._write_meta()

    def _write_meta(self) -> None:
        partial = self.meta_path.with_name(f".{self.meta_path.name}.{os.getpid()}")
        try:
            partial.write_text(json.dumps(self.meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(partial, self.meta_path)
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise MnerInputError(f"cannot write ({err.strerror or err})", self.meta_path) from None

    def write_row(self, post_id: str, context: str) -> None:
        self._append(f"{post_id}\t{context}\n".encode("utf-8", "replace"))

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

    def close(self) -> None:
        if self.fd < 0:
            return
        if self.created and os.fstat(self.fd).st_size == 0:  # made by this run, refused before its header
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = -1
