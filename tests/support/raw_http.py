"""HTTP over a bare socket, for what ordinary clients cannot do: announce a body and never send
it, so a test can see that the server answers before it has read the body (an event, not a
timing)."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def announce_body(base_url: str, path: str, headers: dict[str, str], sent: bytes = b"",
                  timeout: float = 30.0) -> RawAnswer:
    """POST ``path`` with ``headers`` (a Content-Length or chunked encoding among them), send only
    ``sent`` of the body, then read the answer. A server that waits for the rest of the body
    never answers, and this raises TimeoutError after ``timeout``."""
    url = urlsplit(base_url)
    head = f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + sent)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return RawAnswer(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
