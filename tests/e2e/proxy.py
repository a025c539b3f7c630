"""A TCP proxy the tests can cut: a real network drop between the browser and the server.

While ``paused`` it closes every connection at once and refuses new ones (accepts, then closes),
which is what a browser sees when the network goes away and comes back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class CuttableProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._paused = False
        self._closed = False
        self.connections = 0  # accepted and forwarded, for the tests' assertions
        self._thread = threading.Thread(target=self._accept, name="e2e-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self._listener.close()
        self._cut_all()
        self._thread.join(timeout=5)

    def pause(self) -> None:
        """Drop every open connection and refuse new ones until ``resume``."""
        with self._lock:
            self._paused = True
        self._cut_all()

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def _cut_all(self) -> None:
        with self._lock:
            doomed, self._open = self._open, set()
        # Shut down only: each socket's reading pipe closes it (exactly once).
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                paused = self._paused
            if paused:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(src)
            src.close()
