"""The connection-level edge: uvicorn's HTTP/1.1 protocol (h11) with the bounds a server facing
the internet needs and uvicorn lacks.

- A connection that has not sent a complete request head within ``header_timeout_seconds``
  (from its opening, or from the end of the previous answer on a keep-alive connection) is
  closed: with a 408 if it had sent part of a head, silently if it had sent nothing.
- A request head over uvicorn's bound (h11's 16 KiB) gets a JSON 431, a malformed one a JSON 400,
  and a request past the connection limit (uvicorn's ``limit_concurrency``, the setting
  ``max_connections``) a JSON 503 with ``Retry-After: 1``, instead of a bare text answer. The 408,
  the 431 and that 503 are counted in the refusals' metric.
- A connection answered before the client has sent its whole body (a 401, a 404, an early 413)
  is closed: uvicorn would otherwise discard the rest for as long as it comes, and a client
  sending a byte now and then would keep the connection forever. (The gateway bounds the time to
  receive the bodies it reads: ``body_timeout_seconds``.)
- A lingering close: when the server closes a connection whose client may still be sending (an
  early 413, a refused 401), it half-closes, then reads and discards what comes for up to
  LINGER_SECONDS or LINGER_BYTES before closing. A client that sends its whole body before it
  reads (Python's http.client) then gets the answer instead of a connection reset.

SIGTERM is unchanged: uvicorn closes idle connections at once and lets requests in flight finish.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.h11_impl import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE, H11Protocol

from chaos_pyfunc.contract.answers import ERROR_CODES, error_body
from chaos_pyfunc.http.metrics import HEADER_TIMEOUT, HEADER_TOO_LARGE, REFUSALS, Metrics

LINGER_SECONDS = 5.0
LINGER_BYTES = 64 * 1024 * 1024
TOO_MANY_CONNECTIONS = "the server has too many connections open; retry in a second"


def _error(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error_code": code, "message": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: its close() is a lingering close."""

    def __init__(self, transport: asyncio.Transport, protocol: EdgeProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.linger()


class EdgeProtocol(H11Protocol):
    """H11Protocol plus a request-head timeout, JSON 431/400/503 answers and a lingering close."""

    header_timeout_seconds = 10.0
    metrics: Metrics | None = None  # the server's, for the refusals answered here

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's check of the limit answers a plain-text 503; the same check, made as the
        # request starts (its own task counted), answers ours.
        self.connection_limit, self.limit_concurrency = self.limit_concurrency, None
        self._app = self.app
        self.app = self._limited

    async def _limited(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        limit = self.connection_limit
        if limit is None or (len(self.connections) < limit and len(self.tasks) <= limit):
            await self._app(scope, receive, send)
            return
        self.logger.warning("Exceeded concurrency limit.")
        self._refused(REFUSALS[503])
        body = error_body(ERROR_CODES[503], TOO_MANY_CONNECTIONS)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"retry-after", b"1"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._real = transport
        self._lingering = False
        self._discarded = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.header_timeout_seconds, self._head_timed_out)

    def _head_timed_out(self) -> None:
        if self._lingering or self._real.is_closing() or self.conn.their_state is not h11.IDLE:
            return  # a request is in hand (its body and answer have their own bounds)
        if self.conn.trailing_data[0]:
            self._real.write(_error(408, "Request Timeout", "REQUEST_TIMEOUT",
                                    f"the request head was not complete within "
                                    f"{self.header_timeout_seconds:g} s"))
            self._refused(HEADER_TIMEOUT)
        self._real.close()

    def _refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.refused(reason)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.SEND_BODY:  # answered before the body was read whole
            self.transport.close()  # a lingering close: the answer is read, the rest is bounded
            return
        self._arm_head_timer()  # the next head on a keep-alive connection is bounded too

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self._real.close()
            return
        super().data_received(data)

    def eof_received(self) -> None:
        if self._lingering:
            self._real.close()

    def linger(self) -> None:
        """Close once the client has finished sending (EOF), or after the bounds."""
        if self._lingering or self._real.is_closing():
            return
        self._lingering = True
        self._real.resume_reading()  # uvicorn pauses reading while a body is not consumed
        if self._real.can_write_eof():
            self._real.write_eof()  # the answer is complete: the client may read it now
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self._real.close)

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # idle: no need to linger
            self._lingering = True
            self._real.close()
            return
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._lingering = True  # nothing more to read, nothing to close
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        pending = len(self.conn.trailing_data[0])
        limit = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        if pending >= limit:
            answer = _error(431, "Request Header Fields Too Large", "REQUEST_LIMIT_EXCEEDED",
                            f"request head larger than {limit} bytes")
            self._refused(HEADER_TOO_LARGE)
        else:
            answer = _error(400, "Bad Request", "BAD_REQUEST", "not a valid HTTP/1.1 request")
        self._real.write(answer)
        self.transport.close()


def protocol_class(header_timeout_seconds: float, metrics: Metrics | None = None) -> type[EdgeProtocol]:
    """EdgeProtocol with this server's head timeout and metrics, for uvicorn.Config(http=...)."""
    return type("ConfiguredEdgeProtocol", (EdgeProtocol,),
                {"header_timeout_seconds": header_timeout_seconds, "metrics": metrics})
