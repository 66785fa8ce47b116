"""Posts, spans and the file formats mner reads and writes.

Formats:
- CoNLL with image ids (Twitter-2015/2017): ``IMGID:<id>``, then ``token<TAB>tag`` lines, a blank line
  between posts; tags of any entity types, in BIO, IOB1 or BIOES (``mner.labels.read_gold`` reads them as BIO).
- Keyed TSV (``read_keyed_tsv``): a header ``<key><TAB><what>``, then ``key<TAB>text`` lines: captions
  (``image_id<TAB>caption``) and context files (``image_id<TAB>text`` or ``id<TAB>text``).
- JSON lines (``iter_jsonl``), read in bounded memory; posts as JSON are ``mner.channels.posts``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mner.tokenizer import split_handle, tokenize, tokenize_with_offsets  # noqa: F401 - mner.data's names too

# the Twitter benchmark's entity types; a model's own come from its training data (mner.labels)
ENTITY_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG", "OTHER")
TAG_PREFIXES = ("B", "I", "S", "E", "U", "L")  # BIO and IOB1; BIOES and BILOU (read as BIO by mner.labels)
EXPECTED_TAG = "expected 'O' or 'B-TYPE'/'I-TYPE' (BIO; IOB1 and BIOES/BILOU tags are read too)"


class MnerInputError(ValueError):
    """Bad user input: names the file, the line and what was expected."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        where = ""
        if path is not None:
            where = f"{Path(path).name}:{line}: " if line is not None else f"{Path(path).name}: "
        super().__init__(where + message)


@dataclass(frozen=True)
class Span:
    """An entity: tokens ``start`` to ``end`` (exclusive) of one post, with its type.

    ``score``: the model's probability of this entity (``mner.decoding.entity_probabilities``); None for gold
    spans. ``start_char``/``end_char``: where it is in the raw text the post was given as (end exclusive), and
    ``text`` is then that exact substring, ``raw_text[start_char:end_char]`` (spacing, case, decomposed accents
    and all); None for a post given as tokens (JSONL ``tokens``, CoNLL), whose ``text`` is its tokens joined by
    spaces."""

    start: int
    end: int
    type: str
    text: str
    score: float | None = None
    start_char: int | None = None
    end_char: int | None = None

    def to_dict(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "type": self.type,
            "text": self.text,
            "score": None if self.score is None else round(self.score, 4),
            "start_char": self.start_char,
            "end_char": self.end_char,
        }


@dataclass(frozen=True)
class Post:
    """One social-media post: tokens, optional gold tags, image reference, caption, knowledge and context."""

    tokens: tuple[str, ...]
    id: str = ""
    tags: tuple[str, ...] | None = None
    image: str | None = None
    caption: str | None = None
    knowledge: tuple[str, ...] | None = None
    context: str | None = None  # free text about the post (an LLM's notes, retrieved passages)
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.tags is not None and len(self.tags) != len(self.tokens):
            raise ValueError(f"post {self.id!r}: {len(self.tokens)} tokens but {len(self.tags)} tags")


