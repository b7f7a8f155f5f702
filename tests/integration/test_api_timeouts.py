"""Kubernetes API calls of the operator's client end, even on a connection that never answers.

A "black hole" API server (a TCP listener that accepts and then says nothing, as a
half-open connection behaves after a failover) stands in for the dead endpoint; the
client is the one production makes (``load_kube_config`` on a kubeconfig), with
short timeouts so the test is quick. The autoscaler's writes run on four threads,
so four hung writes would otherwise stop every other write: with the timeouts, a
fifth write to the real control plane goes through once they fire.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3
import yaml
from kubernetes import client, watch

from gpufinops.adapters.deployments import scale_deployment
from gpufinops.adapters.kubeclient import (
    KEEPALIVE_IDLE_SECONDS,
    KEEPALIVE_INTERVAL_SECONDS,
    KEEPALIVE_PROBES,
    ApiTimeouts,
    load_kube_config,
)

pytestmark = pytest.mark.integration

NS = "api-timeouts-test"
TIMEOUT = 1.0
"""Connect and read timeout of the test's clients, seconds."""
WRITERS = 4
"""Threads of the autoscaler's writes (``handlers.inference.API_WRITERS``)."""


class BlackHole:
    """Accepts TCP connections and never answers (nor closes them until stopped)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # stopped
            with self.changed:
                self.accepted.append(conn)
                self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.accepted) >= count, timeout=timeout)

    def stop(self) -> None:
        self.listener.close()
        with self.changed:
            for conn in self.accepted:
                conn.close()


@pytest.fixture
def black_hole(tmp_path: Path) -> Iterator[tuple[BlackHole, Path]]:
    """The black hole and a kubeconfig pointing at it."""
    hole = BlackHole()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "hole", "cluster": {"server": f"http://127.0.0.1:{hole.port}"}}
                ],
                "users": [{"name": "u", "user": {"token": "not-checked"}}],
                "contexts": [{"name": "hole", "context": {"cluster": "hole", "user": "u"}}],
                "current-context": "hole",
            }
        )
    )
    try:
        yield hole, kubeconfig
    finally:
        hole.stop()


@pytest.fixture(scope="module")
def deployment(kubectl) -> Iterator[str]:
    """A Deployment of one replica to scale; its pods select no node, so they stay Pending."""
    kubectl("create", "namespace", NS)
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"gpufinops.dev/pool": "none-such"},
                    "containers": [{"name": "web", "image": "nginx"}],
                },
            },
        },
    }
    applied = kubectl("apply", "-f", "-", input=json.dumps(manifest))
    assert applied.returncode == 0, applied.stderr
    try:
        yield "web"
    finally:
        kubectl("delete", "namespace", NS, "--wait=true", "--timeout=60s")


def _bounded(kubeconfig: Path) -> client.ApiClient:
    return load_kube_config(config_file=kubeconfig, timeouts=ApiTimeouts(TIMEOUT, TIMEOUT))


def test_a_write_to_a_silent_api_server_fails_within_the_read_timeout(
    black_hole: tuple[BlackHole, Path],
) -> None:
    hole, kubeconfig = black_hole
    api = _bounded(kubeconfig)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        scale_deployment(api, NS, "web", 2, expected=1)
    elapsed = time.monotonic() - started
    assert hole.accepted, "the request never reached the black hole"
    assert TIMEOUT <= elapsed < 10 * TIMEOUT


def test_hung_writes_free_the_write_threads_for_the_next_write(
    black_hole: tuple[BlackHole, Path], kubeconfig: Path, kubectl, deployment: str
) -> None:
    hole, hole_config = black_hole
    silent, real = _bounded(hole_config), _bounded(kubeconfig)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WRITERS) as writes:
        hung = [
            writes.submit(scale_deployment, silent, NS, deployment, 2, 1) for _ in range(WRITERS)
        ]
        # Every write thread is now held by the black hole.
        assert hole.wait_for(WRITERS, timeout=10 * TIMEOUT)
        fifth = writes.submit(scale_deployment, real, NS, deployment, 3, 1)
        fifth.result(timeout=10 * TIMEOUT)
    assert time.monotonic() - started < 10 * TIMEOUT
    for future in hung:
        assert isinstance(future.exception(), urllib3.exceptions.ReadTimeoutError)
    got = kubectl("get", "deployment", deployment, "-n", NS, "-o", "jsonpath={.spec.replicas}")
    assert got.stdout == "3"
    kubectl("scale", "deployment", deployment, "-n", NS, "--replicas=1")


def test_api_connections_keep_alive(kubeconfig: Path) -> None:
    api = load_kube_config(config_file=kubeconfig)
    client.CoreV1Api(api).list_namespace(limit=1)
    pool = api.rest_client.pool_manager.connection_from_url(api.configuration.host)
    open_sockets = [c.sock for c in list(pool.pool.queue) if c is not None and c.sock is not None]
    assert open_sockets, "the connection used was not kept for reuse"
    sock = open_sockets[0]
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_SECONDS
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == (
            KEEPALIVE_INTERVAL_SECONDS
        )
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_PROBES


def test_a_silent_watch_outlives_the_read_timeout(kubeconfig: Path, deployment: str) -> None:
    """A watch gets no read timeout: with nothing happening it stays open until the
    server ends it (``timeoutSeconds``), well past the client's read timeout."""
    api = _bounded(kubeconfig)
    server_timeout = 3
    started = time.monotonic()
    events = list(
        watch.Watch().stream(
            client.AppsV1Api(api).list_namespaced_deployment,
            NS,
            field_selector=f"metadata.name={deployment}",
            timeout_seconds=server_timeout,
        )
    )
    assert [e["type"] for e in events] == ["ADDED"]
    assert time.monotonic() - started > 2 * TIMEOUT
