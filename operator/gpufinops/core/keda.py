"""A KEDA ScaledObject with a Prometheus trigger, as the AIWorkload that reads the same signal.

The AIWorkload is made in ``Recommend`` mode, with forecasts off: next to the
ScaledObject it changes nothing, and its status and ``Recommendation`` Events
say what it would have done on the same query — the way to compare before
switching. What has no counterpart is listed in ``notes`` rather than dropped
silently: the Prometheus address and credentials are the operator's own config,
KEDA's ``pollingInterval`` is the operator's ``--sync-seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gpufinops.api.resource import GROUP, KIND, VERSION
from gpufinops.api.spec import AIWorkloadSpec

KEDA_MIN_REPLICAS = 0
KEDA_MAX_REPLICAS = 100
KEDA_COOLDOWN_SECONDS = 300


class ConversionError(ValueError):
    """The ScaledObject cannot be converted; the message names the field."""


@dataclass
class Converted:
    """One AIWorkload manifest and what of the ScaledObject it does not carry."""

    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConversionError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConversionError(f"{where}: {value!r} is not a number") from None
    return number


def convert(scaled_object: Mapping[str, Any], *, team: str | None = None) -> Converted:
    """The AIWorkload for ``scaled_object``; ``team`` books its cost (else its ``team`` label)."""
    if scaled_object.get("kind") != "ScaledObject":
        raise ConversionError(f"kind: {scaled_object.get('kind')!r} is not a ScaledObject")
    meta = _mapping(scaled_object.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ConversionError("metadata.name: missing")
    spec = _mapping(scaled_object.get("spec"), "spec")
    target = _mapping(spec.get("scaleTargetRef"), "spec.scaleTargetRef")
    kind = target.get("kind", "Deployment")
    if kind != "Deployment":
        raise ConversionError(
            f"spec.scaleTargetRef.kind: {kind!r}; an AIWorkload scales Deployments"
        )
    triggers = spec.get("triggers") or []
    if not isinstance(triggers, list):
        raise ConversionError("spec.triggers: expected a list")
    prometheus = [
        (i, _mapping(t, f"spec.triggers[{i}]"))
        for i, t in enumerate(triggers)
        if isinstance(t, Mapping) and t.get("type") == "prometheus"
    ]
    if not prometheus:
        raise ConversionError("spec.triggers: no trigger of type prometheus to convert")
    notes: list[str] = []
    index, trigger = prometheus[0]
    if len(triggers) > 1:
        others = [str(_mapping(t, "trigger").get("type")) for t in triggers if t is not trigger]
        notes.append(
            f"spec.triggers[{index}] converted; the other triggers ({', '.join(others)}) are not"
        )
    where = f"spec.triggers[{index}].metadata"
    metadata = _mapping(trigger.get("metadata"), where)
    query = metadata.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ConversionError(f"{where}.query: missing")
    threshold = _number(metadata.get("threshold", 5), f"{where}.threshold")
    if threshold <= 0:
        raise ConversionError(f"{where}.threshold: must be above 0")
    if trigger.get("metricType", "AverageValue") != "AverageValue":
        notes.append(
            f"spec.triggers[{index}].metricType {trigger.get('metricType')}: the AIWorkload "
            "reads the query as the total queue, divided by targetQueueDepthPerReplica"
        )
    for key, why in (
        ("serverAddress", "the Prometheus URL is the operator's config (prometheus.url)"),
        ("authModes", "credentials are the operator's config (prometheus.*)"),
        ("customHeaders", "headers are the operator's config (prometheus.headers)"),
        ("namespace", "a tenant header is the operator's config (prometheus.headers)"),
        ("activationThreshold", "activation at zero reads demand: see "
         "scaleToZero.activationThreshold"),
    ):  # fmt: skip
        if key in metadata:
            notes.append(f"{where}.{key} not carried over: {why}")
    if trigger.get("authenticationRef"):
        notes.append("authenticationRef not carried over: credentials are the operator's config")
    if "pollingInterval" in spec:
        notes.append("pollingInterval not carried over: the operator's --sync-seconds is its own")

    minimum = int(_number(spec.get("minReplicaCount", KEDA_MIN_REPLICAS), "spec.minReplicaCount"))
    maximum = int(_number(spec.get("maxReplicaCount", KEDA_MAX_REPLICAS), "spec.maxReplicaCount"))
    inference: dict[str, Any] = {
        "targetRef": {"name": target.get("name")},
        "minReplicas": minimum,
        "maxReplicas": maximum,
        "metrics": {"server": "custom", "queueQuery": query},
        "targetQueueDepthPerReplica": threshold,
        "forecast": {"enabled": False},
    }
    if minimum == 0:
        cooldown = int(_number(spec.get("cooldownPeriod", KEDA_COOLDOWN_SECONDS), "cooldownPeriod"))
        inference["scaleToZero"] = {"enabled": True, "idleSeconds": cooldown}
    fallback = _mapping(spec.get("fallback"), "spec.fallback")
    if fallback:
        inference["fallback"] = {
            k: fallback[k] for k in ("failureThreshold", "replicas", "behavior") if k in fallback
        }
    advanced = _mapping(spec.get("advanced"), "spec.advanced")
    hpa = _mapping(advanced.get("horizontalPodAutoscalerConfig"), "horizontalPodAutoscalerConfig")
    if hpa.get("behavior"):
        inference["behavior"] = hpa["behavior"]
    labels = _mapping(meta.get("labels"), "metadata.labels")
    booked = team or labels.get("team")
    if not booked:
        booked = "unassigned"
        notes.append("costAllocation.team is 'unassigned': give --team")
    body = {
        "type": "Inference",
        "mode": "Recommend",
        "costAllocation": {"team": booked},
        "inference": inference,
    }
    try:
        AIWorkloadSpec.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ConversionError(
            f"the AIWorkload would be invalid: spec.{path}: {first['msg']}"
        ) from None
    out_meta: dict[str, Any] = {"name": name}
    if meta.get("namespace"):
        out_meta["namespace"] = meta["namespace"]
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": out_meta,
        "spec": body,
    }
    return Converted(manifest, notes)
