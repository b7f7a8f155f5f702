"""GPU use of pods and GPU counts of nodes, read from their Kubernetes bodies.

The rules (which resources are GPUs, what a unit is worth) are the core's
(``core.gpus``); this module only turns API objects into the numbers they need,
so idle shutdown and cost allocation count GPUs the same way.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from gpufinops.adapters.jobs import parse_quantity
from gpufinops.core.gpus import (
    GpuResource,
    effective_requests,
    node_gpus,
)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _container_requests(container: Any) -> dict[str, float]:
    """Requests, with limits standing in (extended resources may be given as limits only)."""
    resources = _mapping(_mapping(container).get("resources"))
    out: dict[str, float] = {}
    for section in ("limits", "requests"):  # requests win where both are given
        for name, raw in _mapping(resources.get(section)).items():
            value = parse_quantity(raw)
            if value is not None:
                out[str(name)] = value
    return out


def pod_requests(spec: Mapping[str, Any]) -> dict[str, float]:
    """What the pod holds per resource: containers summed, or the largest init container."""
    containers = spec.get("containers")
    inits = spec.get("initContainers")
    return effective_requests(
        [_container_requests(c) for c in (containers if isinstance(containers, list) else [])],
        [_container_requests(c) for c in (inits if isinstance(inits, list) else [])],
    )


def gpu_requests(spec: Mapping[str, Any], rules: Sequence[GpuResource]) -> dict[str, float]:
    """Only the GPU resources among the pod's requests (what an index needs to keep)."""
    return {
        name: value
        for name, value in pod_requests(spec).items()
        if value > 0 and any(r.matches(name) for r in rules)
    }


def claim_count(spec: Mapping[str, Any]) -> int:
    """DRA resource claims the pod holds (``spec.resourceClaims``)."""
    claims = spec.get("resourceClaims")
    return len(claims) if isinstance(claims, list) else 0


def node_gpu_count(body: Mapping[str, Any], rules: Sequence[GpuResource]) -> float:
    """Physical GPUs of a node, from its labels or its allocatable GPU resources."""
    meta, status = _mapping(body.get("metadata")), _mapping(body.get("status"))
    allocatable = {
        str(k): v
        for k, raw in _mapping(status.get("allocatable")).items()
        if (v := parse_quantity(raw)) is not None
    }
    labels = {str(k): str(v) for k, v in _mapping(meta.get("labels")).items()}
    return node_gpus(allocatable, labels, rules)
