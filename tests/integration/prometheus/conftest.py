"""A real Prometheus for the adapter's tests, with days of backfilled history.

One Prometheus process runs for the session on a free loopback port with a
temporary data directory. It scrapes a test exporter every second, and before
it starts ``promtool tsdb create-blocks-from openmetrics`` fills its data
directory with ``HISTORY_DAYS`` of synthetic samples ending ``HISTORY_END``.

Backfilling constraints (checked against the Debian package, Prometheus 2.42):
the OpenMetrics file must end with ``# EOF``, each metric family's samples
must be contiguous and each series' samples in time order; timestamps are in
seconds. Blocks are written per two-hour range. The rule that backfilled data
be older than the head block only concerns a running server: here the head is
empty when the blocks are written, yet the history still ends two hours ago so
that the most recent steps have no data and must come back NaN, not zero.
Blocks older than the retention are deleted at start-up, hence the long
``--storage.tsdb.retention.time``.

Nothing waits a fixed time: readiness is polled on ``/-/ready`` and values on
the query API, each until a deadline.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.exporter import Exporter
from tests.support.promserver import (
    PrometheusServer,
    WaitFor,
    wait_for,
    write_openmetrics,
)

from gpufinops.adapters.prometheus import PrometheusClient
from gpufinops.localcluster.binaries import find_prometheus
from gpufinops.localcluster.prometheus import promtool_for


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """The Prometheus binary, apt-installed when missing (never skipped)."""
    return find_prometheus(install=True)


@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    with Exporter() as running:
        yield running


@pytest.fixture(scope="session")
def prometheus(
    prometheus_binary: Path, exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """The session's Prometheus: backfilled history, scraping ``exporter`` every second."""
    server = PrometheusServer(
        prometheus_binary, tmp_path_factory.mktemp("prometheus"), [exporter.target]
    )
    source = server.root / "history.om"
    write_openmetrics(source)
    server.data_dir.mkdir(parents=True)
    backfill = subprocess.run(
        [
            str(promtool_for(prometheus_binary)),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--quiet",
            str(source),
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if backfill.returncode != 0:
        pytest.fail(f"promtool backfill failed:\n{backfill.stderr}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def doomed_prometheus(prometheus_binary: Path, tmp_path: Path) -> Iterator[PrometheusServer]:
    """A second, separate Prometheus that a test may kill."""
    with PrometheusServer(prometheus_binary, tmp_path / "doomed", []) as server:
        yield server


@pytest.fixture
def client(prometheus: PrometheusServer) -> Iterator[PrometheusClient]:
    with PrometheusClient(prometheus.url, timeout=10) as c:
        yield c


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> WaitFor:
    return wait_for
