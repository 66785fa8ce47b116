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
  (``image_data_url``), for vision-capable endpoints.

Only the standard library speaks HTTP here (``http.client``). Every answer has a deadline (``timeout``: from
connecting to its last byte, so a server that trickles cannot hold a post), a size limit
(``MAX_ANSWER_BYTES``; more is not read), and is parsed as untrusted JSON (nesting, huge numbers, lone
surrogates: an error, never a crash). A redirect is followed only to the same origin, re-sending the same
POST; to another origin it is refused, so the API key never leaves the endpoint's origin. A request that
fails is retried a bounded number of times with exponential backoff (a 429's ``Retry-After`` is honoured, up
to the cap); one that still fails is an ``LLMError`` naming why. The API key comes from the caller (read from
an environment variable by ``mner ask-llm``) and is sent only in the ``Authorization`` header, never logged.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import random
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from mner.data import parse_json

PROMPT_FILE = "context-v2.json"
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # an answer's HTTP body; a larger one is not read (max_tokens 400 ≈ 2 KB)
MAX_CONTEXT_CHARS = (
    10_000  # what is kept of an answer (the service's limit on a context): a longer one is cut
)
MAX_ENTITIES = 200  # entities kept from a JSON answer
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # an image sent with a post
MAX_REDIRECTS = 5
IMAGE_TYPES = {  # the formats vision endpoints take, by their first bytes
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


class LLMError(Exception):
    """A post the endpoint could not answer: says why (the last failure, after all tries)."""


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
        return " ".join(value.replace("(", "[").replace(")", "]").split())

    listed = "".join(
        f"{i}. {clean(name)} ({clean(kind) or 'unknown'})" for i, (name, kind) in enumerate(entities, 1)
    )
    return f"Named entities:{listed}Reasoning:{' '.join(reasoning.split())}"


def completions_url(endpoint: str) -> str:
    """``http://host:8080/v1`` (or the full ``.../chat/completions``) → the chat-completions URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/chat/completions") else endpoint + "/chat/completions"


def image_data_url(path: str | Path) -> str:
    """A ``data:image/...;base64,...`` URL of an image file (JPEG, PNG, GIF or WebP) to send with a post.

    Raises:
        LLMError: the file is missing, unreadable, over ``MAX_IMAGE_BYTES`` or not one of those formats.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_IMAGE_BYTES + 1)
    except OSError as err:
        raise LLMError(f"image {path}: cannot read ({err.strerror or err})") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise LLMError(f"image {path}: over {MAX_IMAGE_BYTES:,} bytes, the most sent with a post")
    kind = next((t for magic, t in IMAGE_TYPES.items() if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "image/webp"
    if kind is None:
        raise LLMError(f"image {path}: not a JPEG, PNG, GIF or WebP file")
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


# ------------------------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Answer:
    """What the endpoint said about a post: the context to write (one line), the model it says answered, whether
    the answer was the JSON of the schema, and how many characters were cut from it (over ``max_chars``)."""

    context: str
    model: str | None
    structured: bool
    cut: int = 0


@dataclass
class ChatClient:
    """Asks one chat-completions endpoint; ``ask`` retries with backoff. Safe to share between threads."""

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

    def ask(self, text: str, caption: str | None = None, image_url: str | None = None) -> Answer:
        """The LLM's knowledge about a post, on one line.

        Raises:
            LLMError: every try failed (HTTP error, timeout, malformed, empty or oversized answer, a redirect to
            another origin).
        """
        reason = "not tried"
        for attempt in range(self.retries + 1):
            wait = None
            try:
                return self._ask_once(text, caption, image_url)
            except _Retry as err:
                reason, wait = err.reason, err.wait
            except _Fatal as err:
                raise LLMError(err.reason) from None
            if attempt == self.retries:
                break
            pause = self.backoff * 2**attempt * (0.5 + random.random() / 2)
            time.sleep(min(self.max_wait, wait if wait is not None else pause))
        raise LLMError(f"{reason} (after {self.retries + 1} tries)")

    def _ask_once(self, text: str, caption: str | None, image_url: str | None) -> Answer:
        structured = self.structured and not self.format_refused
        status, headers, raw = self._post(self._body(text, caption, image_url, structured))
        if status == 400 and structured:  # an endpoint without structured output: the instructions alone
            status, headers, raw = self._post(self._body(text, caption, image_url, False))
            if status == 200:
                self.format_refused = True
        if status != 200:
            raise _Retry(f"HTTP {status} {_reason(status)}", _retry_after(headers))
        return self._answer(raw)

    def _body(self, text: str, caption: str | None, image_url: str | None, structured: bool) -> bytes:
        body = {
            "model": self.model,
            "messages": self.prompt.messages(text, caption, image_url, structured),
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        if structured:
            body["response_format"] = self.prompt.response_format()
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _answer(self, raw: bytes) -> Answer:
        content, model = _content(raw)
        context = structured_context(content)
        structured = context is not None
        if context is None:
            context = " ".join(content.split())
        cut = max(0, len(context) - self.max_chars)
        return Answer(context[: self.max_chars], model, structured, cut)

    # -------------------------------------------------------------------------------------------- HTTP

    def _post(self, body: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
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
            if _origin(target) != _origin(url):
                raise _Fatal(
                    f"the endpoint redirects to another origin ({shown_url(target)}): not followed, so that the API "
                    "key is never sent there; give that address as --endpoint if you trust it"
                )
            url = target
        raise _Fatal(f"more than {MAX_REDIRECTS} redirects")

    def _request(self, url: str, body: bytes, deadline: float) -> tuple[int, http.client.HTTPMessage, bytes]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Fatal(f"cannot ask {shown_url(url)}: expected an http:// or https:// endpoint")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Retry(f"no answer within {self.timeout:g} s")
        connection = _connection(parts, remaining)
        watchdog = _Watchdog(connection, remaining)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        target = url if connection.host != parts.hostname and parts.scheme == "http" else _path(parts)
        try:
            connection.request("POST", target, body=body, headers=headers)
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
                raise _Retry(f"cannot reach {self.endpoint}: {reason}") from None
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
    """A URL without its user, password and query (where keys hide), to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


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
    return content, " ".join(model.split())[:200] if isinstance(model, str) else None  # a name, not a payload


def structured_context(content: str) -> str | None:
    """The context of an answer that is the schema's JSON (``{"entities": [{"name", "kind"}], "reasoning"}``),
    rendered as text; None for any other answer (kept as written)."""
    try:
        data = parse_json(content)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("entities"), list):
        return None
    entities = [
        (e["name"], e.get("kind") if isinstance(e.get("kind"), str) else "")
        for e in data["entities"][:MAX_ENTITIES]
        if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"].strip()
    ]
    reasoning = data.get("reasoning")
    return render(entities, reasoning if isinstance(reasoning, str) else "")
