"""A real TCP proxy that can fail: how the tests cut a database away from its clients."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from .server import free_port


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``, with real sockets, until switched off.

    ``stop()`` closes the listener and every live connection, so the port refuses connections
    (as a database that went down); ``start()`` listens on the same port again. Started with
    ``blackhole=True`` it accepts connections and never answers (as a database host that hangs).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._blackhole = False
        # Connections accepted so far: a test waits on it to know that the server has reached
        # for the database (an event it observes), instead of sleeping and hoping.
        self.accepted = 0
        self._accepted_changed = threading.Condition()

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self, blackhole: bool = False) -> None:
        assert self._listener is None, "the proxy is already listening"
        self._blackhole = blackhole
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._stopping.clear()
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Close the listener and all connections; returns once the port refuses connections."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        listener.close()
        with self._lock:
            live, self._sockets = self._sockets, set()
        for sock in live:
            self._close(sock)

    @contextmanager
    def hanging(self) -> Iterator[None]:
        """Inside: every connection is accepted and never answered (a database that hangs),
        and those already open are cut; outside: forwarding again."""
        self.stop()
        self.start(blackhole=True)
        try:
            yield
        finally:
            self.stop()
            self.start()

    def wait_accepted(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` connections in all have been accepted; False on timeout."""
        with self._accepted_changed:
            return self._accepted_changed.wait_for(lambda: self.accepted >= count, timeout)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._accepted_changed:
                self.accepted += 1
                self._accepted_changed.notify_all()
            if self._blackhole:
                with self._lock:
                    self._sockets.add(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._close(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._stopping.is_set():
                    self._close(client)
                    self._close(upstream)
                    return
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with self._lock:
                    self._sockets.discard(sock)
                self._close(sock)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            sock.close()
