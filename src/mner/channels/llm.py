"""Context for new posts from an LLM: a client for any OpenAI-compatible chat-completions endpoint (a local
llama.cpp, vLLM or Ollama server, or a hosted one) and the prompt that asks it for the kind of knowledge
``mner.channels.context`` reads: a numbered "Named entities" list with kinds, then the reasoning.

- The prompt is one versioned file in the package (``prompts/context-v2.json``: instructions, three worked
  examples, the JSON schema of an answer); ``Prompt.load`` reads it, and its ``version`` is recorded beside
  every output.
- Structured output: the request asks for the schema through ``response_format`` (``json_schema``); an endpoint
  that answers 400 to it is asked again with the instructions alone, and is not sent it again. A JSON answer
  is rendered as ``Named entities:1. NAME (kind)...Reasoning:...``; a text answer is kept as written (the
  context parser reads its list).
- An image goes with the post as an OpenAI-style ``image_url`` part holding a base64 data URL
  (``EncodedImage``, read by ``mner.channels.llm_images``), for vision-capable endpoints; the request body is
  sent in pieces, so that the image's base64 is the only copy of it a request holds.
- What is sent is bounded: a post's first ``MAX_POST_CHARS`` characters and its caption's first
  ``MAX_CAPTION_CHARS`` (the service's limits). An answer is written only when its entity list can be read
  (``readable``: the context parser's reading, or an explicit empty list): any other answer is that post's
  error. Control characters of an answer are dropped: one answer is one clean line.

Only the standard library speaks HTTP here (``http.client``). Every answer has a deadline (``timeout``: from
connecting to its last byte, so a server that trickles cannot hold a post), a size limit
(``MAX_ANSWER_BYTES``; more is not read), and is parsed as untrusted JSON (nesting, huge numbers, lone
surrogates: an error, never a crash). A redirect is followed only to the same origin, re-sending the same
POST; to another origin it is refused, so the API key never leaves the endpoint's origin. A request that
fails is retried a bounded number of times with exponential backoff (a 429's ``Retry-After`` is honoured, up
to the cap), except an HTTP error that another try would get again (400, 401, 403, 404, 413, 422...); one
that still fails is an ``LLMError`` naming why. A URL is printed without its user, password and query
(``shown_url``). The API key comes from the caller (read from
an environment variable by ``mner ask-llm``) and is sent only in the ``Authorization`` header, never logged.
"""

from __future__ import annotations

import functools
import http.client
import json
import math
import mmap
import random
import re
import secrets
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import urljoin, urlsplit, urlunsplit

from mner.data import parse_json

PROMPT_FILE = "context-v2.json"
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # an answer's HTTP body; a larger one is not read (max_tokens 400 ≈ 2 KB)
MAX_CONTEXT_CHARS = (
    10_000  # what is kept of an answer (the service's limit on a context): a longer one is cut
)
MAX_ENTITIES = 200  # entities kept from a JSON answer
MAX_POST_CHARS = 5_000  # of a post's text sent (the service's limit on a post)
MAX_CAPTION_CHARS = 1_000  # of its caption (the service's limit on a caption)
MAX_TIMEOUT = 86_400.0  # seconds: a day (a timer cannot wait forever)
MAX_REDIRECTS = 5
FINAL_STATUSES = {400, 401, 403, 404, 405, 410, 413, 414, 415, 422}  # another try gets the same: not retried
# C0 and C1 controls (NUL, ESC, ...) and the bidirectional marks, overrides and isolates: never written
_CONTROLS = {c: " " for c in (*range(0x20), *range(0x7F, 0xA0), 0x61C, 0x200E, 0x200F)}
_CONTROLS.update({c: " " for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})
_SAYS_NONE = re.compile(  # an explicit empty list: "Named entities:Reasoning:...", "Named entities: none.", "None."
    r"\s*(?:named entities\s*:\s*(?:\(?(?:none|no entities|no named entities|n/a|nothing|\[\]|-)\)?\.?\s*)?"
    r"(?:reasoning\s*:|$)|(?:none|no entities|no named entities)\.?\s*$)",
    re.IGNORECASE,
)


class LLMError(Exception):
    """A post the endpoint could not answer: says why (the last failure, after all tries)."""


