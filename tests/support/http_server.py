"""A loopback HTTP server on a background thread, for the stand-ins tests put on the wire."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class BackgroundServer:
    """Serves ``handler`` on 127.0.0.1 (a free port) from ``start`` until ``stop``.

    The port is bound on construction, so that ``url`` is known before the start.
    Use it as a context manager (``with BackgroundServer(Handler) as server:``): the
    thread is stopped and the socket closed however the test ends. ``stop`` may be
    called more than once, and on a server that never started.
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._stopped = False

    def start(self) -> BackgroundServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.thread.ident is not None:  # shutdown() waits forever on one never served
            self.httpd.shutdown()
            self.thread.join(timeout=5)
        self.httpd.server_close()

    def __enter__(self) -> BackgroundServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