# --------------------------------------------------------------------------------------------- tags


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` fits none of the tagging schemes mner reads, or None when it fits one."""
    if tag == "O":
        return None
    prefix, sep, etype = tag.partition("-")
    if sep and prefix in TAG_PREFIXES and etype and not any(c.isspace() for c in etype):
        return None
    return f"tag {tag!r} fits no tagging scheme: {EXPECTED_TAG}"


def spans_from_tags(tags: Iterable[str], tokens: Iterable[str] | None = None) -> list[Span]:
    """Entity spans from BIO tags, with conlleval's rules (an ``I-`` after ``O`` or another type opens a span)."""
    tags = list(tags)
    tokens = list(tokens) if tokens is not None else [""] * len(tags)
    spans: list[Span] = []
    start, etype = None, None
    for i, tag in enumerate(tags + ["O"]):
        prefix, _, t = tag.partition("-")
        begins = prefix == "B" or (prefix == "I" and t != etype)
        if etype is not None and (tag == "O" or begins):
            spans.append(Span(start, i, etype, " ".join(tokens[start:i])))
            start, etype = None, None
        if tag != "O" and begins:
            start, etype = i, t
    return spans


def tags_from_spans(spans: Iterable[Span], length: int) -> list[str]:
    """BIO tags of ``length`` tokens from non-overlapping spans."""
    tags = ["O"] * length
    for span in spans:
        tags[span.start] = f"B-{span.type}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.type}"
    return tags


# ------------------------------------------------------------------------------------------- CoNLL


MAX_LINE_BYTES = 16 * 1024 * 1024  # a longer line is an error: memory stays bounded on any input


def _open(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise MnerInputError("file not found", path) from None
    except IsADirectoryError:
        raise MnerInputError("expected a file, got a directory", path) from None


def bounded_lines(handle, path: Path, strip_bom: bool = True) -> Iterator[tuple[int, bytes | MnerInputError]]:
    """(line number, bytes without the line break, or the error of a line over MAX_LINE_BYTES), reading at
    most MAX_LINE_BYTES at a time; a UTF-8 byte-order mark on the first line is dropped."""
    for line_no in itertools.count(1):
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, a block at a time
                raw = handle.readline(MAX_LINE_BYTES)
            yield (
                line_no,
                MnerInputError(
                    f"line is over {MAX_LINE_BYTES:,} bytes, the most a line may hold", path, line_no
                ),
            )
            continue
        if line_no == 1 and strip_bom:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        yield line_no, raw.rstrip(b"\n").removesuffix(b"\r")


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 text file, streamed.

    Raises:
        MnerInputError: the file cannot be opened, a line is not UTF-8 or over MAX_LINE_BYTES.
    """
    with _open(path) as handle:
        for line_no, raw in bounded_lines(handle, path):
            if isinstance(raw, MnerInputError):
                raise raw
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise MnerInputError(
                    f"not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})", path, line_no
                ) from None


def iter_conll(path: str | Path) -> Iterator[Post]:
    """Posts from a CoNLL file with ``IMGID:`` lines, their tags as written (``mner.labels.read_gold`` gives them
    as BIO); raises MnerInputError naming the bad line."""
    path = Path(path)
    image_id, id_line, tokens, tags = None, None, [], []
    seen_text = False
    for line_no, line in _text_lines(path):  # CRLF accepted
        seen_text = seen_text or bool(line.strip())
        if line.startswith("IMGID:") or not line.strip():  # a post's first line, or the blank line after it
            if tokens or image_id is not None:
                yield _conll_post(path, image_id, id_line, tokens, tags)
            image_id, id_line, tokens, tags = _image_id(line, path, line_no), line_no, [], []
            continue
        token, tag = _token_line(line, path, line_no)
        if id_line is None:
            id_line = line_no
        tokens.append(token)
        tags.append(tag)
    if not seen_text:
        raise MnerInputError(
            "file is empty: expected CoNLL posts ('IMGID:<id>' then 'token<TAB>tag' lines)", path
        )
    if tokens or image_id is not None:
        yield _conll_post(path, image_id, id_line, tokens, tags)


def _image_id(line: str, path: Path, line_no: int) -> str | None:
    """The id of an ``IMGID:<id>`` line; None for a blank line."""
    if not line.startswith("IMGID:"):
        return None
    image_id = line[len("IMGID:") :].strip()
    if not image_id:
        raise MnerInputError("expected 'IMGID:<id>', got an empty id", path, line_no)
    return image_id


def _token_line(line: str, path: Path, line_no: int) -> tuple[str, str]:
    """The token and tag of a ``token<TAB>tag`` line."""
    fields = line.split("\t")
    if len(fields) != 2:
        raise MnerInputError(
            f"expected 'token<TAB>tag', got {len(fields)} field{'s' * (len(fields) != 1)}", path, line_no
        )
    token, tag = fields
    if token == "":
        raise MnerInputError("expected 'token<TAB>tag', got an empty token", path, line_no)
    problem = tag_problem(tag.strip())
    if problem is not None:
        raise MnerInputError(problem, path, line_no)
    return token, tag.strip()


def _conll_post(path: Path, image_id: str | None, id_line: int | None, tokens: list, tags: list) -> Post:
    if image_id is not None and not tokens:
        raise MnerInputError(f"IMGID:{image_id} has no tokens after it", path, id_line)
    return Post(tuple(tokens), id=image_id or f"{path.stem}-{id_line}", tags=tuple(tags), image=image_id)


def read_conll(path: str | Path) -> list[Post]:
    """All posts of a CoNLL file."""
    return list(iter_conll(path))


def write_conll(posts: Iterable[Post], path: str | Path, tags: Iterable[Iterable[str]] | None = None) -> None:
    """Write posts as CoNLL; ``tags`` (one sequence per post) overrides the posts' own tags."""
    tag_rows = iter(tags) if tags is not None else None
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for post in posts:
            row = (
                list(next(tag_rows)) if tag_rows is not None else list(post.tags or ["O"] * len(post.tokens))
            )
            if post.image is not None:
                out.write(f"IMGID:{post.image}\n")
            out.writelines(f"{token}\t{tag}\n" for token, tag in zip(post.tokens, row, strict=True))
            out.write("\n")


# ----------------------------------------------------------------------------------------- captions


def read_keyed_tsv(
    path: str | Path, keys: tuple[str, ...] = ("image_id",), what: str = "text"
) -> tuple[dict[str, str], str]:
    """Texts by key from a TSV whose header is ``<key><TAB><what>`` for one of ``keys`` (captions:
    ``image_id<TAB>caption``; contexts: ``image_id<TAB>text`` or ``id<TAB>text``): (texts, the key column's
    name). Each line is ``key<TAB>text``: the text is everything after the first tab, whitespace folded; a key
    given twice is an error.

    Raises:
        MnerInputError: naming the file, the line and what was expected.
    """
    path = Path(path)
    headers = " or ".join(f"'{key}<TAB>{what}'" for key in keys)
    expected = f"the header {headers}" if len(keys) == 1 else f"a header {headers}"
    lines = _text_lines(path)
    first = next(lines, None)
    if first is None:
        raise MnerInputError(f"file is empty: expected {expected}", path)
    key = first[1].split("\t", 1)[0].strip()
    if key not in keys or "\t" not in first[1]:
        raise MnerInputError(f"expected {expected}, got {first[1][:60]!r}", path, 1)
    texts: dict[str, str] = {}
    for line_no, line in lines:
        if not line.strip():
            continue
        name, tab, text = line.partition("\t")
        if not tab or not name.strip():
            raise MnerInputError(
                f"expected '{key}<TAB>{what}', got no tab"
                if not tab
                else f"expected '{key}<TAB>{what}', got an empty {key}",
                path,
                line_no,
            )
        if name.strip() in texts:
            raise MnerInputError(
                f"{key} {name.strip()!r} is given twice (first on an earlier line)", path, line_no
            )
        texts[name.strip()] = " ".join(text.split())
    return texts, key


def write_captions(captions: dict[str, str], path: str | Path) -> None:
    """Write captions as TSV with a header; tabs and newlines inside captions become spaces."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("image_id\tcaption\n")
        out.writelines(f"{image_id}\t{' '.join(caption.split())}\n" for image_id, caption in captions.items())


# -------------------------------------------------------------------------------------------- JSONL


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, object | MnerInputError]]:
    """(line number, decoded JSON value or the error for that line) for every non-blank line.

    Reads one line at a time (constant memory). Raises MnerInputError when the file itself cannot be opened
    (checked on the call, before the first line).
    """
    path = Path(path)
    return _jsonl_lines(_open(path), path)


def _jsonl_lines(handle, path: Path) -> Iterator[tuple[int, object | MnerInputError]]:
    with handle:
        for line_no, raw in bounded_lines(handle, path):
            if isinstance(raw, MnerInputError):
                yield line_no, raw
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                message = f"not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
                yield line_no, MnerInputError(message, path, line_no)
                continue
            if not line.strip():
                continue
            try:
                yield line_no, parse_json(line)
            except ValueError as err:
                yield line_no, MnerInputError(str(err), path, line_no)


MAX_JSON_DEPTH = 512  # of arrays and objects in untrusted JSON (Python's decoder recurses once a level)
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _nested_too_deep(text: str | bytes) -> bool:
    """Whether a JSON text opens more than ``MAX_JSON_DEPTH`` arrays or objects inside each other (strings
    skipped); linear, and only walked when the text holds that many brackets at all."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for token in _JSON_TOKEN.finditer(data):
        mark = token.group()
        if mark in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif mark in (b"]", b"}"):
            depth -= 1
    return False


def parse_json(text: str | bytes) -> object:
    """``json.loads`` for untrusted input: every way a text can fail is a ValueError with one clear line —
    not JSON, nested too deep for Python, an integer too long to convert, a string that is not valid
    Unicode (a lone surrogate such as ``"\\udc80"``, which could never be written back as UTF-8)."""
    if _nested_too_deep(
        text
    ):  # refused before the decoder recurses: a RecursionError inside the C decoder can leave
        raise ValueError(
            "not usable JSON: nested too deeply"
        )  # the interpreter's own recursion count askew (3.11)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at column {err.colno})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 (byte 0x{err.object[err.start]:02x} at offset {err.start})") from None
    except RecursionError:
        raise ValueError("not usable JSON: nested too deeply") from None
    except ValueError as err:  # an integer literal longer than sys.get_int_max_str_digits()
        raise ValueError(f"not usable JSON: {str(err).split(';')[0]}") from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"not valid Unicode: a lone surrogate {err.object[err.start]!r} in a string"
        ) from None
    except RecursionError:
        raise ValueError("not usable JSON: nested too deeply") from None
    return value


def write_jsonl(objects: Iterable[dict], path: str | Path) -> None:
    """Write one JSON object per line (UTF-8, no ASCII escaping)."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.writelines(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects)
