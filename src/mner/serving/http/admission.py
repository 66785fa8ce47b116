"""What a request may carry and how many may be in at once: ``Limits``, and ``Admission``, which lets requests in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from starlette.requests import Request

from mner.serving.http.schema import FIELDS, RequestError, default_max_chars


@dataclass(frozen=True)
class Limits:
    """What one request may carry (over a limit: a 413 naming it), and how many may queue (over: a 503).
    ``max_chars``: the longest text by field (those not given keep their defaults, ``default_max_chars``)."""

    max_chars: Mapping[str, int] = field(default_factory=default_max_chars)
    max_image_bytes: int = 10 * 1024 * 1024
    max_pending: int = 64  # requests in the service at once (reading or waiting to be tagged); more get 503
    max_buffered_bytes: int = 128 * 1024 * 1024  # request bodies held at once (announced sizes); more get 503
    max_batch: int = 16  # posts tagged in one batch
    batch_wait_ms: int = 5  # how long the first post of a batch waits for others to join it

    def __post_init__(self):
        unknown = sorted(set(self.max_chars) - set(default_max_chars()))
        if unknown:
            raise ValueError(f"Limits.max_chars: unknown field(s) {unknown}; expected some of {FIELDS}")
        object.__setattr__(self, "max_chars", {**default_max_chars(), **self.max_chars})
        values = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "max_chars"]
        values += [(f"max_chars[{name!r}]", n) for name, n in self.max_chars.items()]
        for name, value in values:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: the image as base64, the text and caption JSON-escaped, some slack."""
        base64_image = (self.max_image_bytes + 2) // 3 * 4
        return base64_image + 12 * sum(self.max_chars.values()) + 64 * 1024


@dataclass
class Ticket:
    """One request's share of the service: the bytes of its body held so far, and whether it has a place."""

    held: int = 0
    entered: bool = False


class Admission:
    """Requests let in in two steps, so that clients that stall cannot use up the service for working ones.
    A body's bytes are counted out of ``max_buffered_bytes`` as they arrive (``hold``), not as announced: a
    client that announces a large Content-Length and stalls holds only what it sent until ``--read-timeout``
    cuts it off (10 sockets announcing 13.4 MB each made every request 503 for 30 s: issue #32, D17). A request
    whose announced body would not fit in what is free now is refused at once, before a byte is read (503
    with Retry-After), and one whose bytes go over while they arrive is refused then. Once its body is in, a
    request takes one of ``max_pending`` places (the requests being prepared and tagged): over, 503; a client
    that stalls never holds a place (64 such sockets made every request 503 for 30 s: issue #25). Used on the
    event loop's thread only."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.requests = 0
        self.bytes = 0

    def admit(self, request: Request) -> Ticket:
        """Let a request start sending its body; it holds no bytes yet.

        Raises:
            RequestError: 400 (a Content-Length that is not a number), 413 (one over the body limit), 503 (the
            body announced would not fit in the bytes free now).
        """
        limits = self.limits
        announced = request.headers.get("content-length")
        if announced is None:  # a chunked body: counted as it arrives
            return Ticket()
        if not announced.strip().isdigit():
            raise RequestError(400, f"Content-Length {announced!r} is not a number of bytes")
        if int(announced) > limits.max_body_bytes:
            raise RequestError(
                413,
                f"request body is {int(announced):,} bytes, over the {limits.max_body_bytes:,}-byte "
                "limit (an image, the text, caption and context)",
            )
        if self.bytes + int(announced) > limits.max_buffered_bytes:
            raise self._busy()
        return Ticket()

    def hold(self, ticket: Ticket, size: int) -> None:
        """Count ``size`` more bytes of a request's body, as they arrive.

        Raises:
            RequestError: 503, the bodies held would be over ``max_buffered_bytes``.
        """
        if self.bytes + size > self.limits.max_buffered_bytes:
            raise self._busy()
        self.bytes += size
        ticket.held += size

    def enter(self, ticket: Ticket) -> None:
        """Take a place for a request whose body is in.

        Raises:
            RequestError: 503, ``max_pending`` requests are in already.
        """
        if self.requests >= self.limits.max_pending:
            raise self._busy()
        self.requests += 1
        ticket.entered = True

    def _busy(self) -> RequestError:
        limits = self.limits
        return RequestError(
            503,
            f"server busy: {self.requests} requests in progress (at most {limits.max_pending}, holding at most "
            f"{limits.max_buffered_bytes:,} bytes of bodies); retry later",
            {"Retry-After": "1"},
        )

    def release(self, ticket: Ticket) -> None:
        """Give back what a request held, once it is answered (or gone)."""
        self.requests -= ticket.entered
        self.bytes -= ticket.held
        ticket.held, ticket.entered = 0, False
