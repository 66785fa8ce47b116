"""``mner ask-llm``: ask an LLM (any OpenAI-compatible chat endpoint) for the context of each post of a JSONL
file, written as a context file (``id<TAB>context``) that ``--context-file`` reads. Resumable: a rerun asks only for
the posts not in the output yet (so posts that failed are asked again)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
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
            "--in", help='Posts, one JSON object a line: {"id"?, "text" (or "tokens"), "caption"?}.'
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Context TSV to write (id<TAB>context); if it exists, its posts are skipped."
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
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight at once.")] = 4,
    retries: Annotated[int, typer.Option(min=0, max=20, help="Tries after the first, with backoff.")] = 4,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for an answer.")] = 60.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Ask an LLM what each post mentions (an entity list with kinds, then reasoning): a context TSV."""
    from tqdm import tqdm

    from mner.channels.llm import ChatClient
    from mner.channels.posts import iter_jsonl_posts

    posts = iter_jsonl_posts(input_file)  # a missing input fails here, before anything is written
    done = _done_ids(out)
    client = ChatClient(endpoint, model, os.environ.get(api_key_env) or None, timeout, retries)
    counts = {"written": 0, "failed": 0, "skipped": 0, "bad lines": 0}
    start = time.perf_counter()
    lock = threading.Lock()
    with (
        open(out, "a", encoding="utf-8", newline="\n") as sink,
        ThreadPoolExecutor(concurrency) as pool,
        tqdm(unit="post", desc="context", disable=quiet or not sys.stderr.isatty(), leave=False) as bar,
    ):
        if sink.tell() == 0:
            sink.write(HEADER)
        pending: deque = deque()
        for line_no, post in posts:
            if isinstance(post, MnerInputError):
                counts["bad lines"] += 1
                typer.echo(f"error: {error_text(post)}", err=True)
                continue
            where = f"{input_file}:{line_no}"
            if post.id in done:
                counts["skipped"] += 1
                continue
            if any(c in post.id for c in "\t\r\n"):
                counts["failed"] += 1
                typer.echo(
                    f"error: {where}: id {post.id!r} holds a tab or a line break: a TSV key cannot", err=True
                )
                continue
            done.add(post.id)  # a later line with the same id is the same post: asked once
            text = post.extra.get("text") or " ".join(post.tokens)
            pending.append((where, post.id, pool.submit(client.ask, text, post.caption)))
            while len(pending) >= 2 * concurrency:  # a bounded window: constant memory on any input size
                _finish(pending.popleft(), sink, lock, counts, bar)
        while pending:
            _finish(pending.popleft(), sink, lock, counts, bar)
    rate = (counts["written"] + counts["failed"]) / max(time.perf_counter() - start, 1e-9)
    typer.echo(
        f"wrote {counts['written']}, failed {counts['failed']}, skipped {counts['skipped']} (already in the "
        f"output), bad lines {counts['bad lines']}; {rate:.1f} posts/s",
        err=True,
    )
    if counts["failed"]:
        typer.echo(f"{counts['failed']} post(s) failed: run the same command again to retry them", err=True)
        raise typer.Exit(1)


def _finish(item, sink, lock: threading.Lock, counts: dict, bar) -> None:
    from mner.channels.llm import LLMError

    where, post_id, future = item
    try:
        knowledge = future.result()
    except LLMError as err:
        counts["failed"] += 1
        typer.echo(f"error: {where}: id {post_id!r}: {err}", err=True)
    else:
        with lock:
            sink.write(f"{post_id}\t{knowledge}\n")
            sink.flush()
        counts["written"] += 1
    bar.update(1)


def _done_ids(out: Path) -> set[str]:
    """The ids already in an output TSV (after cutting a last line an interrupted run left incomplete)."""
    if not out.exists() or out.stat().st_size == 0:
        return set()
    with open(out, "rb") as f:
        first = f.readline()
    if first.decode("utf-8", "replace") != HEADER:
        raise MnerInputError(
            f"not an 'mner ask-llm' output (its header is not {HEADER.strip()!r}); give another --out", out, 1
        )
    raw = out.read_bytes()
    if not raw.endswith(b"\n"):
        keep = raw.rfind(b"\n") + 1
        os.truncate(out, keep)
        typer.echo(
            f"{out}: removed an incomplete last line ({len(raw) - keep} bytes) left by an interrupted run",
            err=True,
        )
    from mner.data import read_keyed_tsv

    texts, _ = read_keyed_tsv(out, ("id",), "context")
    return set(texts)