@dataclass(frozen=True)
class EncodedImage:
    """An image to send with a post: its media type and its bytes in base64 (ASCII: ``bytes``, or any buffer such
    as an ``mmap``), the one copy of it that a request holds (``mner.channels.llm_images.ImageFile.encoded`` reads
    one)."""

    media_type: str
    base64: bytes | bytearray | memoryview | mmap.mmap

    def url(self) -> str:
        """The ``data:`` URL (a copy of the image: for a caller that wants the URL itself)."""
        return f"data:{self.media_type};base64,{bytes(self.base64).decode('ascii')}"


# ------------------------------------------------------------------------------------------- the prompt


@dataclass(frozen=True)
class Example:
    """A worked example of the prompt: a post, its caption, and the answer for it."""

    text: str
    caption: str | None
    entities: tuple[tuple[str, str], ...]
    reasoning: str


@dataclass(frozen=True)
class Prompt:
    """The instructions, the worked examples and the answer's JSON schema, read from one versioned file."""

    version: str
    system: str
    answer_as_text: str
    answer_as_json: str
    user: str  # the post's message: "{text}" and "{caption}" filled in
    no_caption: str
    schema: dict
    examples: tuple[Example, ...]

    @classmethod
    def load(cls, name: str = PROMPT_FILE) -> Prompt:
        """The prompt file ``name`` of the package (``mner/channels/prompts/``)."""
        text = resources.files("mner.channels").joinpath("prompts", name).read_text(encoding="utf-8")
        data = json.loads(text)
        examples = tuple(
            Example(
                e["text"],
                e.get("caption"),
                tuple((x["name"], x["kind"]) for x in e["entities"]),
                e["reasoning"],
            )
            for e in data["examples"]
        )
        fields = ("version", "system", "answer_as_text", "answer_as_json", "user", "no_caption", "schema")
        return cls(**{key: data[key] for key in fields}, examples=examples)

    def user_message(self, text: str, caption: str | None) -> str:
        return self.user.format(text=text, caption=caption or self.no_caption)

    def messages(
        self, text: str, caption: str | None, image_url: str | None = None, structured: bool = False
    ) -> list[dict]:
        """The chat: the instructions, the worked examples (answered as text or as JSON), then the post (with
        its image as an ``image_url`` part when given)."""
        answer_form = self.answer_as_json if structured else self.answer_as_text
        chat = [{"role": "system", "content": f"{self.system} {answer_form}"}]
        for example in self.examples:
            chat.append({"role": "user", "content": self.user_message(example.text, example.caption)})
            if structured:
                entities = [{"name": name, "kind": kind} for name, kind in example.entities]
                answer = json.dumps(
                    {"entities": entities, "reasoning": example.reasoning}, ensure_ascii=False
                )
            else:
                answer = render(example.entities, example.reasoning)
            chat.append({"role": "assistant", "content": answer})
        content: str | list = self.user_message(text, caption)
        if image_url is not None:
            content = [
                {"type": "text", "text": content},
                {"type": "image_url", "image_url": {"url": image_url}},
            ]
        chat.append({"role": "user", "content": content})
        return chat

    def response_format(self) -> dict:
        return {
            "type": "json_schema",
            "json_schema": {"name": "post_context", "strict": True, "schema": self.schema},
        }


@functools.cache
def prompt() -> Prompt:
    """The prompt ``mner ask-llm`` sends (``PROMPT_FILE``)."""
    return Prompt.load()


def render(entities, reasoning: str) -> str:
    """The context text of an entity list and reasoning: ``Named entities:1. Bears (sports team)2. ...Reasoning:...``
    (brackets inside a name or kind become square ones, so that the list reads back the same)."""

    def clean(value: str) -> str:
        return one_line(value.replace("(", "[").replace(")", "]"))

    listed = "".join(
        f"{i}. {clean(name)} ({clean(kind) or 'unknown'})" for i, (name, kind) in enumerate(entities, 1)
    )
    return f"Named entities:{listed}Reasoning:{one_line(reasoning)}"


def one_line(text: str) -> str:
    """``text`` on one clean line: control characters (NUL, ESC, ...) and bidirectional overrides become spaces,
    whitespace (tabs, line breaks of every kind) is folded."""
    return " ".join(text.translate(_CONTROLS).split())


