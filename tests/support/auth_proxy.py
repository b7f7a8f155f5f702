"""A reverse proxy that checks a bearer token and a tenant header, as a Mimir,
Cortex or Thanos gateway (or an OAuth proxy) in front of Prometheus does.

``AuthProxy(upstream, token=..., tenant=...)`` forwards every request to the
plain-HTTP ``upstream`` when it carries ``Authorization: Bearer <token>`` and
(when ``tenant`` is set) ``X-Scope-OrgID: <tenant>``, and answers 401 otherwise
without forwarding. ``token`` and ``tenant`` may be changed while it runs (a
rotated credential). Use it as a context manager::

    with AuthProxy(prometheus.url, token="t1", tenant="team-a") as proxy:
        ...  # query proxy.url
        proxy.token = "t2"
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import requests
from tests.support.http_server import BackgroundServer

_FORWARDED = ("Content-Type", "Accept")
_RETURNED = ("Content-Type",)


@dataclass(frozen=True)
class Refusal:
    path: str
    reason: str


class AuthProxy:
    """Checks ``Authorization: Bearer <token>`` and ``X-Scope-OrgID`` before forwarding."""

    def __init__(self, upstream: str, *, token: str, tenant: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.tenant = tenant
        self.forwarded = 0
        """Requests let through."""
        self.refusals: list[Refusal] = []
        self._lock = threading.Lock()
        self._server: BackgroundServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the proxy is not running"
        return self._server.url

    def check(self, headers: Any) -> str | None:
        """Why a request with these headers is refused, or None."""
        if headers.get("Authorization") != f"Bearer {self.token}":
            return "missing or wrong bearer token"
        if self.tenant is not None and headers.get("X-Scope-OrgID") != self.tenant:
            return "missing or wrong X-Scope-OrgID"
        return None

    def start(self) -> AuthProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                reason = proxy.check(self.headers)
                if reason is not None:
                    with proxy._lock:
                        proxy.refusals.append(Refusal(self.path, reason))
                    self._reply(401, b"unauthorized: " + reason.encode() + b"\n", "text/plain")
                    return
                try:
                    answer = requests.request(
                        self.command,
                        proxy.upstream + self.path,
                        data=body,
                        headers={
                            "Accept-Encoding": "identity",
                            **{h: self.headers[h] for h in _FORWARDED if h in self.headers},
                        },
                        timeout=60,
                    )
                except requests.RequestException as exc:
                    self._reply(502, f"upstream: {type(exc).__name__}\n".encode(), "text/plain")
                    return
                with proxy._lock:
                    proxy.forwarded += 1
                self._reply(
                    answer.status_code,
                    answer.content,
                    answer.headers.get("Content-Type", "application/octet-stream"),
                )

            def _reply(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="prometheus"')
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = BackgroundServer(Handler).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> AuthProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
