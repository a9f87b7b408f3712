"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for request headers.

uvicorn closes a kept-alive connection that idles, but not one that trickles its headers a byte at
a time (slow loris): such a connection would hold a slot for ever. Here a connection that has not
sent a request's complete headers ``header_timeout`` seconds after it opened (or after its last
reply) is answered 408 and closed, quietly: a log line per connection would be the attack's echo.
uvicorn's access log stays off whatever its logger's set-up: its lines hold the query string.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT = 10.0
_TIMEOUT_REPLY = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderDeadlineProtocol(H11Protocol):
    """H11Protocol closing connections that do not finish a request's headers in time; the deadline
    is the uvicorn Config's ``header_timeout`` attribute (set by eegfm-serve), else the default."""

    def __init__(self, config, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        # uvicorn's access line carries the query string (a client's file name): api.metrics logs instead
        self.access_log = False
        self.header_timeout = float(getattr(config, "header_timeout", DEFAULT_HEADER_TIMEOUT))
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_headers():
            if self._header_deadline is None:
                self._arm_header_deadline()
        else:
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()  # the next request's headers are due within the deadline too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or not self._waiting_for_headers():
            return
        if self.cycle is None:  # nothing answered on this connection yet: say why it closes
            self.transport.write(_TIMEOUT_REPLY)
        self.transport.close()