def readable(context: str, text: str = "") -> bool:
    """Whether a context's entity list can be read: the context parser finds an entity in it (a known form, or
    the post's ``text``'s names found in it whatever its markup: ``mner.channels.reading``), or it says that there
    is none ("Named entities:Reasoning:..."). The one place where mner decides it."""
    from mner.channels.reading import read_context
    from mner.tokenizer import tokenize

    if _SAYS_NONE.match(context) is not None:
        return True
    return bool(read_context(tokenize(text[:MAX_POST_CHARS]) if text else (), context).entities)


def completions_url(endpoint: str) -> str:
    """``http://host:8080/v1`` (or the full ``.../chat/completions``) → the chat-completions URL (a query, such
    as ``?api-version=...``, kept after the path). Raises ValueError for a URL that cannot be read."""
    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return urlunsplit(parts._replace(path=path))


# ------------------------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Answer:
    """What the endpoint said about a post: the context to write (one line, its entity list readable), the model
    it says answered, whether the answer was the JSON of the schema, how many characters were cut from it (over
    ``max_chars``) and how many of the post's text and caption were not sent (over ``MAX_POST_CHARS`` and
    ``MAX_CAPTION_CHARS``)."""

    context: str
    model: str | None
    structured: bool
    cut: int = 0
    unsent: int = 0


