"""Loads a tenant can put on Prometheus, for the operator's bounds to hold against.

- ``HoldingProxy``: a reverse proxy in front of a real Prometheus that holds every
  query whose text contains a marker until the test releases it (as a query over
  weeks of a high-cardinality metric would hang), and passes the rest through.
- ``NoiseExporter``: an exporter of many series (100,000 by default) with labels
  of realistic length, scraped rarely so Prometheus ingests them once.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler

from tests.support.http_server import BackgroundServer


class HoldingProxy:
    """Forwards GETs to ``upstream``; a query containing ``marker`` waits for ``release``."""

    def __init__(self, upstream: str, marker: str, *, hold_seconds: float = 120.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.marker = marker
        self.hold_seconds = hold_seconds
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.held = 0
        """Queries being held now."""
        self.first_held: float | None = None
        """``time.monotonic()`` when the first query was held."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if any(proxy.marker in q for q in query.get("query", [])):
                    with proxy.lock:
                        proxy.held += 1
                        if proxy.first_held is None:
                            proxy.first_held = time.monotonic()
                    try:
                        proxy.released.wait(proxy.hold_seconds)
                    finally:
                        with proxy.lock:
                            proxy.held -= 1
                try:
                    with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as got:
                        status, body = got.status, got.read()
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up waiting: nothing to answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = BackgroundServer(Handler)
        self.url = self.server.url

    def __enter__(self) -> HoldingProxy:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.stop()


class NoiseExporter:
    """``count`` series of ``metric`` in ``namespace``, each with its own pod and id."""

    def __init__(self, metric: str, namespace: str, count: int = 100_000) -> None:
        lines = [f"# TYPE {metric} gauge"]
        for i in range(count):
            lines.append(
                f'{metric}{{namespace="{namespace}",pod="inference-gateway-7d9f8c6b5-{i:06d}",'
                f'container="gateway",endpoint="http-metrics",'
                f'service="inference-gateway-metrics",request_path="/v1/chat/completions/{i}"}}'
                " 1"
            )
        body = ("\n".join(lines) + "\n").encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = BackgroundServer(Handler)
        self.target = f"127.0.0.1:{self.server.port}"

    def __enter__(self) -> NoiseExporter:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
