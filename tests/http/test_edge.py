"""The connection edge (edge.py) without a server: one request fed to the protocol over a fake
transport. The e2e tests (tests/e2e/test_edge.py, test_slow_uploads.py) hold the rest on a real
server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from chaos_pyfunc.http.edge import TOO_MANY_CONNECTIONS, protocol_class


class Transport(asyncio.Transport):
    """What the protocol writes, kept."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 5000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class Refusals:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def refused(self, reason: str) -> None:
        self.reasons.append(reason)


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def exchange(limit: int | None, other_connections: int, refusals: Refusals) -> bytes:
    """One GET on a new connection while ``other_connections`` are open: what the server wrote."""

    async def run() -> bytes:
        state = ServerState()
        state.connections.update(object() for _ in range(other_connections))  # type: ignore[misc]
        config = Config(app, limit_concurrency=limit, log_config=None, proxy_headers=False)
        protocol = protocol_class(10.0, refusals)(  # type: ignore[arg-type]
            config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET /ping HTTP/1.1\r\nHost: chaos\r\n\r\n")
        await asyncio.gather(*state.tasks)
        protocol.connection_lost(None)
        return bytes(transport.written)

    return asyncio.run(run())


@pytest.mark.parametrize(("limit", "others"), [(None, 5), (3, 1)], ids=["no_limit", "under_the_limit"])
def test_a_request_within_the_connection_limit_reaches_the_app(limit: int | None, others: int) -> None:
    refusals = Refusals()
    written = exchange(limit, others, refusals)
    assert written.startswith(b"HTTP/1.1 200 ") and written.endswith(b"\r\n\r\nok")
    assert refusals.reasons == []


def test_a_request_past_the_connection_limit_gets_a_json_503() -> None:
    """uvicorn's own answer at limit_concurrency (max_connections) is plain text: ours is JSON."""
    refusals = Refusals()
    written = exchange(3, 2, refusals)  # this connection is the third
    head, _, body = written.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == "http/1.1 503 service unavailable"
    assert {"content-type: application/json", "retry-after: 1", "connection: close"} <= set(lines)
    assert json.loads(body) == {"error_code": "TEMPORARILY_UNAVAILABLE", "message": TOO_MANY_CONNECTIONS}
    assert refusals.reasons == ["busy_or_unavailable"]
