"""The kube-apiserver stops for 30 s and comes back: the operator reconnects, acts on
the next change within a tick or two, and repeats nothing it had already done.

A cluster of its own (so the outage disturbs no other test): a Training Job is placed
on spot before the outage; after it, a manual scale of an Inference workload must go
through, and the Job must not be placed a second time.
"""

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from tests.support.kube import deployment_manifest, event_reasons
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll

from gpufinops.localcluster import Kubectl, LocalCluster, find_kubectl

NS = "outage"
OUTAGE_SECONDS = 30.0


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("outage-cluster"), with_prometheus=False)
    try:
        local.up()
        yield local
    finally:
        local.down()


@pytest.fixture(scope="module")
def kctl(own_cluster: LocalCluster) -> Callable[..., Any]:
    return Kubectl(find_kubectl(), own_cluster.kubeconfig).run


@pytest.fixture(scope="module")
def operator(own_cluster: LocalCluster, kctl, tmp_path_factory) -> Iterator[RunningOperator]:
    assert kctl("create", "namespace", NS).returncode == 0
    with running_operator(
        own_cluster.kubeconfig, tmp_path_factory.mktemp("outage-operator"),
        "--namespace", NS, "--sync-seconds", "1",
        # Nothing listens here: the autoscaler holds on missing data, as designed.
        "--prometheus-url", "http://127.0.0.1:9",
    ) as op:  # fmt: skip
        yield op


TRAIN_POD = {
    "metadata": {"annotations": {
        "pod-complete.stage.kwok.x-k8s.io/delay": "24h",
        # kwok draws the delay up to its default 5 s jitter unless the jitter is as long
        "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "24h",
    }},
    "spec": {
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
        "containers": [
            {"name": "t", "image": "example.com/t:1",
             "resources": {"limits": {"nvidia.com/gpu": 1}}}
        ],
    },
}  # fmt: skip
MANIFESTS = [
    deployment_manifest("chat-server", NS, app="chat",
                        pod_spec={"containers": [{"name": "s", "image": "example.com/s:1"}]}),
    {"apiVersion": "gpufinops.dev/v1alpha1", "kind": "AIWorkload",
     "metadata": {"name": "chat", "namespace": NS},
     "spec": {"type": "Inference", "costAllocation": {"team": "search"},
              "nodePools": ["l4-on-demand"],
              "inference": {"targetRef": {"kind": "Deployment", "name": "chat-server"},
                            "minReplicas": 1, "maxReplicas": 4, "metrics": {"server": "vllm"},
                            "forecast": {"enabled": False}}}},
    {"apiVersion": "gpufinops.dev/v1alpha1", "kind": "AIWorkload",
     "metadata": {"name": "train", "namespace": NS},
     "spec": {"type": "Training", "costAllocation": {"team": "research"},
              "nodePools": ["l4-spot", "l4-on-demand"],
              "training": {"expectedDurationSeconds": 3600,
                           "jobTemplate": {"template": TRAIN_POD}}}},
]  # fmt: skip


def _get(kctl, kind: str, name: str) -> dict[str, Any]:
    result = kctl("get", kind, name, "-n", NS, "-o", "json")
    return dict(json.loads(result.stdout)) if result.returncode == 0 else {}


def test_operator_resumes_after_an_apiserver_outage_without_repeating_itself(
    own_cluster: LocalCluster, operator: RunningOperator, kctl
) -> None:
    assert kctl("apply", "-f", "-", input=yaml.safe_dump_all(MANIFESTS)).returncode == 0
    poll(lambda: (_get(kctl, "aiw", "train").get("status") or {}).get("placement", {})
         .get("phase") == "Running", "the Job to be placed before the outage")  # fmt: skip
    poll(lambda: (_get(kctl, "aiw", "chat").get("status") or {}).get("replicas"),
         "the autoscaler's first status before the outage")  # fmt: skip

    own_cluster.stop_component("kube-apiserver")
    assert kctl("get", "ns", NS, "--request-timeout=2s").returncode != 0
    time.sleep(OUTAGE_SECONDS)  # the outage itself is what is under test, not a sync point
    own_cluster.up()
    back = time.monotonic()
    assert operator.process.poll() is None, "the operator must survive the outage"

    assert kctl("scale", "aiw/chat", "-n", NS, "--replicas=3").returncode == 0
    poll(lambda: _get(kctl, "deployment", "chat-server")["spec"]["replicas"] == 3,
         "the manual scale to go through after the outage", deadline=30)  # fmt: skip
    resumed = time.monotonic() - back
    print(f"apiserver back -> first action done: {resumed:.1f}s (tick 1s)")

    placement = _get(kctl, "aiw", "train")["status"]["placement"]
    assert placement["attempts"] == 1, "the Job must not be placed again"
    assert event_reasons(kctl, NS, "train").count("SpotPlaced") == 1
    assert event_reasons(kctl, NS, "train").count("JobCreated") == 1
    poll(lambda: event_reasons(kctl, NS, "chat").count("ScaledManually") >= 1, "ScaledManually")
    assert event_reasons(kctl, NS, "chat").count("ScaledManually") == 1
