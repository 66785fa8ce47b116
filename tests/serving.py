"""Test helpers for the HTTP service: a real uvicorn server on a free 127.0.0.1 port, a stand-in chat endpoint's
server, and test photos."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def chat_endpoint(handler, wait_for_handlers: bool = False) -> Iterator[str]:
    """Serve a ``BaseHTTPRequestHandler`` class (a stand-in chat-completions server) on a free 127.0.0.1 port, on a
    thread; yields its OpenAI-style base URL (``http://127.0.0.1:PORT/v1``). A client that hung up is no error of
    the server's (nothing printed); ``wait_for_handlers``: closing waits for the requests still being answered, so
    none writes to stderr while a later test captures it."""
    import sys
    from http.server import ThreadingHTTPServer

    class Server(ThreadingHTTPServer):
        daemon_threads = not wait_for_handlers

        def handle_error(self, request, client_address):
            if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def running_server(app, read_timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` as ``mner serve`` does (``mner.serving.service.server_config``) on a thread; yields its base URL."""
    import uvicorn

    from mner.serving.service import server_config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the OS picks a free port; uvicorn listens on this very socket, no race
    # log_config=None: uvicorn's records reach the root logger, so caplog sees them
    server = uvicorn.Server(
        server_config(app, read_timeout=read_timeout, log_config=None, log_level="info", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def photo_jpeg(name: str = "astronaut", size: tuple[int, int] | None = None, quality: int = 90) -> bytes:
    """A ``skimage.data`` photo as JPEG bytes, resized to ``size`` (width, height) if given."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(getattr(data, name)())
    if size is not None:
        image = image.resize(size)
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()
