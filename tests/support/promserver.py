"""Helpers of the Prometheus integration tests: the server process, history, polling."""

from __future__ import annotations

import contextlib
import math
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
import yaml
from tests.support.polling import poll_until

from gpufinops.adapters.prometheus import MetricsError, PrometheusClient
from gpufinops.localcluster.prometheus import create_blocks

HOUR = 3600
DAY = 86_400
HISTORY_DAYS = 3
GAUGE_STEP = 60
COUNTER_STEP = 15
HISTORY_END = (int(time.time()) - 2 * HOUR) // HOUR * HOUR
"""Time of the last backfilled sample: an hour boundary about two hours ago."""
HISTORY_START = HISTORY_END - HISTORY_DAYS * DAY

DEMAND_METRIC = "gpufinops_test_demand"
DEMAND_QUERY = f'sum({DEMAND_METRIC}{{namespace="history"}})'
HISTORY_SCOPE = {"namespace": "history", "pod": "llm-7d9f8c6b5-x2x4z", "model_name": "m"}

READY_DEADLINE = 60.0
VALUE_DEADLINE = 30.0


def demand_at(t: float) -> float:
    """The backfilled demand gauge: a daily wave plus a repeating ripple, in requests/s."""
    return round(10 + 5 * math.sin(2 * math.pi * t / DAY) + (t // GAUGE_STEP) % 7, 6)


def completions_rate_at(t: float) -> float:
    """The backfilled completion rate: constant within each hour (2, 5 or 9 per second)."""
    return (2.0, 5.0, 9.0)[int(t // HOUR) % 3]


def write_openmetrics(path: Path) -> None:
    """Days of a demand gauge and of a vLLM completions counter, in OpenMetrics."""
    lines = [f"# TYPE {DEMAND_METRIC} gauge"]
    for t in range(HISTORY_START, HISTORY_END + 1, GAUGE_STEP):
        lines.append(f'{DEMAND_METRIC}{{namespace="history"}} {demand_at(t)!r} {t}')
    labels = ",".join(f'{k}="{v}"' for k, v in HISTORY_SCOPE.items())
    lines.append("# TYPE vllm:request_success counter")
    total = 0.0
    for t in range(HISTORY_START, HISTORY_END + 1, COUNTER_STEP):
        if t > HISTORY_START:
            total += completions_rate_at(t - COUNTER_STEP) * COUNTER_STEP
        lines.append(f"vllm:request_success_total{{{labels}}} {total!r} {t}")
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class StartedProcess:
    """``with Server(...) as s:`` starts it and always stops it, also when the test
    fails or the start itself is interrupted: no process may outlive the test."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class PrometheusServer(StartedProcess):
    """One Prometheus process we started, and how to reach it.

    Use it as a context manager (``with PrometheusServer(...) as prom:``) so that the
    process is stopped however the test ends: a server left running would hold its
    port and data directory for the rest of the session. Anything that must happen
    before the start (a backfill into ``data_dir``) is done on the object before the
    ``with``; ``start``, ``stop`` and ``kill`` stay available inside it (a test that
    kills the server and starts it again still has it stopped on exit).
    """

    binary: Path
    root: Path
    scrape_targets: list[str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [
                {
                    "job_name": "exporter",
                    "honor_labels": True,
                    "static_configs": [{"targets": self.scrape_targets}],
                }
            ]
            if self.scrape_targets
            else [],
        }
        path = self.root / "prometheus.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self) -> None:
        """Start and wait for readiness; a port taken meanwhile gets another try."""
        config = self.write_config()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            if attempt or not self.port:  # a restart keeps its address, as a real server would
                self.port = free_port()
            with self.log_file.open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        str(self.binary),
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.data_dir}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--storage.tsdb.retention.time=30d",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return
            if self.process.poll() is None:
                break  # running but never ready: not a port clash
            if "address already in use" not in self.log_tail():
                break
        self.stop()
        pytest.fail(f"Prometheus did not become ready:\n{self.log_tail()}", pytrace=False)

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + READY_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if http_ok(f"{self.url}/-/ready"):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """Stop abruptly, as a crash would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""


WaitFor = Callable[[PrometheusClient, str, Callable[[float | None], bool]], float | None]


def wait_for(
    client: PrometheusClient,
    query: str,
    accept: Callable[[float | None], bool],
    deadline: float = VALUE_DEADLINE,
) -> float | None:
    """Poll ``query`` until its value is accepted; fail with the last value at the deadline.

    A query Prometheus cannot answer yet (nothing scraped so far) is asked again;
    should it never answer, the reason it gave is the last value shown.
    """

    def answer() -> float | str | None:
        try:
            return client.instant(query)
        except MetricsError as exc:
            return exc.reason

    value = poll_until(
        answer,
        lambda v: not isinstance(v, str) and accept(v),
        f"{query} to give an accepted value",
        deadline=deadline,
    )
    assert not isinstance(value, str)
    return value


def backfill(prometheus: Path, data_dir: Path, openmetrics: str) -> None:
    """Write ``openmetrics`` history into ``data_dir`` (before Prometheus starts there),
    as the local cluster backfills the demo's (``localcluster.prometheus.create_blocks``)."""
    try:
        create_blocks(prometheus, data_dir, openmetrics)
    except RuntimeError as exc:
        pytest.fail(f"promtool backfill failed:\n{exc}", pytrace=False)
