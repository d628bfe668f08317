"""A TCP proxy in front of the test PostgreSQL server that can lose a reply on purpose.

It forwards PostgreSQL's wire protocol unchanged until it is armed with a predicate on what the
client sends. The first client message that matches is forwarded and executed by the server,
but the server's reply is withheld: once the reply is complete (its ReadyForQuery message),
the proxy closes that connection. The client sees its connection die in the middle of a
statement whose COMMIT did land: the ambiguous outcome that a failover or a network cut
produces, made deterministic.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import sqlalchemy as sa

__all__ = ["ReplyDroppingProxy", "reply_dropping_proxy"]

_READY_FOR_QUERY = b"Z"


class ReplyDroppingProxy:
    """Listens on 127.0.0.1 and forwards every connection to *upstream* (host, port)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: Callable[[bytes], bool] | None = None
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        #: How many replies were withheld (each closed its connection).
        self.dropped = 0
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def arm(self, matches: Callable[[bytes], bool]) -> None:
        """Withhold the reply to the next client message for which *matches* is true."""
        with self._lock:
            self._armed = matches

    def url(self, url: str) -> str:
        """Return *url* pointing at this proxy instead of the server (in clear text, so that
        the proxy can read what the client sends)."""
        parsed = sa.make_url(url).set(host="127.0.0.1", port=self.port)
        parsed = parsed.update_query_dict({"sslmode": "disable"})
        return parsed.render_as_string(hide_password=False)

    def close(self) -> None:
        """Stop listening and close every forwarded connection."""
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)
        for thread in self._threads[1:]:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            victim = threading.Event()  # set when this connection's next reply is withheld
            with self._lock:
                self._sockets += [client, server]
            for target in (self._client_to_server, self._server_to_client):
                thread = threading.Thread(target=target, args=(client, server, victim), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _client_to_server(
        self, client: socket.socket, server: socket.socket, victim: threading.Event
    ) -> None:
        while data := _recv(client):
            with self._lock:
                if self._armed is not None and self._armed(data):
                    self._armed = None
                    victim.set()
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
            # The reply to the matched message: keep it from the client until it is whole,
            # then cut the connection as a network failure would.
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
