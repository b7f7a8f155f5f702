"""The scaled Deployment: what it has now, and changing its replicas via /scale."""

from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException


@dataclass(frozen=True)
class DeploymentView:
    """The parts of a Deployment the autoscaler reads (from a watch-fed index)."""

    replicas: int
    ready: int
    selector: str | None
    generation: int


def label_selector(match_labels: dict[str, str] | None) -> str | None:
    if not match_labels:
        return None
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def view_of(spec: dict[str, Any], status: dict[str, Any], meta: dict[str, Any]) -> DeploymentView:
    selector = (spec.get("selector") or {}).get("matchLabels")
    return DeploymentView(
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        ready=int(status.get("readyReplicas") or 0),
        selector=label_selector(selector),
        generation=int(meta.get("generation") or 0),
    )


class ScaleError(RuntimeError):
    """Scaling the Deployment failed; the message says why (RBAC, not found, ...)."""


def scale_deployment(api: client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    """Set the Deployment's replicas through its scale subresource."""
    apps = client.AppsV1Api(api)
    try:
        apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})
    except ApiException as exc:
        raise ScaleError(f"scaling Deployment {namespace}/{name} failed: {exc.reason}") from exc
