"""Deployments and StatefulSets: their view from a watch-fed index, and their replicas
set through the scale subresource."""

from typing import Any

from kubernetes import client

from gpufinops.adapters.scale_targets import ScalableResource, TargetView, patch_scale

DEPLOYMENTS = ScalableResource("apps/v1", "Deployment", "deployments")
STATEFULSETS = ScalableResource("apps/v1", "StatefulSet", "statefulsets")


def label_selector(match_labels: dict[str, str] | None) -> str | None:
    if not match_labels:
        return None
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def view_of(spec: dict[str, Any], status: dict[str, Any], meta: dict[str, Any]) -> TargetView:
    selector = (spec.get("selector") or {}).get("matchLabels")
    return TargetView(
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        ready=int(status.get("readyReplicas") or 0),
        selector=label_selector(selector),
        generation=int(meta.get("generation") or 0),
    )


def scale_deployment(
    api: client.ApiClient,
    namespace: str,
    name: str,
    replicas: int,
    expected: int | None = None,
) -> None:
    """Set the Deployment's replicas (never over a newer change: see ``patch_scale``)."""
    patch_scale(api, DEPLOYMENTS, namespace, name, replicas, expected)


def scale_statefulset(api: client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    """Set the StatefulSet's replicas through its scale subresource."""
    patch_scale(api, STATEFULSETS, namespace, name, replicas)
