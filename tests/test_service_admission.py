"""The service's admission against clients that stall, with real sockets on a real server (issue #32, D17):
a body's bytes are counted as they arrive, so an announced Content-Length alone holds nothing."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from mner.serving.service import Limits, create_app
from tests.serving import running_server


@pytest.fixture(scope="module")
def pipeline():
    from mner.serving.pipeline import Pipeline

    return Pipeline()


def headers(length: int) -> bytes:
    return (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def wait_for_held(app, predicate, seconds: float = 10.0) -> int:
    """The bytes of bodies the service holds, once ``predicate`` is true of them (a deadline, not a sleep)."""
    deadline = time.monotonic() + seconds
    while not predicate(app.state.admission.bytes):
        assert time.monotonic() < deadline, f"the service holds {app.state.admission.bytes:,} bytes"
        time.sleep(0.02)
    return app.state.admission.bytes


def answer_of(sock: socket.socket) -> bytes:
    """What the server sent on ``sock`` up to the end of its JSON error (or the connection's end)."""
    answer = b""
    while b"}" not in answer and (chunk := sock.recv(65536)):
        answer += chunk
    return answer


def test_ten_sockets_announcing_large_bodies_and_stalling_do_not_lock_out_others(pipeline):
    """D17: 10 sockets announcing 13,421,772 bytes each (the default budget is 128 MiB) and sending one byte
    made every /v1/tag 503 until the read deadline cut them off."""
    app = create_app(pipeline)  # the default limits, as `mner serve` has them
    with running_server(app, read_timeout=20) as base:
        port = int(base.rsplit(":", 1)[1])
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(10)]
        try:
            for sock in stalled:
                sock.sendall(headers(13_421_772) + b"{")
            held = wait_for_held(app, lambda n: n >= 10)
            with httpx.Client(base_url=base, timeout=10) as client:
                answers = [client.post("/v1/tag", json={"text": "Obama in Berlin"}) for _ in range(3)]
        finally:
            for sock in stalled:
                sock.close()
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert held == 10  # one byte each: what they sent, not what they announced
    assert answers[0].json()["entities"][0]["text"] == "Obama"


def test_the_bytes_that_arrive_still_bound_the_bodies_held(pipeline):
    """The budget holds for bytes really sent: a body that would not fit in what is free is refused before it
    is read, one that goes over while it arrives is refused then, and a client that leaves gives its bytes back."""
    app = create_app(pipeline, Limits(max_buffered_bytes=1_000_000))
    with running_server(app, read_timeout=20) as base:
        port = int(base.rsplit(":", 1)[1])
        with (
            socket.create_connection(("127.0.0.1", port), timeout=20) as big,
            socket.create_connection(("127.0.0.1", port), timeout=20) as grower,
        ):
            big.sendall(headers(900_000) + b"{" + b" " * 499_999)  # 500,000 bytes of 900,000 ...
            wait_for_held(app, lambda n: n >= 500_000)
            grower.sendall(headers(400_000) + b"{")  # 500,001 held + 400,000 fit: let in
            wait_for_held(app, lambda n: n >= 500_001)
            big.sendall(b" " * 300_000)  # ... then 800,000 of 900,000, and a stall
            wait_for_held(app, lambda n: n >= 800_001)
            normal = httpx.post(base + "/v1/tag", json={"text": "Obama in Berlin"}, timeout=10)
            with socket.create_connection(("127.0.0.1", port), timeout=20) as late:
                late.sendall(headers(300_000))  # 800,001 held + 300,000 do not fit: refused before its body
                refused_at_once = answer_of(late)
            try:  # the rest of the grower's body goes over the budget as it arrives
                for size in [20_000] * 19 + [19_999]:
                    grower.sendall(b" " * size)
            except OSError:  # the server answered and closed while the rest was being sent
                pass
            refused_midway = answer_of(grower)
        released = wait_for_held(app, lambda n: n == 0)
    assert normal.status_code == 200
    assert refused_at_once.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in refused_at_once.lower()
    assert refused_midway.startswith(b"HTTP/1.1 503 ")
    assert b"holding at most 1,000,000 bytes of bodies" in refused_midway
    assert released == 0
