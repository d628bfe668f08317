"""Async stages: a reviewer or polisher whose method is ``async def``.

The engine is synchronous: a pool thread carries each run and calls its stages inline. When a
stage's call returns an awaitable (an ``async def`` method's coroutine), the carrier hands it
to one event loop per process, kept on a daemon thread of its own and started at the first
such call, and blocks until it is done, as it would on a synchronous call.

One loop, not one per carrier thread: an async client (``httpx.AsyncClient``,
``openai.AsyncOpenAI``) keeps its pooled connections on the loop that opened them, so a
client shared by concurrent runs must meet the same loop on every call. Concurrent runs'
coroutines then share that loop, as the requests of one async application do.

Each coroutine is bounded by its attempt's deadline (``asyncio.timeout``): past it, it is
cancelled, so its request is closed rather than left to run on (and bill), and the attempt
fails with the same :class:`StageTimeoutError` as a synchronous call that ran out of time.
A coroutine that blocks the loop (a ``time.sleep`` in it) stalls the other async stages too;
the engine's own watch still gives its attempt up at the deadline.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable
from typing import Any

from story_fsm.errors import StageTimeoutError

__all__ = ["LOOP_THREAD_NAME", "await_answer", "stage_loop"]

#: The name of the thread that runs the async stages' event loop.
LOOP_THREAD_NAME = "story-fsm-async-stages"


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


class _StageLoop:
    """The process's one loop for async stages, and the thread that runs it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        """Return the loop, starting it (and its thread) on first use."""
        with self._lock:
            # Not running: never started, or its thread died (nothing should end it, but a
            # dead loop would leave every later async stage waiting for its deadline).
            if self._loop is None or not self._loop.is_running():
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                # A daemon: a coroutine that never ends must not keep a finished process
                # alive (the carriers' own threads are daemons too).
                threading.Thread(
                    target=_serve, args=(loop, ready), name=LOOP_THREAD_NAME, daemon=True
                ).start()
                ready.wait()
                self._loop = loop
            return self._loop

    def forget(self) -> None:
        """Drop the loop (in a forked child); the next :meth:`get` starts another."""
        # A forked child has the parent's loop object but not its thread: a coroutine
        # handed to it would never run. The child starts a loop of its own when it needs one.
        self._lock = threading.Lock()
        self._loop = None


_the_loop = _StageLoop()
os.register_at_fork(after_in_child=_the_loop.forget)


def stage_loop() -> asyncio.AbstractEventLoop:
    """Return the process's event loop for async stages, starting it on first use."""
    return _the_loop.get()


class _Exit:
    """A ``KeyboardInterrupt`` or ``SystemExit`` the coroutine raised, carried back as a value.

    Raised inside a task, asyncio lets them out of ``run_forever`` and the loop's thread
    would end with them; re-raised on the carrier instead, they end the run as they do from a
    synchronous stage.
    """

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _bounded(answer: Awaitable[Any], left: float | None, late: str) -> Any:
    try:
        if left is None:  # a call no deadline watches (a stage run outside the engine's carry)
            return await answer
        timeout = asyncio.timeout(left)
        try:
            async with timeout:
                return await answer
        except TimeoutError:
            if timeout.expired():
                raise StageTimeoutError(late) from None
            raise  # the stage's own TimeoutError (an upstream's): a failure with its own text
    except (KeyboardInterrupt, SystemExit) as exc:
        return _Exit(exc)


def await_answer(answer: Awaitable[Any], deadline: float | None, late: str) -> Any:
    """Run *answer* on the stage loop until done, or until *deadline* (``time.monotonic()``).

    The coroutine runs in a copy of the calling thread's context, so ``stage_time_left()``
    and structlog's bound context variables read as they would in a synchronous stage.

    Raises:
        StageTimeoutError: Past *deadline*, with the text *late*; the coroutine was cancelled.
        Exception: Whatever the coroutine raised.
    """
    left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    done = asyncio.run_coroutine_threadsafe(_bounded(answer, left, late), stage_loop()).result()
    if isinstance(done, _Exit):
        raise done.error
    return done
