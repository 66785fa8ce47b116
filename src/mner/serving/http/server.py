"""Serving the app on uvicorn, with a read deadline per request, and binding its socket first."""

from __future__ import annotations


def server_config(app, host: str = "127.0.0.1", port: int = 8000, read_timeout: float = 30.0, **options):
    """uvicorn's config for the app, with a deadline on reading each request: a client that has not sent its
    whole request (headers and body) ``read_timeout`` seconds after it started is cut off, so stalled or
    trickling clients cannot hold connections (uvicorn alone waits for them forever)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=_deadline_protocol(read_timeout), **options)


def listening_socket(host: str, port: int):
    """A socket bound to ``host:port`` for uvicorn to serve on (``uvicorn.Server.run(sockets=[...])``): binding
    it first lets ``mner serve`` refuse a port in use with one line, before it loads the model.

    Raises:
        OSError: the address cannot be bound (in use, not this machine's, a privileged port).
    """
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts reuse the port
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _deadline_protocol(read_timeout: float):
    """uvicorn's h11 protocol with a read deadline per request (see ``server_config``)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return type("DeadlineProtocol", (_ReadDeadline, H11Protocol), {"read_timeout": read_timeout})


def _request_in(conn) -> bool:
    """Whether the client's side of an h11 connection has sent its whole request (or can send no more)."""
    import h11

    return conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)


class _ReadDeadline:
    """The read deadline, mixed into uvicorn's ``H11Protocol`` (imported only when a server is made)."""

    read_timeout: float

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline = None
        self._arm()

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def handle_events(self) -> None:
        super().handle_events()
        if _request_in(self.conn):
            self._disarm()  # the whole request is in: the time to answer it is the app's

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not _request_in(self.conn) and not self.transport.is_closing():
            self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _read_timed_out(self) -> None:
        import h11

        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state in (h11.DONE, h11.MUST_CLOSE):
            return
        self.logger.info("closing a connection that sent no whole request in %g s", self.read_timeout)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()
