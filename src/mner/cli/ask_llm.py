"""``mner ask-llm``: ask an LLM (any OpenAI-compatible chat endpoint) for the context of each post of a JSONL
file, written as a context file (``id<TAB>context``) that ``--context-file`` reads, with a sidecar
``OUT.meta.json`` that records, run by run, the endpoint, the model it says answered, the prompt's version and
how the answers came (JSON schema or instructions), and the lines of its rows (``mner.cli.ask_llm_output``).
Resumable: a rerun asks only for the posts not in the output yet (so posts that failed are asked again); a rerun
with another endpoint, model, prompt version, answer form or image setting is refused (``--allow-mixed`` allows
it). One run at a time on an output (a lock), rows written whole (a failed write is undone), nothing of the
user's ever truncated. Images are read only inside the input's folder (or ``--images-root``) unless
``--images-anywhere``, only from regular files, and the image bytes in flight are bounded. A run in which a post
failed or a line could not be asked exits 1; an output it created and wrote nothing to is removed."""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer

from mner.cli.ask_llm_output import ContextOutput
from mner.cli.errors import error_text, user_errors
from mner.data import MnerInputError

MAX_TIMEOUT = 86_400.0  # seconds (mner.channels.llm.MAX_TIMEOUT: not imported here, to keep --help light)


