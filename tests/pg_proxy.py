"""A TCP proxy in front of the test PostgreSQL server that can cut a connection on purpose.

It forwards PostgreSQL's wire protocol unchanged until it is armed with a predicate on what the
client sends. The first client data that matches is then either

* forwarded and executed by the server, with the server's reply withheld: once that reply is
  complete (its ReadyForQuery message) the proxy closes the connection. The client sees its
  connection die in the middle of a statement whose COMMIT did land: the ambiguous outcome
  that a failover or a network cut produces, made deterministic; or
* with ``lose_request=True``, not forwarded at all: the connection is closed at once, and the
  statement never reached the server.

The predicate sees each chunk the client sends together with the end of the chunk before (if
that one was sent while armed too), so a marker split across two chunks is still found.

:meth:`ReplyDroppingProxy.outage` stands for a server restart instead: every connection is
cut, and for a while each new one is closed as soon as it is accepted.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import sqlalchemy as sa

__all__ = ["ReplyDroppingProxy", "reply_dropping_proxy"]

_READY_FOR_QUERY = b"Z"
_TAIL = 256  # bytes of the previous chunk the predicate also sees


class ReplyDroppingProxy:
    """Listens on 127.0.0.1 and forwards every connection to *upstream* (host, port)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: Callable[[bytes], bool] | None = None
        self._lose_request = False
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        #: How many connections were cut (a reply withheld, or a request lost).
        self.dropped = 0
        #: Errors met while connecting to the server (a test should find none).
        self.errors: list[OSError] = []
        #: Connections refused during an outage.
        self.refused = 0
        self._down_until = 0.0
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def arm(self, matches: Callable[[bytes], bool], *, lose_request: bool = False) -> None:
        """Cut the connection of the next client data for which *matches* is true.

        By default after the server executed it (its reply is lost); with *lose_request*,
        before it reaches the server.
        """
        with self._lock:
            self._armed, self._lose_request = matches, lose_request

    def outage(self, seconds: float) -> None:
        """Cut every connection now, and refuse new ones for *seconds* (a server restart)."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def url(self, url: str) -> str:
        """Return *url* pointing at this proxy instead of the server.

        In clear text (``sslmode=disable``), so that the proxy can read what the client sends.
        """
        parsed = sa.make_url(url).set(host="127.0.0.1", port=self.port)
        parsed = parsed.update_query_dict({"sslmode": "disable"})
        return parsed.render_as_string(hide_password=False)

    def close(self) -> None:
        """Stop listening and close every forwarded connection."""
        self._closed.set()
        _close(self._listener)  # shutdown() first: close() alone leaves accept() blocked
        self._acceptor.join(timeout=5)
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            _close(sock)
        for thread in threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                self.refused += 1
                _close(client)  # as a server that is going down or not up yet
                continue
            try:
                server = socket.create_connection(self._upstream, timeout=10)
                server.settimeout(None)
            except OSError as exc:  # the client then sees its connection refused, not a hang
                self.errors.append(exc)
                _close(client)
                continue
            victim = threading.Event()  # set when this connection's next reply is withheld
            threads = [
                threading.Thread(target=target, args=(client, server, victim), daemon=True)
                for target in (self._client_to_server, self._server_to_client)
            ]
            with self._lock:
                self._sockets += [client, server]
                self._threads += threads
            for thread in threads:
                thread.start()

    def _client_to_server(
        self, client: socket.socket, server: socket.socket, victim: threading.Event
    ) -> None:
        tail = b""
        lose = False
        while data := _recv(client):
            with self._lock:
                matched = self._armed is not None and self._armed(tail + data)
                if matched:
                    self._armed = None
                    lose = self._lose_request
                # Only what was sent while armed may complete a marker: a chunk from before
                # (the COMMIT of an earlier transaction, say) must not.
                tail = data[-_TAIL:] if self._armed is not None else b""
            if matched and lose:
                with self._lock:
                    self.dropped += 1
                _close(client)
                _close(server)
                return
            if matched:
                victim.set()  # before the data goes out: the reply may come back at once
            try:
                server.sendall(data)
            except OSError:
                return

    def _server_to_client(
        self, client: socket.socket, server: socket.socket, victim: threading.Event
    ) -> None:
        pending = b""
        while data := _recv(server):
            if not victim.is_set():
                try:
                    client.sendall(data)
                except OSError:
                    return
                continue
            # The reply to the matched data: keep it from the client until it is whole, then
            # cut the connection as a network failure would.
            pending += data
            if _ends_ready(pending):
                with self._lock:
                    self.dropped += 1
                _close(client)
                _close(server)
                return


def _ends_ready(stream: bytes) -> bool:
    """True when *stream* (whole server messages) holds a ReadyForQuery message."""
    at = 0
    while at + 5 <= len(stream):
        kind = stream[at : at + 1]
        (length,) = struct.unpack("!I", stream[at + 1 : at + 5])
        if kind == _READY_FOR_QUERY and at + 1 + length <= len(stream):
            return True
        at += 1 + length
    return False


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    with suppress(OSError):  # already shut down by the other side
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def reply_dropping_proxy(pg_url: str) -> Iterator[ReplyDroppingProxy]:
    """A proxy in front of *pg_url*'s server, closed afterwards."""
    parsed = sa.make_url(pg_url)
    proxy = ReplyDroppingProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    try:
        yield proxy
    finally:
        proxy.close()
    assert proxy.errors == [], proxy.errors
