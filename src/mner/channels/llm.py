"""Context for new posts from an LLM: a client for any OpenAI-compatible chat-completions endpoint (a local
llama.cpp, vLLM or Ollama server, or a hosted one) and the prompt that asks it for the kind of knowledge
``mner.channels.context`` reads: a numbered "Named entities" list with kinds, then the reasoning.

Only the standard library speaks HTTP here (``urllib``). A request that fails is retried a bounded number
of times with exponential backoff (a 429's ``Retry-After`` is honoured, up to the cap); one that still
fails is an ``LLMError`` naming why. The API key comes from the caller (read from an environment variable by
``mner ask-llm``) and is sent only in the ``Authorization`` header, never logged.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

SYSTEM = (
    "You help a named entity recogniser read social-media posts. For each post you get its text and, when "
    "there is one, an automatic caption of its image. List the named entities the post mentions, each with "
    "its kind in brackets (person, location, organization, team, company, event, product, ...), numbered, "
    "after 'Named entities:'. Then, after 'Reasoning:', explain in under 100 words what the post and the image "
    "are about and why each entity has that kind. Handles (@user) and hashtags (#tag) are entities when they "
    "name one. Never invent entities the post does not mention."
)
# Three training posts with knowledge written for this prompt (not taken from any dataset's answers).
EXAMPLES = [
    (
        "RT @FindMyBikeYYC : Is this your frame ? Found near the elbow river in Stanley park . http://t.co/gAo5XJ07z3",
        "a green bicycle lying on the ground",
        (
            "Named entities:1. FindMyBikeYYC (organization/handle)2. Elbow River (location)3. Stanley Park (location)"
            "Reasoning:An account that reunites owners with lost bikes in Calgary shares a found bicycle frame. The "
            "Elbow River and Stanley Park are places in Calgary where it was found; the image shows the bike."
        ),
    ),
    (
        (
            "@PerSources14 Gregg Popovich was asked about Becky Hammon and the social progress the NBA has made . "
            "Via : @SBNationNBA"
        ),
        "the nba's most famous quote",
        (
            "Named entities:1. PerSources14 (person/handle)2. Gregg Popovich (person/coach)3. Becky Hammon "
            "(person/coach)4. NBA (organization/league)5. SBNationNBA (organization/handle)Reasoning:The San Antonio "
            "Spurs coach Gregg Popovich talks about his assistant Becky Hammon, the first woman to coach full time in "
            "the NBA, the basketball league. SBNationNBA is the sports site the quote comes from."
        ),
    ),
    (
        "RT @Telegraph : What happened at the very first #Oscars in 1929 . @MartinChilton reports",
        "three men and a woman in formal attire are standing together",
        (
            "Named entities:1. Telegraph (news organization/handle)2. Oscars (event/award)3. MartinChilton "
            "(person/journalist)Reasoning:The Telegraph newspaper shares an article by its journalist Martin "
            "Chilton about the first Academy Awards ceremony, the Oscars, held in 1929; the image shows guests in "
            "formal attire at the ceremony."
        ),
    ),
]


class LLMError(Exception):
    """A post the endpoint could not answer: ``reason`` says why (the last failure, after all tries)."""


def user_message(text: str, caption: str | None) -> str:
    return f"Post: {text}\nImage caption: {caption or '(no image caption)'}"


def messages(text: str, caption: str | None) -> list[dict]:
    """The chat: the instructions, the worked examples, then the post."""
    chat = [{"role": "system", "content": SYSTEM}]
    for example_text, example_caption, answer in EXAMPLES:
        chat.append({"role": "user", "content": user_message(example_text, example_caption)})
        chat.append({"role": "assistant", "content": answer})
    chat.append({"role": "user", "content": user_message(text, caption)})
    return chat


def completions_url(endpoint: str) -> str:
    """``http://host:8080/v1`` (or the full ``.../chat/completions``) → the chat-completions URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/chat/completions") else endpoint + "/chat/completions"


@dataclass
class ChatClient:
    """Asks one chat-completions endpoint; ``ask`` retries with backoff."""

    endpoint: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    retries: int = 4  # tries after the first
    backoff: float = 1.0  # seconds before the first retry; doubled each time (with jitter)
    max_wait: float = 30.0  # no wait (backoff or Retry-After) is longer
    max_tokens: int = 400

    def ask(self, text: str, caption: str | None = None) -> str:
        """The LLM's knowledge about a post, on one line.

        Raises:
            LLMError: every try failed (HTTP error, timeout, malformed or empty answer).
        """
        body = json.dumps(
            {
                "model": self.model,
                "messages": messages(text, caption),
                "temperature": 0,
                "max_tokens": self.max_tokens,
            }
        ).encode("utf-8")
        reason = "not tried"
        for attempt in range(self.retries + 1):
            wait = None
            try:
                return self._post(body)
            except _Retry as err:
                reason, wait = err.reason, err.wait
            if attempt == self.retries:
                break
            pause = self.backoff * 2**attempt * (0.5 + random.random() / 2)
            time.sleep(min(self.max_wait, wait if wait is not None else pause))
        raise LLMError(f"{reason} (after {self.retries + 1} tries)")

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            completions_url(self.endpoint), data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            retry_after = err.headers.get("Retry-After") if err.headers else None
            wait = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
            raise _Retry(f"HTTP {err.code} {err.reason}", wait) from None
        except TimeoutError:
            raise _Retry(f"no answer within {self.timeout:g} s") from None
        except urllib.error.URLError as err:
            raise _Retry(f"cannot reach {self.endpoint}: {err.reason}") from None
        except OSError as err:  # a connection reset mid-answer
            raise _Retry(f"connection failed: {err}") from None
        return _content(raw)


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def _content(raw: bytes) -> str:
    """``choices[0].message.content`` of a chat-completions answer, whitespace folded to single spaces."""
    try:
        answer = json.loads(raw)
        content = answer["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Retry(f"malformed answer: not JSON ({raw[:60]!r})") from None
    except (KeyError, IndexError, TypeError):
        raise _Retry("malformed answer: no choices[0].message.content") from None
    if not isinstance(content, str) or not content.strip():
        raise _Retry("empty answer")
    return " ".join(content.split())
