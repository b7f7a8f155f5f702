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


class ScaleConflict(ScaleError):
    """The Deployment changed since it was read: nothing was written; decide again."""


def scale_deployment(
    api: client.ApiClient,
    namespace: str,
    name: str,
    replicas: int,
    expected: int | None = None,
) -> None:
    """Set the Deployment's replicas through its scale subresource.

    With ``expected`` (the replicas the decision was made from) the write never
    overwrites a newer change: one JSON patch tests that the replicas are still
    ``expected`` and replaces them, atomically on the server, so no read (and no
    ``get`` permission) is needed. When someone ran ``kubectl scale`` meanwhile the
    test fails and ScaleConflict is raised, so the caller decides again.
    """
    apps = client.AppsV1Api(api)
    bodies: list[Any] = [{"spec": {"replicas": replicas}}]
    if expected is not None:
        bodies = [
            [
                {"op": "test", "path": "/spec/replicas", "value": expected},
                {"op": "replace", "path": "/spec/replicas", "value": replicas},
            ]
        ]
        if expected == 0:
            # A Scale at zero has no spec.replicas at all (it is omitted when empty), so
            # "still zero" is "spec still empty"; both forms are tried, the empty one first.
            bodies.insert(
                0,
                [
                    {"op": "test", "path": "/spec", "value": {}},
                    {"op": "add", "path": "/spec/replicas", "value": replicas},
                ],
            )
    for i, body in enumerate(bodies):
        try:
            apps.patch_namespaced_deployment_scale(name, namespace, body)
            return
        except ApiException as exc:
            if expected is not None and exc.status in (409, 422):
                if i + 1 < len(bodies):
                    continue
                raise ScaleConflict(
                    f"Deployment {namespace}/{name} no longer has the {expected} replicas "
                    "the decision was made from"
                ) from exc
            raise ScaleError(f"scaling Deployment {namespace}/{name} failed: {exc.reason}") from exc


def scale_statefulset(api: client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    """Set the StatefulSet's replicas through its scale subresource."""
    apps = client.AppsV1Api(api)
    try:
        apps.patch_namespaced_stateful_set_scale(name, namespace, {"spec": {"replicas": replicas}})
    except ApiException as exc:
        raise ScaleError(f"scaling StatefulSet {namespace}/{name} failed: {exc.reason}") from exc
