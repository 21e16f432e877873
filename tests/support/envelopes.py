"""A stand-in for Sentry's ingestion: an HTTP server on loopback that keeps every envelope the
real sentry-sdk sends it, raw and decompressed, to search for what must not leave."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Envelopes:
    dsn: str
    received: list[bytes] = field(default_factory=list)  # every body, decompressed
    raw: list[bytes] = field(default_factory=list)

    def events(self) -> list[bytes]:
        """The envelopes holding an event (not sessions or client reports)."""
        return [e for e in self.received if b'"type":"event"' in e or b'"type": "event"' in e]

    def all_bytes(self) -> bytes:
        return b"\n".join(self.received + self.raw)


@contextmanager
def recording_sentry() -> Iterator[Envelopes]:
    holder: list[Envelopes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            encoding = self.headers.get("Content-Encoding", "")
            plain = gzip.decompress(body) if encoding == "gzip" else (
                zlib.decompress(body) if encoding == "deflate" else body)
            holder[0].raw.append(body + b"\n" + str(self.headers).encode())
            holder[0].received.append(plain)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Envelopes(f"http://publickey@127.0.0.1:{server.server_port}/1"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