def _seconds(value: float) -> float:
    if not (math.isfinite(value) and 0.1 <= value <= MAX_TIMEOUT):
        raise typer.BadParameter(f"expected seconds from 0.1 to {MAX_TIMEOUT:g}, got {value}")
    return value


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
            help="With --image: image paths are relative to this folder and may not leave it (default: the input "
            "file's folder)."
        ),
    ] = None,
    images_anywhere: Annotated[
        bool,
        typer.Option(
            "--images-anywhere",
            help="With --image: also send images outside that folder (absolute paths, '..', links leading out). "
            "Off by default: the input file would decide which of this machine's files leave it.",
        ),
    ] = False,
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
        typer.Option(
            callback=_seconds,
            help=f"Seconds one answer may take in all (connecting, waiting, reading it): 0.1 to {MAX_TIMEOUT:g}.",
        ),
    ] = 60.0,
    allow_mixed: Annotated[
        bool,
        typer.Option(
            "--allow-mixed",
            help="Append to an output whose rows came from another endpoint, model, prompt version, answer form "
            "or image setting (refused without it; OUT.meta.json records the lines each run wrote).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Ask an LLM what each post mentions (an entity list with kinds, then reasoning): a context TSV."""
    from mner.channels.posts import iter_jsonl_posts

    posts = iter_jsonl_posts(input_file)  # a missing input fails here, before anything is written
    if out.exists() and input_file.exists() and os.path.samefile(out, input_file):
        raise MnerInputError(
            "--out is the input file: give another --out (the input is never overwritten)", out
        )
    client = _client(endpoint, model, os.environ.get(api_key_env) or None, timeout, retries, structured)
    pictures = None
    if image:
        named = "--images-root" if images_root is not None else "the input's folder"
        pictures = Pictures(images_root or input_file.parent, named, images_anywhere)
    output = ContextOutput(out)
    try:
        run = output.start_run(client, image, allow_mixed)
    except BaseException:
        output.close()
        raise
    counts = {"written": 0, "failed": 0, "skipped": 0, "bad lines": 0, "cut": 0, "sent in part": 0}
    start = time.perf_counter()
    try:
        _ask_all(posts, input_file, client, pictures, output, run, counts, concurrency, quiet)
    finally:
        output.finish_run(run, counts)
        removed = output.close()
    rate = (counts["written"] + counts["failed"]) / max(time.perf_counter() - start, 1e-9)
    _summary(counts, rate, out if removed else None)


def _client(endpoint: str, model: str, api_key: str | None, timeout: float, retries: int, structured: bool):
    from mner.channels.llm import ChatClient

    try:
        return ChatClient(endpoint, model, api_key, timeout, retries, structured=structured)
    except ValueError as err:
        raise MnerInputError(f"--{err}") from None


def _ask_all(posts, input_file, client, pictures, output, run, counts, concurrency, quiet) -> None:
    """Ask for every post not in the output yet, ``concurrency`` at a time, and write the answers in input
    order (a bounded window of posts in flight: constant memory on any input)."""
    from tqdm import tqdm

    from mner.channels.llm_images import ByteBudget

    budget = ByteBudget()  # the image bytes that all posts in flight hold together
    with (
        ThreadPoolExecutor(concurrency) as pool,
        tqdm(unit="post", desc="asking", disable=quiet or not sys.stderr.isatty(), leave=False) as bar,
    ):
        pending: deque = deque()
        try:
            for line_no, post in posts:
                where = f"{input_file}:{line_no}"
                if not _askable(post, where, output, counts):
                    continue
                output.done.add(post.id)  # a later line with the same id is the same post: asked once
                text = post.extra.get("text") or " ".join(post.tokens)
                picture = pictures.path(post.image) if pictures is not None else None
                future = pool.submit(_ask, client, text, post.caption, picture, budget)
                pending.append((where, post.id, future))
                while len(pending) >= 2 * concurrency:
                    _finish(pending.popleft(), output, run, counts, bar)
            while pending:
                _finish(pending.popleft(), output, run, counts, bar)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _askable(post, where: str, output: ContextOutput, counts: dict) -> bool:
    """Whether to ask for a post: not a bad line (said, and counted), not in the output yet (counted)."""
    problem = _bad_line(post, where)
    if problem is not None:
        counts["bad lines"] += 1
        typer.echo(f"error: {problem}", err=True)
        return False
    if post.id in output.done:
        counts["skipped"] += 1
        return False
    return True


def _summary(counts: dict, rate: float, removed: Path | None) -> None:
    """The run's last lines; exit 1 where a post failed or a line could not be asked."""
    typer.echo(
        f"wrote {counts['written']}, failed {counts['failed']}, skipped {counts['skipped']} (already in the "
        f"output), bad lines {counts['bad lines']}; {rate:.1f} posts/s",
        err=True,
    )
    if removed is not None:
        typer.echo(f"{removed}: no row written: not left behind", err=True)
    if counts["failed"]:
        typer.echo(f"{counts['failed']} post(s) failed: run the same command again to retry them", err=True)
    if counts["bad lines"]:
        typer.echo(
            f"{counts['bad lines']} line(s) of the input could not be asked (each named above): mend them and run "
            "the same command again",
            err=True,
        )
    if counts["failed"] or counts["bad lines"]:
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


class Pictures:
    """Where posts' images are: paths relative to ``base`` (``named``: how the user knows it), confined to it
    (links resolved) unless ``anywhere``."""

    def __init__(self, base: Path, named: str, anywhere: bool = False):
        self.base, self.named, self.anywhere = base, named, anywhere

    def path(self, value: str | None) -> Path | str | None:
        """The image file a post names; a string: why it cannot be sent (that post's error)."""
        if value is None:
            return None
        path = self.base / value
        if self.anywhere:
            return path
        try:
            inside = path.resolve().is_relative_to(self.base.resolve())
        except (OSError, ValueError, RuntimeError) as err:  # a NUL in the path, a loop of links
            return f"image {value!r}: not a path that can be read ({err})"
        if inside:
            return path
        if self.named == "--images-root":
            return f"image {value!r} is outside --images-root {self.base}"
        return (
            f"image {value!r} is outside the input's folder {self.base}: not sent (give --images-root, or "
            "--images-anywhere to send images from anywhere)"
        )


def _ask(client, text: str, caption: str | None, picture: Path | str | None, budget):
    """On a pool thread: the post's image read (only posts in flight hold one, within ``budget``'s bytes), then
    the endpoint asked."""
    from mner.channels.llm import LLMError
    from mner.channels.llm_images import ImageFile

    if isinstance(picture, str):
        raise LLMError(picture)
    if picture is None:
        return client.ask(text, caption)
    try:
        with ImageFile(picture) as source, budget.hold(source.size):
            return client.ask(text, caption, source.encoded())
    except Exception as err:  # noqa: BLE001 - the post's error, said in _finish
        reason = str(err) if isinstance(err, LLMError) else f"{type(err).__name__}: {err}"
    # raised anew, outside the except: the failure kept in the future holds no frame that holds the image
    raise LLMError(reason)


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
        if answer.unsent:
            counts["sent in part"] += 1
            typer.echo(
                f"note: {where}: id {post_id!r}: {answer.unsent:,} characters of the post and its caption were not "
                "sent (the first 5,000 of a post's text and 1,000 of its caption are)",
                err=True,
            )
        if answer.cut:
            counts["cut"] += 1
            typer.echo(
                f"note: {where}: id {post_id!r}: the answer is {len(answer.context) + answer.cut:,} characters; "
                f"its first {len(answer.context):,} are kept",
                err=True,
            )
    bar.update(1)
