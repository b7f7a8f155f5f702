"""A real Alertmanager process and a tiny webhook receiver, for the alert delivery tests.

The operator's payload is judged by the server that would page people: an
Alertmanager rejects malformed alerts and merges alerts with equal labels, which
a fake endpoint would not.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import yaml
from tests.support.promserver import StartedProcess, free_port, http_ok

READY_DEADLINE = 60.0

CONFIG = {
    # One receiver that notifies nobody: the test reads the alerts back from the API.
    "route": {"receiver": "default", "group_wait": "1s", "group_interval": "1s"},
    "receivers": [{"name": "default"}],
}


@dataclass
class AlertmanagerServer(StartedProcess):
    """One Alertmanager we started, in its own directory, on a free port, unclustered.

    Use it as a context manager (``with AlertmanagerServer(binary, root) as am:``): the
    process is stopped however the test ends, so none is left holding a port.
    """

    binary: Path
    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.root / "alertmanager.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "alertmanager.yml"
        config.write_text(yaml.safe_dump(CONFIG))
        for _ in range(3):  # a port taken between choosing and binding gets another try
            self.port = free_port()
            with self.log_file.open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        str(self.binary),
                        f"--config.file={config}",
                        f"--storage.path={self.root / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--cluster.listen-address=",  # no gossip: a single, private instance
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + READY_DEADLINE
            while self.process.poll() is None and time.monotonic() < deadline:
                if http_ok(f"{self.url}/-/ready"):
                    return
                time.sleep(0.1)  # polling readiness until a deadline
            if self.process.poll() is None or "address already in use" not in self.log_tail():
                break
        self.stop()
        pytest.fail(f"Alertmanager did not become ready:\n{self.log_tail()}", pytrace=False)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` filtered by equal label values."""
        query = urllib.parse.urlencode(
            [("filter", f'{k}="{v}"') for k, v in labels.items()] + [("silenced", "false")]
        )
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as response:
            got: list[dict[str, Any]] = json.load(response)
        return got

    def received(self) -> float:
        """Alerts the API has accepted so far, from Alertmanager's own counter.

        The API merges alerts with equal labels, so a second POST of the same alert
        would not show in ``alerts``; the counter counts every alert received.
        """
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("alertmanager_alerts_received_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@dataclass
class WebhookReceiver:
    """An HTTP endpoint that records every JSON body POSTed to it.

    Use it as a context manager (``with WebhookReceiver() as hook:``): its serving
    thread is stopped and its socket closed however the test ends.
    """

    bodies: list[Any] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> WebhookReceiver:
        received = self.bodies
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep the test output to failures

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self.server is None:
            return
        if self.thread is not None:
            self.server.shutdown()  # returns once serve_forever has (it blocks if never run)
            self.thread.join(timeout=5)
        self.server.server_close()
        self.server = self.thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
