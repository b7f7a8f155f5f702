"""Integration tests run against a real control plane: etcd, kube-apiserver,
controller-manager, scheduler, kwok fake GPU nodes and Prometheus as local processes.

By default one LocalCluster is started for the whole session in a temporary
directory and torn down at the end. To reuse a running cluster instead (e.g. one
started with ``make cluster-up``), point GPUFINOPS_TEST_KUBECONFIG at its kubeconfig
(``.cluster/kubeconfig``); it is then left running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support import training
from tests.support.alertmanager import AlertmanagerServer
from tests.support.exporter import Exporter
from tests.support.kube import KubectlRun
from tests.support.polling import describe_on_timeout
from tests.support.promserver import PrometheusServer

from gpufinops.localcluster import ClusterError, Kubectl, LocalCluster, find_kubectl
from gpufinops.localcluster.alertmanager import find_alertmanager
from gpufinops.localcluster.binaries import find_prometheus

KUBECONFIG_ENV = "GPUFINOPS_TEST_KUBECONFIG"
# The first test to use the cluster pays for its start-up, which on a fresh machine
# includes building the control plane from source.
BOOT_TIMEOUT = 3600


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    boot_marked = False
    for item in items:
        if not item.path.resolve().is_relative_to(here):
            continue
        item.add_marker(pytest.mark.integration)
        uses_cluster = "cluster" in getattr(item, "fixturenames", ())
        if uses_cluster and not boot_marked:
            boot_marked = True
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(BOOT_TIMEOUT))


def _existing_cluster(kubeconfig: Path) -> LocalCluster:
    """The LocalCluster whose state directory holds ``kubeconfig``; fails if not running."""
    state_dir = kubeconfig.resolve().parent
    if kubeconfig.name != "kubeconfig" or not (state_dir / "state.json").is_file():
        pytest.fail(
            f"{KUBECONFIG_ENV}={kubeconfig} is not the kubeconfig of a local cluster "
            "(expected <state-dir>/kubeconfig next to state.json, e.g. .cluster/kubeconfig)",
            pytrace=False,
        )
    cluster = LocalCluster(state_dir)
    if not cluster.is_running():
        pytest.fail(f"the cluster in {state_dir} is not running (make cluster-up)", pytrace=False)
    return cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A running LocalCluster for the session (never skipped: failing to start is a failure)."""
    existing = os.environ.get(KUBECONFIG_ENV)
    if existing:
        yield _existing_cluster(Path(existing))
        return
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    error: ClusterError | None = None
    try:
        local.up()
    except ClusterError as exc:
        error = exc
    if error is not None:
        local.down()
        pytest.fail(
            f"the local control plane did not start: {error}\n(logs in {local.log_dir})",
            pytrace=False,
        )
    try:
        yield local
    finally:
        local.down()


@pytest.fixture(scope="session")
def kubeconfig(cluster: LocalCluster) -> Path:
    """The admin kubeconfig of the session's cluster."""
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> KubectlRun:
    """``kubectl(*args, input=None, timeout=120.0)``: run kubectl against the session's cluster.

    Returns the CompletedProcess (text stdout/stderr) and never raises on failure.
    """
    return Kubectl(find_kubectl(), kubeconfig).run


# ---------------------------------------------------------------------- Training tests


@pytest.fixture(scope="module")
def training_pools(kubectl: KubectlRun) -> Iterator[None]:
    """The Training tests' own spot and on-demand nodes, and their namespace.

    Module-scoped: each module starts from empty pools (see ``tests.support.training``).
    """
    training.add_pools(kubectl)
    try:
        yield
    finally:
        training.remove_pools(kubectl)


@pytest.fixture(scope="module")
def training_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator config file naming the Training tests' pools."""
    path = tmp_path_factory.mktemp("training-config") / "config.yaml"
    path.write_text(yaml.safe_dump(training.CONFIG))
    return path


@pytest.fixture(scope="module")
def training_state_on_timeout(kubectl: KubectlRun) -> Iterator[None]:
    """A module's waits that time out show the Training namespace's Jobs, pods and workloads."""
    with describe_on_timeout(lambda: training.describe(kubectl)):
        yield


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    """The fake vLLM exporter of one module (modules that need more define their own)."""
    with Exporter() as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping the module's exporter; its URL."""
    with PrometheusServer(
        find_prometheus(install=True), tmp_path_factory.mktemp("prometheus"), [exporter.target]
    ) as server:
        yield server.url


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerServer]:
    """A real Alertmanager for the module's tests (installed from Debian when missing)."""
    try:
        binary = find_alertmanager(install=True)
    except ClusterError as exc:
        pytest.skip(f"Alertmanager is not installed and apt could not install it: {exc}")
    with AlertmanagerServer(binary, tmp_path_factory.mktemp("alertmanager")) as server:
        yield server
