"""When this process stops serving: set on SIGTERM, read by requests still receiving or scoring; and
when one request's work stops (`checkpoint`, for the worker threads of ``api.jobs``).

uvicorn cancels what is still running when ``--graceful_timeout`` has passed, answering 500 with a
traceback in the log. Requests watch this clock instead and answer 503 (``Connection: close``) just
before, so the cut is a clean reply, and the process exits in time.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time

POLL_SECONDS = 0.5  # how often a waiting request looks at the clock
# The request a worker thread works for (set in the thread's own context by api.jobs): set once the
# request is abandoned, its client gone or the server stopping
CANCELLED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("eegfm_cancelled", default=None)


class StopClock:
    """The monotonic time by which requests in flight must have answered (inf while serving)."""

    def __init__(self) -> None:
        self.deadline = math.inf

    def start(self, grace_seconds: float) -> None:
        """Stopping now: requests answer within ``grace_seconds`` less a margin for the reply."""
        margin = min(1.0, grace_seconds / 2)
        self.deadline = min(self.deadline, time.monotonic() + grace_seconds - margin)

    def left(self) -> float:
        return self.deadline - time.monotonic()


STOP = StopClock()


class StoppingError(Exception):
    """The request did not finish before the server's grace period ran out."""


async def before_stop(awaitable, limit: float = math.inf):
    """``awaitable``'s result; TimeoutError after ``limit`` seconds, StoppingError once the stop
    deadline passes (the awaitable is cancelled in both cases)."""
    task = asyncio.ensure_future(awaitable)
    started = time.monotonic()
    try:
        while True:
            left = min(limit - (time.monotonic() - started), STOP.left())
            if left <= 0:
                raise StoppingError() if STOP.left() <= 0 else TimeoutError()
            done, _ = await asyncio.wait({task}, timeout=min(left, POLL_SECONDS))
            if done:
                return task.result()
    finally:
        if not task.done():
            task.cancel()


class CloseWhenStopping:
    """ASGI middleware: once stopping, replies say ``Connection: close`` (uvicorn closes the
    connection after them but does not say so, and a kept-alive client would try it again)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def closing_send(message) -> None:
            if message["type"] == "http.response.start" and STOP.left() < math.inf:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing_send)


class Abandoned(Exception):
    """The request this work was for is abandoned: its client left, or the server is stopping."""


def checkpoint() -> None:
    """Raise `Abandoned` if the request this thread works for was abandoned; nothing outside a
    request. Called between zip members, decompressed blocks, pipeline windows and recordings: an
    abandoned request's work stops within one of them."""
    cancelled = CANCELLED.get()
    if cancelled is not None and cancelled.is_set():
        raise Abandoned()