@dataclass
class ChatClient:
    """Asks one chat-completions endpoint; ``ask`` retries with backoff. Safe to share between threads.

    Raises:
        ValueError: the endpoint is not an http(s) URL with a host, or the timeout is not a number of seconds in
        (0, ``MAX_TIMEOUT``] (the message shows the URL without its credentials).
    """

    endpoint: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0  # seconds one answer may take, all in (connect, send, wait, read)
    retries: int = 4  # tries after the first
    backoff: float = 1.0  # seconds before the first retry; doubled each time (with jitter)
    max_wait: float = 30.0  # no wait (backoff or Retry-After) is longer
    max_tokens: int = 400
    structured: bool = True  # ask for the JSON schema through response_format (dropped if refused)
    max_chars: int = MAX_CONTEXT_CHARS
    prompt: Prompt = field(default_factory=prompt)
    format_refused: bool = False  # the endpoint answered 400 to response_format: not sent again

    def __post_init__(self):
        check_endpoint(self.endpoint)
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= MAX_TIMEOUT):
            raise ValueError(f"timeout: expected seconds in (0, {MAX_TIMEOUT:g}], got {self.timeout!r}")

    def ask(self, text: str, caption: str | None = None, image: EncodedImage | None = None) -> Answer:
        """The LLM's knowledge about a post, on one line (of the post, its first ``MAX_POST_CHARS`` characters
        are sent, and of its caption the first ``MAX_CAPTION_CHARS``).

        Raises:
            LLMError: every try failed (HTTP error, timeout, malformed, empty or oversized answer, an answer with
            no entity list that can be read, a redirect to another origin), or an HTTP error another try would
            get again (400, 401, 404, ...: not retried).
        """
        sent, sent_caption = text[:MAX_POST_CHARS], caption[:MAX_CAPTION_CHARS] if caption else caption
        unsent = len(text) - len(sent) + (len(caption) - len(sent_caption) if caption else 0)
        reason = "not tried"
        for attempt in range(self.retries + 1):
            wait = None
            try:
                answer = self._ask_once(sent, sent_caption, image)
                return Answer(answer.context, answer.model, answer.structured, answer.cut, unsent)
            except _Retry as err:
                reason, wait = err.reason, err.wait
            except _Fatal as err:
                raise LLMError(err.reason) from None
            if attempt == self.retries:
                break
            pause = self.backoff * 2**attempt * (0.5 + random.random() / 2)
            time.sleep(min(self.max_wait, wait if wait is not None else pause))
        raise LLMError(f"{reason} (after {self.retries + 1} tries)")

    def _ask_once(self, text: str, caption: str | None, image: EncodedImage | None) -> Answer:
        structured = self.structured and not self.format_refused
        status, headers, raw = self._post(self._body(text, caption, image, structured))
        if status == 400 and structured:  # an endpoint without structured output: the instructions alone
            status, headers, raw = self._post(self._body(text, caption, image, False))
            if status == 200:
                self.format_refused = True
        if status in FINAL_STATUSES:  # the request itself is refused: another try gets the same
            raise _Fatal(
                f"HTTP {status} {_reason(status)}{self._said(raw)} (not retried: another try gets the same)"
            )
        if status != 200:
            raise _Retry(f"HTTP {status} {_reason(status)}", _retry_after(headers))
        return self._answer(raw, text)

    def _said(self, raw: bytes) -> str:
        """What an error's body says, on one line, shortened (the API key never shown)."""
        said = one_line(raw[:2000].decode("utf-8", "replace"))[:200]
        if self.api_key:
            said = said.replace(self.api_key, "***")
        return f": {said}" if said else ""

    def _body(
        self, text: str, caption: str | None, image: EncodedImage | None, structured: bool
    ) -> tuple[bytes | memoryview, ...]:
        """The request's JSON in pieces: with an image, the text around its data URL, and the image's own
        base64 bytes between them (never copied into one string)."""
        slot = None if image is None else f"mner-image-{secrets.token_hex(16)}"
        body = {
            "model": self.model,
            "messages": self.prompt.messages(text, caption, slot, structured),
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        if structured:
            body["response_format"] = self.prompt.response_format()
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if image is None:
            return (data,)
        head, _, tail = data.rpartition(slot.encode("ascii"))
        prefix = head + f"data:{image.media_type};base64,".encode("ascii")
        return (prefix, memoryview(image.base64), tail)  # a view: http.client sends it as it is, never copied

    def _answer(self, raw: bytes, text: str = "") -> Answer:
        content, model = _content(raw)
        context = structured_context(content)
        structured = context is not None
        if context is None:
            context = one_line(content)
        cut = max(0, len(context) - self.max_chars)
        context = context[: self.max_chars]
        if not readable(context, text):
            where = f" in its first {self.max_chars:,} characters" if cut else ""
            raise _Retry(
                f"unusable answer: it lists no entity that can be read{where} ({one_line(content)[:60]!r})"
            )
        return Answer(context, model, structured, cut)

    # -------------------------------------------------------------------------------------------- HTTP

    def _post(self, body: tuple[bytes | memoryview, ...]) -> tuple[int, http.client.HTTPMessage, bytes]:
        """POST ``body`` to the endpoint within ``timeout``; a redirect to the same origin is followed with the
        same POST, one to another origin refused."""
        url = completions_url(self.endpoint)
        deadline = time.monotonic() + self.timeout
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, raw = self._request(url, body, deadline)
            if status not in (301, 302, 303, 307, 308):
                return status, headers, raw
            location = headers.get("Location")
            if not location:
                raise _Retry(f"HTTP {status} {_reason(status)} without a Location")
            target = urljoin(url, location)
            try:
                elsewhere = _origin(target) != _origin(url)
            except ValueError:  # a port that is not a number, a bad IPv6 address
                raise _Fatal(
                    f"the endpoint redirects to an address that cannot be read ({shown_url(target)})"
                ) from None
            if elsewhere:
                raise _Fatal(
                    f"the endpoint redirects to another origin ({shown_url(target)}): not followed, so that the API "
                    "key is never sent there; give that address as --endpoint if you trust it"
                )
            url = target
        raise _Fatal(f"more than {MAX_REDIRECTS} redirects")

    def _request(
        self, url: str, body: tuple[bytes | memoryview, ...], deadline: float
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Fatal(f"cannot ask {shown_url(url)}: expected an http:// or https:// endpoint")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Retry(f"no answer within {self.timeout:g} s")
        connection = _connection(parts, remaining)
        watchdog = _Watchdog(connection, remaining)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Content-Length": str(sum(map(len, body))),
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        target = url if connection.host != parts.hostname and parts.scheme == "http" else _path(parts)
        try:
            connection.request("POST", target, body=body[0] if len(body) == 1 else body, headers=headers)
            response = connection.getresponse()
            raw = _read_capped(response)
            if watchdog.fired:  # cut at the deadline: what was read is not the whole answer
                raise TimeoutError
            return response.status, response.headers, raw
        except (OSError, http.client.HTTPException) as err:
            if watchdog.fired or isinstance(err, TimeoutError):
                raise _Retry(f"no answer within {self.timeout:g} s") from None
            if isinstance(err, ConnectionRefusedError | socket.gaierror) or connection.sock is None:
                reason = getattr(err, "strerror", None) or str(err)
                raise _Retry(f"cannot reach {shown_url(self.endpoint)}: {reason}") from None
            raise _Retry(f"connection failed: {type(err).__name__}: {err}") from None
        finally:
            watchdog.cancel()
            connection.close()


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class _Fatal(Exception):
    """A failure another try cannot mend (a redirect to another origin)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Watchdog:
    """Shuts a connection's socket down at its deadline: a blocked read returns at once, however the server
    trickles its bytes (a socket timeout alone is per read)."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float):
        self.connection, self.fired = connection, False
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self.timer.cancel()


def _connection(parts, timeout: float) -> http.client.HTTPConnection:
    """A connection to the URL's host, through the proxy the environment names for it (``HTTP(S)_PROXY``)."""
    https = parts.scheme == "https"
    kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        where = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if https:
            connection = http.client.HTTPSConnection(where.hostname, where.port or 8080, timeout=timeout)
            connection.set_tunnel(parts.hostname, parts.port or 443)
            return connection
        return http.client.HTTPConnection(where.hostname, where.port or 8080, timeout=timeout)
    return kind(parts.hostname, parts.port, timeout=timeout)


def _path(parts) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname, port


def shown_url(url: str) -> str:
    """A URL without its user, password, query and fragment (where keys hide), to print; never raises."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that cannot be read)"
    host = parts.netloc.rpartition("@")[2]  # host[:port] as written, without user:password@
    return one_line(f"{parts.scheme}://{host}{parts.path}")


def check_endpoint(endpoint: str) -> None:
    """Raises ValueError unless ``endpoint`` is an http(s) URL with a host and a valid port (the message shows
    it without its credentials)."""
    try:
        parts = urlsplit(completions_url(endpoint))
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a port that is not a number, a bad IPv6 address
        ok = False
    if not ok:
        raise ValueError(f"endpoint {shown_url(endpoint)}: expected http://HOST[:PORT]/PATH or https://...")


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers else None
    return float(value) if value and value.strip().isdigit() else None


def _read_capped(response: http.client.HTTPResponse) -> bytes:
    """The body, read a block at a time up to ``MAX_ANSWER_BYTES`` (memory stays bounded on any answer)."""
    announced = response.getheader("Content-Length")
    if announced and announced.strip().isdigit() and int(announced) > MAX_ANSWER_BYTES:
        raise _Retry(
            f"answer of {int(announced):,} bytes, over the {MAX_ANSWER_BYTES:,}-byte limit: not read"
        )
    data = bytearray()
    while block := response.read(65536):
        data += block
        if len(data) > MAX_ANSWER_BYTES:
            raise _Retry(f"answer over the {MAX_ANSWER_BYTES:,}-byte limit: not read further")
    return bytes(data)


def _content(raw: bytes) -> tuple[str, str | None]:
    """``choices[0].message.content`` of a chat-completions answer, and the answer's ``model``.

    Raises:
        _Retry: not JSON, unusable JSON (too deep, a number too long, a lone surrogate), no content, or empty.
    """
    try:
        answer = parse_json(raw)
    except ValueError as err:
        shown = repr(raw[:60]) if str(err).startswith("not JSON") else ""
        raise _Retry(f"malformed answer: {err}{f' ({shown})' if shown else ''}") from None
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _Retry("malformed answer: no choices[0].message.content") from None
    if isinstance(content, list):  # content parts: their text, in order
        content = " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    if not isinstance(content, str) or not content.strip():
        raise _Retry("empty answer")
    model = answer.get("model") if isinstance(answer, dict) else None
    return content, one_line(model)[:200] if isinstance(model, str) else None  # a name, not a payload


def structured_context(content: str) -> str | None:
    """The context of an answer that is the schema's JSON (``{"entities": [{"name", "kind"}], "reasoning"}``),
    rendered as text; None for any other answer (kept as written).

    Raises:
        _Retry: an object with ``entities`` that is not a list, or a list none of whose items has a name.
    """
    try:
        data = parse_json(content)
    except ValueError:
        return None
    if not isinstance(data, dict) or "entities" not in data:
        return None
    if not isinstance(data["entities"], list):
        raise _Retry("unusable answer: its 'entities' is not a list")
    entities = [
        (e["name"], e.get("kind") if isinstance(e.get("kind"), str) else "")
        for e in data["entities"][:MAX_ENTITIES]
        if isinstance(e, dict) and isinstance(e.get("name"), str) and one_line(e["name"])
    ]
    if data["entities"] and not entities:
        raise _Retry("unusable answer: no item of its 'entities' has a name")
    reasoning = data.get("reasoning")
    return render(entities, reasoning if isinstance(reasoning, str) else "")
