"""An Inference workload scaled on a vLLM queue that a test exporter publishes: what the
autoscaling and sharding integration tests share.

Each test namespace holds one Deployment ``llm`` whose GPU pods run on the shared
KWOK pool ``l4-spot``, and an AIWorkload scaling it on the queue depth of a pod
the exporter pretends to be; the test sets that queue to make it scale.
"""

from __future__ import annotations

from typing import Any

from tests.support.exporter import Exporter
from tests.support.kube import KubectlRun, deployment_manifest

from gpufinops.api.spec import AIWorkloadSpec

WORKLOAD = """
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {name: llm}
spec:
  type: Inference
  costAllocation: {team: serving}
  inference:
    targetRef: {name: llm}
    minReplicas: 1
    maxReplicas: 6
    capacityPerReplica: 2
    forecast: {enabled: false}
    behavior:
      scaleDown: {stabilizationWindowSeconds: 0}
"""
"""Scales ``llm`` between 1 and 6 replicas, each taking a queue of 2, with no delay
before scaling down; apply it with ``-n <namespace>``."""


def model_pod(deployment: str, suffix: str = "x2x4z") -> str:
    """The name of a pod of ``deployment`` (ReplicaSet hash and pod suffix, as Kubernetes
    names them), as the exporter's series are labelled."""
    return f"{deployment}-7d9f8c6b5-{suffix}"


def inference_spec(deployment: str, **metrics: Any) -> AIWorkloadSpec:
    """A validated Inference spec scaling ``deployment`` on ``metrics`` (forecasts off)."""
    return AIWorkloadSpec.model_validate(
        {
            "type": "Inference",
            "costAllocation": {"team": "t"},
            "inference": {
                "targetRef": {"name": deployment},
                "maxReplicas": 10,
                "forecast": {"enabled": False},
                "metrics": metrics,
            },
        }
    )


def llm_deployment(namespace: str) -> dict[str, Any]:
    """The Deployment ``llm``: one pod holding one GPU of the pool ``l4-spot``."""
    return deployment_manifest("llm", namespace, {
        "nodeSelector": {"gpufinops.dev/pool": "l4-spot"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists",
                         "effect": "NoSchedule"}],
        "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
                        "resources": {"limits": {"nvidia.com/gpu": 1}}}],
    })  # fmt: skip


def set_vllm(exporter: Exporter, ns: str, waiting: float, completions_per_s: float = 1.0) -> None:
    """What the exporter says ``llm``'s model server has queued, runs and completes."""
    labels = {"namespace": ns, "pod": model_pod("llm")}
    exporter.set("vllm:num_requests_waiting", labels, waiting)
    exporter.set("vllm:num_requests_running", labels, 1)
    exporter.set_rate("vllm:request_success_total", labels, completions_per_s)


def jsonpath(kubectl: KubectlRun, ns: str, kind: str, name: str, path: str) -> str:
    """``kubectl get -o jsonpath``; empty when the object is not there (yet)."""
    got = kubectl("get", kind, name, "-n", ns, "-o", f"jsonpath={{{path}}}")
    return str(got.stdout) if got.returncode == 0 else ""


def llm_replicas(kubectl: KubectlRun, ns: str) -> int:
    """``llm``'s ``spec.replicas``, or -1 while it cannot be read."""
    return int(jsonpath(kubectl, ns, "deployment", "llm", ".spec.replicas") or -1)
