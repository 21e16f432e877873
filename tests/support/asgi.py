"""A stand-in for MLflow's app and an ASGI client, to drive the gateway without a server."""

from __future__ import annotations

import asyncio
from typing import Any

from chaos_pyfunc.http.auth import KeyRing
from chaos_pyfunc.http.gateway import Gateway, Limits
from chaos_pyfunc.http.metrics import Metrics


class Client:
    """An ASGI ``receive`` giving ``chunks`` one message each, then the given last message."""

    def __init__(self, chunks: list[bytes], last: dict[str, Any] | None = None) -> None:
        self.messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                         for i, c in enumerate(chunks)]
        if last is not None:
            self.messages[-1]["more_body"] = True
            self.messages.append(last)
        self.received = 0

    async def __call__(self) -> dict[str, Any]:
        message = self.messages[self.received]
        self.received += 1
        return message


class App:
    """A stand-in for MLflow's app: answers ``status`` with ``headers``, or raises ``error``."""

    def __init__(self, status: int = 200, body: bytes = b'{"predictions": []}',
                 headers: list[tuple[bytes, bytes]] | None = None, error: Exception | None = None) -> None:
        self.status, self.body, self.error = status, body, error
        self.headers = headers or [(b"content-type", b"application/json")]
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        await receive()
        if self.error is not None:
            raise self.error
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def call(app: App, method: str, path: str, body: bytes = b"",
         content_type: bytes | None = b"application/json", keys: KeyRing | None = None,
         authorization: str | None = None, metrics: Metrics | None = None,
         request_id: str | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    gateway = Gateway(app, Limits(max_body_bytes=4096, max_rows=10, max_reason_rows=5, max_in_flight=2,
                                  request_timeout_seconds=5.0, body_timeout_seconds=5.0),
                      {"openapi": "3.1.0"}, keys=keys, metrics=metrics)
    headers = [] if content_type is None else [(b"content-type", content_type)]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(gateway(scope, Client([body]), send))
    start, *bodies = sent
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in bodies)
