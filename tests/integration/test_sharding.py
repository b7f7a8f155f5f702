"""Two operator instances shard the workloads and never act on each other's.

Shard A watches the namespaces ``shard-a-*`` (globs) with Kopf peering for HA in
its own KopfPeering objects; shard B is cluster-wide but only for AIWorkloads
labelled ``gpufinops.dev/shard=b`` (a server-side label selector) and leaves the
node duties to others. Each shard scales its own Deployments, writes its own
status and Events, and its metrics and log show it never touched the other's.
A third instance deployed over shard A's namespaces with the same peering name
is the overlap misconfiguration: peering detects it and pauses both instead of
letting two operators act on the same workloads. (The shard flags refused before
anything starts need no cluster: tests/unit/test_cli_shards.py.)
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.exporter import Exporter
from tests.support.inference import WORKLOAD as AUTOSCALED
from tests.support.inference import llm_deployment, llm_replicas, set_vllm
from tests.support.kube import event_reasons, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll
from tests.support.promserver import PrometheusServer

from gpufinops.localcluster.binaries import find_prometheus

NS_A = ("shard-a-1", "shard-a-2")
NS_B = "shard-b-1"
PEERING = "gpufinops"
CONFLICT = "Possibly conflicting operators with the same priority"
RESUMED = "Resuming operations after the pause"

# The autoscaling tests' workload, named and labelled per test, at most 2 replicas.
WORKLOAD = (
    AUTOSCALED.replace("metadata: {name: llm}", "metadata: {name: %(name)s, labels: %(labels)s}")
    .replace("maxReplicas: 6", "maxReplicas: 2")
    .replace("targetRef: {name: llm}", "targetRef: {name: %(target)s}")
)


def _workload(
    kubectl: Any, ns: str, name: str, labels: dict[str, str] | None = None, target: str = "llm"
) -> None:
    """An Inference workload on Deployment ``target`` (two on one target both refuse)."""
    manifest = WORKLOAD % {"name": name, "labels": json.dumps(labels or {}), "target": target}
    ok(kubectl("apply", "-n", ns, "-f", "-", input=manifest))


def _ticks(op: RunningOperator, ns: str, name: str = "llm") -> float:
    return op.metric("gpufinops_autoscaler_ticks_total", namespace=ns, workload=name)


def _peering(ns: str) -> str:
    return json.dumps({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                       "metadata": {"name": PEERING, "namespace": ns}})  # fmt: skip


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Exporter, str]]:
    with Exporter() as exporter:
        for ns in (*NS_A, NS_B):
            set_vllm(exporter, ns, waiting=2000)  # every workload wants its maximum, 2
        root = tmp_path_factory.mktemp("shard-prom")
        with PrometheusServer(find_prometheus(install=True), root, [exporter.target]) as server:
            yield exporter, server.url


@pytest.fixture(scope="module")
def namespaces(kubectl: Any) -> Iterator[None]:
    for ns in (*NS_A, NS_B):
        kubectl("create", "namespace", ns)
        ok(kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(llm_deployment(ns))))
    for ns in NS_A:  # shard A's HA peering lives in its own namespaces only
        ok(kubectl("apply", "-f", "-", input=_peering(ns)))
    yield
    for ns in (*NS_A, NS_B):
        kubectl("delete", "deployments,kopfpeerings", "--all", "-n", ns, "--wait=true",
                "--timeout=60s")  # fmt: skip
        kubectl("delete", "namespace", ns, "--wait=false")


@pytest.fixture(scope="module")
def shards(
    namespaces: None,
    prometheus: tuple[Exporter, str],
    kubeconfig: Path,
    kubectl: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningOperator, RunningOperator]]:
    common = ("--prometheus-url", prometheus[1], "--sync-seconds", "1")
    with (
        running_operator(kubeconfig, tmp_path_factory.mktemp("shard-a"), *common,
                         "--namespace", "shard-a-*", "--peering", PEERING) as a,
        running_operator(kubeconfig, tmp_path_factory.mktemp("shard-b"), *common,
                         "--selector", "gpufinops.dev/shard=b", "--no-node-duties") as b,
    ):  # fmt: skip
        try:
            yield a, b
        finally:  # while both run, so that each releases its own finalizers
            for ns in (*NS_A, NS_B):
                kubectl("delete", "aiw", "--all", "-n", ns, "--wait=true", "--timeout=60s")


def test_each_workload_is_acted_on_by_its_own_shard_only(
    shards: tuple[RunningOperator, RunningOperator], kubectl: Any
) -> None:
    a, b = shards
    for ns in NS_A:
        _workload(kubectl, ns, "llm")
    # Shard B's label on a workload in a shard-a-* namespace, and an unlabelled one in
    # shard B's namespace: each shard's rule takes only what it names.
    _workload(kubectl, NS_B, "llm", {"gpufinops.dev/shard": "b"})
    _workload(kubectl, NS_B, "unlabelled")

    for ns in (*NS_A, NS_B):
        poll(lambda ns=ns: llm_replicas(kubectl, ns) == 2, f"{ns}/llm scaled to its maximum")
        poll(lambda ns=ns: "ScaledUp" in event_reasons(kubectl, ns, "llm"), f"{ns}/llm ScaledUp")
    for ns in NS_A:
        assert _ticks(a, ns) > 0 and _ticks(b, ns) == 0, ns
    assert _ticks(b, NS_B) > 0 and _ticks(a, NS_B) == 0
    assert _ticks(a, NS_B, "unlabelled") == 0 and _ticks(b, NS_B, "unlabelled") == 0
    for ns in (*NS_A, NS_B):  # one Accepted, one ScaledUp: never handled twice
        reasons = event_reasons(kubectl, ns, "llm")
        assert reasons.count("Accepted") == 1 and reasons.count("ScaledUp") == 1, (ns, reasons)
    unlabelled = ok(kubectl("get", "aiw", "unlabelled", "-n", NS_B, "-o", "json"))
    assert "status" not in json.loads(unlabelled), "no shard owns it, so nobody wrote status"
    assert event_reasons(kubectl, NS_B, "unlabelled") == []
    log_a, log_b = a.log.read_text(), b.log.read_text()
    assert NS_B not in log_a, "shard A never saw shard B's workloads"
    assert not any(ns in log_b for ns in NS_A), "shard B never saw shard A's workloads"
    assert CONFLICT not in log_a + log_b, "disjoint shards never pause each other"


def test_two_instances_over_the_same_namespaces_pause_rather_than_both_act(
    shards: tuple[RunningOperator, RunningOperator],
    kubeconfig: Path,
    kubectl: Any,
    prometheus: tuple[Exporter, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    a, b = shards
    ns = NS_A[1]
    overlap = running_operator(
        kubeconfig, tmp_path_factory.mktemp("shard-a-again"), "--prometheus-url", prometheus[1],
        "--sync-seconds", "1", "--namespace", ns, "--peering", PEERING,
    )  # fmt: skip
    with overlap as again:
        # Both see the other's keep-alive in the KopfPeering of shard-a-2 at the same
        # priority: both pause, and both say why.
        poll(lambda: CONFLICT in again.log.read_text(), "the new instance to detect A")
        poll(lambda: CONFLICT in a.log.read_text(), "shard A to detect the new instance")
        _workload(kubectl, ns, "late", target="late")
        ok(kubectl("wait", "-n", ns, "aiw/late", "--for=create", "--timeout=30s"))
        assert _ticks(again, ns, "late") == 0
        assert "late" not in again.log.read_text()
    # The second instance is gone (it removes itself from the peering): A resumes alone
    # and handles the workload created during the pause exactly once.
    poll(lambda: RESUMED in a.log.read_text(), "shard A to resume")
    poll(lambda: "Accepted" in event_reasons(kubectl, ns, "late"), "the late workload accepted")
    poll(lambda: _ticks(a, ns, "late") > 0, "shard A to autoscale the late workload")
    assert event_reasons(kubectl, ns, "late").count("Accepted") == 1
    assert _ticks(b, ns, "late") == 0
