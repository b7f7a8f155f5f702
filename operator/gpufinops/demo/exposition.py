"""A minimal Prometheus exporter: series whose values the caller sets.

It serves the text exposition format on ``/metrics`` from a thread, on a free
loopback port. A value is a number or a function of nothing called at each
scrape (e.g. a counter growing at a known rate). The demo's fake model servers
and the integration tests both use it, so neither needs a real engine or GPU.
The text itself is written by ``prometheus_client``, from a collector that
reports the series as they are at the scrape.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

Value = float | Callable[[], float]
_Key = tuple[str, tuple[tuple[str, str], ...]]

_HELP = "Set by the gpufinops exporter (demo or tests)."
"""Every family's HELP: the series are stand-ins, not a real engine's."""

format_value: Callable[[float], str] = floatToGoString
"""A sample value as the exposition writes it (``+Inf``, ``NaN``, Go's exponent form)."""


def escape_label_value(value: str) -> str:
    """A label value as the exposition writes it (backslash, double quote, newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str) -> Metric:
    """The metric family ``name`` belongs to.

    ``prometheus_client`` names a counter family after its ``_total`` sample, so
    only such counters keep their type; a counter named otherwise (TGI's
    ``tgi_request_count``) is exposed untyped, under its own name, which is what
    Prometheus stores and ``rate`` reads alike.
    """
    if kind == "counter":
        if name.endswith("_total"):
            return Metric(name.removesuffix("_total"), _HELP, "counter")
        kind = "untyped"
    return Metric(name, _HELP, kind)


class Exporter:
    """Serves the series set with ``set`` until ``stop``; also a context manager.

    It is the collector of its own registry, so nothing it exports reaches the
    process-wide one (the operator's metrics, in tests that run both)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._series: dict[_Key, Value] = {}
        self._types: dict[str, str] = {}
        self.scrapes = 0
        self._registry = CollectorRegistry()
        self._registry.register(self)
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
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

    def collect(self) -> list[Metric]:
        """Every series as it is now, by name then labels (one scrape), for the registry."""
        with self._lock:
            self.scrapes += 1
            series = sorted(self._series.items(), key=lambda item: item[0])
            types = dict(self._types)
        # Values are called outside the lock: a slow one must not hold up ``set``.
        families: dict[str, Metric] = {}
        for (name, labels), value in series:
            if name not in families:
                families[name] = _family(name, types.get(name, "untyped"))
            families[name].add_sample(name, dict(labels), value() if callable(value) else value)
        return list(families.values())

    def render(self) -> str:
        """The exposition text of every series, grouped by metric name."""
        return generate_latest(self._registry).decode()
