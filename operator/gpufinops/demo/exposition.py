"""A minimal Prometheus exporter: series whose values the caller sets.

It serves the text exposition format on ``/metrics`` from a thread, on a free
loopback port. A value is a number or a function of nothing called at each
scrape (e.g. a counter growing at a known rate). The demo's fake model servers
and the integration tests both use it, so neither needs a real engine or GPU.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

Value = float | Callable[[], float]
_Key = tuple[str, tuple[tuple[str, str], ...]]


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exporter:
    """Serves the series set with ``set`` until ``stop``; also a context manager."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._series: dict[_Key, Value] = {}
        self._types: dict[str, str] = {}
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # A scraper that timed out has hung up: nothing to report.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="exporter", daemon=True
        )

    @property
    def target(self) -> str:
        """``host:port`` to scrape."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> Exporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Exporter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set(
        self, name: str, labels: Mapping[str, str], value: Value, *, kind: str = "gauge"
    ) -> None:
        """Export ``name{labels} value`` (``kind``: gauge, counter or untyped)."""
        with self._lock:
            self._types.setdefault(name, kind)
            self._series[(name, tuple(sorted(labels.items())))] = value

    def set_rate(self, name: str, labels: Mapping[str, str], per_second: float) -> None:
        """Export a counter that grows by ``per_second`` each second from now."""
        started = time.time()
        self.set(name, labels, lambda: per_second * (time.time() - started), kind="counter")

    def remove(self, name: str, labels: Mapping[str, str]) -> None:
        with self._lock:
            self._series.pop((name, tuple(sorted(labels.items()))), None)

    def remove_matching(self, labels: Mapping[str, str]) -> None:
        """Drop every series whose labels include ``labels`` (a pod that went away)."""
        wanted = set(labels.items())
        with self._lock:
            for key in [k for k in self._series if wanted <= set(k[1])]:
                del self._series[key]

    def render(self) -> str:
        """The exposition text of every series, grouped by metric name."""
        with self._lock:
            self.scrapes += 1
            series = sorted(self._series.items(), key=lambda item: item[0])
            types = dict(self._types)
        lines: list[str] = []
        current = None
        for (name, labels), value in series:
            if name != current:
                current = name
                lines.append(f"# TYPE {name} {types.get(name, 'untyped')}")
            number = value() if callable(value) else value
            text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
            selector = f"{name}{{{text}}}" if text else name
            lines.append(f"{selector} {format_value(number)}")
        return "\n".join(lines) + "\n"
