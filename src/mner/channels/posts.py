"""Posts as JSON objects, one a line (JSONL): ``{"id"?, "text" | "tokens", "image"?, <a channel's field>?}``,
the fields of the channels a post may carry (``mner.channels.spec``: "caption", "context"); tagged output adds
``"entities"``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from mner.channels.spec import text_fields
from mner.data import MnerInputError, Post, Span, iter_jsonl, tokenize

# A post's text (or its tokens joined by spaces) longer than this is that post's error, never tagged: the time
# and memory of tagging grow with it (one 15.8 MB text took 1.87 GB and over 400 s: issue #32, D8), and a social-
# media post is far shorter (the service takes 5,000 characters by default). Contexts are bounded when read.
MAX_TEXT_CHARS = 100_000


def long_text_problem(text: str | None, tokens: Sequence[str] | None = None) -> str | None:
    """Why a post's text is too long to tag (over ``MAX_TEXT_CHARS``), or None; ``tokens`` when given as tokens."""
    if tokens is not None:
        length, what = sum(map(len, tokens)) + max(len(tokens) - 1, 0), "'tokens' joined by spaces are"
    else:
        length, what = len(text or ""), "'text' is"
    if length <= MAX_TEXT_CHARS:
        return None
    return (
        f"{what} {length:,} characters, over the {MAX_TEXT_CHARS:,}-character limit of a post's text: "
        "split it into posts of at most that length"
    )


def post_from_json(obj: object, where: str = "") -> Post:
    """A Post from one decoded JSONL object; raises ValueError saying what was expected."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")  # noqa: TRY004 - bad input, not a bug
    tokens = obj.get("tokens")
    text = obj.get("text")
    if tokens is not None:
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("'tokens' must be a list of non-empty strings")
        if problem := long_text_problem(None, tokens):
            raise ValueError(problem)
    elif isinstance(text, str):
        if problem := long_text_problem(text):
            raise ValueError(problem)  # before it is tokenised
        tokens = tokenize(text)
    else:
        raise ValueError("expected 'text' (a string) or 'tokens' (a list of strings)")
    if not tokens:
        raise ValueError("the post is empty: 'text' has no tokens")
    fields = ("image", *text_fields())
    for key in fields:
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise ValueError(f"'{key}' must be a string")
    post_id = obj.get("id", where)
    return Post(
        tuple(tokens),
        id=str(post_id),
        extra={"text": text} if text is not None else {},
        **{key: obj.get(key) for key in fields},
    )


def iter_jsonl_posts(path: str | Path) -> Iterator[tuple[int, Post | MnerInputError]]:
    """(line number, Post or the error for that line) for every non-blank line; one bad line stops nothing."""
    path = Path(path)
    for line_no, obj in iter_jsonl(path):
        if isinstance(obj, MnerInputError):
            yield line_no, obj
            continue
        try:
            yield line_no, post_from_json(obj, where=f"{path.stem}-{line_no}")
        except ValueError as err:
            yield line_no, MnerInputError(str(err), path, line_no)


def post_to_json(post: Post, spans: Iterable[Span] | None = None) -> dict:
    """The JSONL object of a post, with ``entities`` when spans are given."""
    obj: dict = {"id": post.id}
    if "text" in post.extra:
        obj["text"] = post.extra["text"]
    obj["tokens"] = list(post.tokens)
    for key in ("image", *text_fields()):
        if getattr(post, key) is not None:
            obj[key] = getattr(post, key)
    if spans is not None:
        obj["entities"] = [s.to_dict() for s in spans]
    return obj
