"""A real chat-completions HTTP server on 127.0.0.1 for tests, scripted per test.

The OpenAI SDK (or any HTTP client) talks to it over a socket, so tests exercise the real
request encoding, status-code mapping and timeouts instead of a mocked SDK::

    with FakeLLMServer() as server:
        server.enqueue_completion('{"decision": "publish", ...}', prompt_tokens=120)
        server.enqueue_error(429, "slow down")
        client = openai.OpenAI(base_url=server.url, api_key="test", max_retries=0)
        ...
        assert server.requests[0].json["model"] == "gpt-4o-mini"

Each ``POST /v1/chat/completions`` takes the next queued response (first in, first out) and
is recorded in :attr:`FakeLLMServer.requests`. With nothing queued it answers 500 with a
message saying so, so a test that calls more often than it scripted fails loudly. Other paths
answer 404 (and are recorded too).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["FakeLLMServer", "RecordedRequest", "chat_completion_body"]

CHAT_PATH = "/v1/chat/completions"

# Builds (status, body bytes, extra headers) from the request it answers.
_Responder = Callable[["RecordedRequest"], tuple[int, bytes, dict[str, str]]]
_ids = itertools.count(1)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received.

    Attributes:
        method: The HTTP method ("POST", ...).
        path: The request path, query string included.
        headers: Header names lower-cased.
        body: The raw body.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class _Scripted:
    respond: _Responder
    delay: float = 0.0


@dataclass
class _State:
    queue: deque[_Scripted] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set on close so handlers sleeping out a scripted delay wake up at once.
    closing: threading.Event = field(default_factory=threading.Event)


def chat_completion_body(
    content: str | None,
    *,
    model: str = "gpt-4o-mini",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    response_id: str | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """Return a chat-completion response body as the OpenAI API sends it."""
    return {
        "id": response_id or f"chatcmpl-fake-{next(_ids)}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _encode(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no keep-alive socket outlives a test.
    protocol_version = "HTTP/1.0"
    server: _Server

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length),
        )
        scripted = self.server.take(request)
        if scripted.delay and self.server.state.closing.wait(scripted.delay):
            return
        status, body, headers = scripted.respond(request)
        try:
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout fired); that is what the test wanted


class _Server(ThreadingHTTPServer):
    # Non-daemon handler threads are joined by server_close(), so none outlives its test.
    daemon_threads = False
    state: _State

    def take(self, request: RecordedRequest) -> _Scripted:
        with self.state.lock:
            self.state.requests.append(request)
            if request.method != "POST" or request.path.split("?")[0] != CHAT_PATH:
                return _Scripted(_fixed(404, _error_body(f"no route {request.path}", "not_found")))
            if self.state.queue:
                return self.state.queue.popleft()
        message = f"FakeLLMServer has no response queued for request #{len(self.requests())}"
        return _Scripted(_fixed(500, _error_body(message, "server_error")))

    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.state.requests)


def _fixed(status: int, body: object, headers: Mapping[str, str] | None = None) -> _Responder:
    encoded = _encode(body)
    return lambda _request: (status, encoded, dict(headers or {}))


def _error_body(message: str, error_type: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


class FakeLLMServer:
    """A chat-completions server on 127.0.0.1 in a background thread; use it as a context manager.

    Attributes:
        url: The base URL to give an OpenAI client (``http://127.0.0.1:<port>/v1``).
    """

    def __init__(self) -> None:
        self._state = _State()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self._state
        self._thread = threading.Thread(
            # A short poll keeps shutdown() (each test's teardown) fast; the default is 0.5 s.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="FakeLLMServer",
            daemon=True,
        )
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}/v1"

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        self._state.closing.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        return self._server.requests()

    @property
    def pending(self) -> int:
        """How many queued responses were not consumed yet."""
        with self._state.lock:
            return len(self._state.queue)

    def enqueue(
        self,
        body: object = None,
        *,
        status: int = 200,
        delay: float = 0.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue a raw response: *body* as bytes/str sent verbatim, anything else as JSON."""
        self._push(_Scripted(_fixed(status, b"" if body is None else body, headers), delay))

    def enqueue_completion(
        self,
        content: str | Mapping[str, Any] | None,
        *,
        model: str | None = None,
        prompt_tokens: int = 10,
        completion_tokens: int = 5,
        response_id: str | None = None,
        finish_reason: str = "stop",
        delay: float = 0.0,
    ) -> None:
        """Queue a 200 chat completion whose message is *content*.

        A mapping is sent JSON-encoded (the usual JSON-mode answer); None sends a null
        content. ``model=None`` echoes the model the request asked for, as a real server does.
        """
        text = json.dumps(content) if isinstance(content, Mapping) else content

        def respond(request: RecordedRequest) -> tuple[int, bytes, dict[str, str]]:
            body = chat_completion_body(
                text,
                model=model or str(request.json.get("model", "")),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                response_id=response_id,
                finish_reason=finish_reason,
            )
            return 200, _encode(body), {}

        self._push(_Scripted(respond, delay))

    def enqueue_error(
        self,
        status: int,
        message: str = "scripted error",
        *,
        error_type: str = "server_error",
        delay: float = 0.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue an error response shaped like the OpenAI API's (``{"error": {...}}``)."""
        self.enqueue(_error_body(message, error_type), status=status, delay=delay, headers=headers)

    def _push(self, scripted: _Scripted) -> None:
        with self._state.lock:
            self._state.queue.append(scripted)
