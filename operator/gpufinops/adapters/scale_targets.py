"""Any object with a ``/scale`` subresource: finding its resource, reading and setting
its replicas, counting its ready pods through the scale's label selector.

This is how the HPA and KEDA reach StatefulSets, LeaderWorkerSets, Argo Rollouts and
custom resources alike: the Scale object (``autoscaling/v1``) gives the replicas
asked for and a label selector of the pods, whatever the kind. Deployments keep
their watch-fed index (no request per tick); every other kind is read each tick,
one GET of its scale and one LIST of its pods.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

# Read here, defined in the core (which decides from them alone).
from gpufinops.core.scaling.target import TargetProblem as TargetProblem
from gpufinops.core.scaling.target import TargetUnavailable as TargetUnavailable
from gpufinops.core.scaling.target import TargetView as TargetView


class ScaleError(RuntimeError):
    """Scaling the target failed; the message says why (RBAC, not found, ...)."""


class ScaleConflict(ScaleError):
    """The target changed since it was read: nothing was written; decide again."""


@dataclass(frozen=True)
class ScalableResource:
    """Where a kind's objects live in the API, for the scale subresource's path."""

    api_version: str
    kind: str
    resource: str

    @property
    def group(self) -> str:
        return self.api_version.split("/", 1)[0]

    @property
    def version(self) -> str:
        return self.api_version.split("/", 1)[1]


class NotScalable(Exception):
    """The kind is not served, not namespaced, or has no scale subresource."""


def resource_for(api_version: str, kind: str, resources: Mapping[str, Any]) -> ScalableResource:
    """The namespaced resource of ``kind`` with a scale subresource, from an APIResourceList.

    Raises NotScalable with a message that names what is missing and the fix.
    """
    listed = resources.get("resources") or []
    names = {str(r.get("name")) for r in listed}
    for item in listed:
        name = str(item.get("name") or "")
        if item.get("kind") != kind or "/" in name:
            continue
        if not item.get("namespaced"):
            raise NotScalable(f"{kind} ({api_version}) is cluster-scoped: only objects in the "
                              "AIWorkload's namespace can be scaled")  # fmt: skip
        if f"{name}/scale" not in names:
            raise NotScalable(
                f"{kind} ({api_version}) has no scale subresource: an autoscaler can only "
                "set the replicas of kinds that have one (a CRD declares it under "
                "subresources.scale)"
            )
        return ScalableResource(api_version, kind, name)
    raise NotScalable(
        f"{api_version} serves no kind {kind}: check targetRef.apiVersion and kind "
        "(kubectl api-resources lists them), or install the CRD first"
    )


class ScalableKinds:
    """Discovery of the scalable resources, cached: CRDs come and go, so an answer is
    kept for ``ttl`` seconds and a miss for ``miss_ttl`` (a CRD installed after the
    workload is picked up within that)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        ttl: float = 600.0,
        miss_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.ttl, self.miss_ttl, self.clock = ttl, miss_ttl, clock
        self._cache: dict[tuple[str, str], tuple[float, ScalableResource | NotScalable]] = {}
        self._lock = threading.Lock()

    def resolve(self, api_version: str, kind: str) -> ScalableResource:
        """The resource of ``kind``; raises NotScalable (or ApiException when the API
        server cannot be asked)."""
        key = (api_version, kind)
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            if isinstance(cached[1], NotScalable):
                raise cached[1]
            return cached[1]
        if "/" not in api_version:
            raise NotScalable(f"{kind} ({api_version}): kinds of the core group are not scaled")
        group, version = api_version.split("/", 1)
        try:
            raw: Any = client.CustomObjectsApi(self.api).get_api_resources(
                group, version, _preload_content=False
            )
            listing: Mapping[str, Any] = json.loads(raw.data)
        except ApiException as exc:
            if exc.status != 404:
                raise
            listing = {}
        try:
            found = resource_for(api_version, kind, listing)
        except NotScalable as missing:
            with self._lock:
                self._cache[key] = (now + self.miss_ttl, missing)
            raise
        with self._lock:
            self._cache[key] = (now + self.ttl, found)
        return found


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """Ready and not on its way out: a terminating pod serves no new requests."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def view_of_scale(scale: Mapping[str, Any], ready: int | None) -> TargetView:
    """A TargetView from a Scale object and the count of its ready pods.

    A Scale at zero omits ``spec.replicas``. Without a selector in the scale
    (a CRD without labelSelectorPath) pods cannot be found: the replicas the
    scale reports in status stand in for the ready count.
    """
    spec, status = scale.get("spec") or {}, scale.get("status") or {}
    selector = status.get("selector") or None
    replicas = int(spec.get("replicas") or 0)
    if ready is None:
        ready = min(replicas, int(status.get("replicas") or 0))
    return TargetView(replicas=replicas, ready=ready, selector=selector, generation=0)


def read_target(
    api: client.ApiClient, kinds: ScalableKinds, namespace: str, api_version: str, kind: str,
    name: str,
) -> TargetView | TargetUnavailable | None:  # fmt: skip
    """The target as its scale subresource and its pods show it; None when it is gone."""
    try:
        resource = kinds.resolve(api_version, kind)
    except NotScalable as exc:
        return TargetUnavailable(TargetProblem.NOT_SCALABLE, str(exc))
    objects = client.CustomObjectsApi(api)
    try:
        raw: Any = objects.get_namespaced_custom_object_scale(
            resource.group, resource.version, namespace, resource.resource, name,
            _preload_content=False,
        )  # fmt: skip
        scale: dict[str, Any] = json.loads(raw.data)
    except ApiException as exc:
        if exc.status == 404:
            return None
        if exc.status == 403:
            return TargetUnavailable(TargetProblem.FORBIDDEN, _forbidden(resource, "get"))
        raise
    selector = (scale.get("status") or {}).get("selector") or None
    ready = None
    if selector:
        pods: Any = client.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=str(selector), _preload_content=False
        )
        items = json.loads(pods.data).get("items") or []
        ready = sum(1 for pod in items if pod_is_ready(pod))
    return view_of_scale(scale, ready)


def _forbidden(resource: ScalableResource, verb: str) -> str:
    group = resource.group or '""'
    return (
        f"the operator may not {verb} {resource.resource}/scale (group {group}): add "
        f"{{apiGroup: {group}, resource: {resource.resource}}} to the chart value "
        "rbac.scaleTargets"
    )


def patch_scale(
    api: client.ApiClient,
    resource: ScalableResource,
    namespace: str,
    name: str,
    replicas: int,
    expected: int | None = None,
) -> None:
    """Set the replicas of ``name`` through its scale subresource.

    With ``expected`` (the replicas the decision was made from) the write never
    overwrites a newer change: one JSON patch tests that the replicas are still
    ``expected`` and replaces them, atomically on the server, so no read (and no
    ``get`` permission) is needed. When someone ran ``kubectl scale`` meanwhile the
    test fails and ScaleConflict is raised, so the caller decides again.
    """
    what = f"{resource.kind} {namespace}/{name}"
    bodies: list[tuple[str, Any]] = [
        ("application/merge-patch+json", {"spec": {"replicas": replicas}})
    ]
    if expected is not None:
        bodies = [
            (
                "application/json-patch+json",
                [
                    {"op": "test", "path": "/spec/replicas", "value": expected},
                    {"op": "replace", "path": "/spec/replicas", "value": replicas},
                ],
            )
        ]
        if expected == 0:
            # A Scale at zero has no spec.replicas at all (it is omitted when empty), so
            # "still zero" is "spec still empty"; both forms are tried, the empty one first.
            bodies.insert(
                0,
                (
                    "application/json-patch+json",
                    [
                        {"op": "test", "path": "/spec", "value": {}},
                        {"op": "add", "path": "/spec/replicas", "value": replicas},
                    ],
                ),
            )
    objects = client.CustomObjectsApi(api)
    for i, (content_type, body) in enumerate(bodies):
        try:
            objects.patch_namespaced_custom_object_scale(
                resource.group, resource.version, namespace, resource.resource, name, body,
                _content_type=content_type,
            )  # fmt: skip
            return
        except ApiException as exc:
            if expected is not None and exc.status in (409, 422):
                if i + 1 < len(bodies):
                    continue
                raise ScaleConflict(
                    f"{what} no longer has the {expected} replicas the decision was made from"
                ) from exc
            if exc.status == 403:
                raise ScaleError(f"scaling {what}: {_forbidden(resource, 'patch')}") from exc
            raise ScaleError(f"scaling {what} failed: {exc.reason}") from exc
