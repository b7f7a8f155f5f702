"""Reading Kubernetes manifests for the estimate: GPUs per pod and pods per target.

Input comes from arbitrary YAML in a pull request, so every field is checked
before use and every failure names the file and the field.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import isfinite
from typing import Any

from gpufinops.core.gpus import (
    DEFAULT_GPU_RESOURCES,
    GpuResource,
    effective_requests,
    gpu_use,
    gpus_per_unit,
    rule_for,
)


class EstimateError(ValueError):
    """A manifest cannot be estimated; names the file and the field to fix."""

    def __init__(self, source: str, path: str, message: str) -> None:
        super().__init__(f"{source}: {path}: {message}")
        self.source, self.path, self.message = source, path, message


@dataclass(frozen=True)
class Manifest:
    """One parsed YAML document and the file it came from."""

    source: str
    doc: Mapping[str, Any]


def mapping(value: Any, source: str, path: str) -> Mapping[str, Any]:
    """``value`` as a mapping (absent: empty), or an error naming the field."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EstimateError(source, path, f"expected a mapping, got {type(value).__name__}")
    return value


def _list(value: Any, source: str, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EstimateError(source, path, f"expected a list, got {type(value).__name__}")
    return value


def metadata(m: Manifest) -> Mapping[str, Any]:
    return mapping(m.doc.get("metadata"), m.source, "metadata")


def namespace(m: Manifest) -> str:
    return str(metadata(m).get("namespace") or "default")


def _gpu_value(raw: Any, source: str, path: str) -> float:
    """A GPU quantity: a non-negative number (fractions for shared GPUs)."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise EstimateError(source, path, f"{raw!r} is not a GPU count") from None
    if not (value >= 0 and isfinite(value)):
        raise EstimateError(source, path, f"{raw!r} is not a GPU count")
    return value


def _priced(resource: str, rules: Sequence[GpuResource]) -> bool:
    """Whether a unit of ``resource`` is worth GPUs (companions worth 0 are not read)."""
    rule = rule_for(resource, rules)
    return rule is not None and gpus_per_unit(resource, rule, {}) > 0


def _container_gpus(
    container: Any, source: str, path: str, rules: Sequence[GpuResource]
) -> dict[str, float]:
    """Units of each GPU resource of a container: its limits, else its requests."""
    resources = mapping(mapping(container, source, path).get("resources"), source, path)
    out: dict[str, float] = {}
    for section in ("limits", "requests"):
        values = mapping(resources.get(section), source, f"{path}.resources.{section}")
        for raw_name, raw in values.items():
            name = str(raw_name)
            if name not in out and _priced(name, rules):
                out[name] = _gpu_value(raw, source, f"{path}.resources.{section}")
    return out


def pod_gpus(
    pod_spec: Any, source: str, path: str, rules: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES
) -> float:
    """GPUs one pod holds: the containers' sum, or the largest init container if more.

    Every GPU resource of ``rules`` counts by its worth (``core.gpus``): a MIG
    slice ``g/7``, a whole device 1. No node is known, so a time-sliced or MPS
    replica (``*.shared``) counts as a whole GPU unless ``rules`` set its worth.
    """
    if not isinstance(pod_spec, Mapping):
        raise EstimateError(source, path, "expected a pod spec (a mapping)")
    containers = _list(pod_spec.get("containers"), source, f"{path}.containers")
    inits = _list(pod_spec.get("initContainers"), source, f"{path}.initContainers")
    requests = effective_requests(
        [_container_gpus(c, source, f"{path}.containers[{i}]", rules)
         for i, c in enumerate(containers)],
        [_container_gpus(c, source, f"{path}.initContainers[{i}]", rules)
         for i, c in enumerate(inits)],
    )  # fmt: skip
    return gpu_use(requests, 0, rules).gpus


@dataclass(frozen=True)
class Pods:
    gpus: float
    count: int
    note: str | None = None


def target_pods(
    target: Manifest | None,
    kind: str,
    name: str,
    rules: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES,
) -> Pods:
    if target is None:
        return Pods(1.0, 1, f"{kind} {name} not among the files: assumed 1 GPU per pod")
    spec = mapping(target.doc.get("spec"), target.source, "spec")
    field_ = "parallelism" if kind == "Job" else "replicas"
    count = spec.get(field_, 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise EstimateError(target.source, f"spec.{field_}", f"{count!r} is not a pod count")
    template = mapping(spec.get("template"), target.source, "spec.template").get("spec")
    return Pods(pod_gpus(template, target.source, "spec.template.spec", rules), count)


class Targets:
    """Deployments, StatefulSets, Argo Rollouts and Jobs among the files (the kinds whose
    pod template is ``spec.template``), by kind, namespace and name."""

    def __init__(self, manifests: Sequence[Manifest]) -> None:
        self._by: dict[tuple[str, str, str], Manifest] = {}
        for m in manifests:
            kind = m.doc.get("kind")
            if kind not in ("Deployment", "StatefulSet", "Rollout", "Job"):
                continue
            name = metadata(m).get("name")
            if isinstance(name, str):
                self._by[(str(kind), namespace(m), name)] = m

    def get(self, kind: str, owner: Manifest, name: str) -> Manifest | None:
        return self._by.get((kind, namespace(owner), name))

    def all(self) -> list[tuple[str, Manifest]]:
        """(kind, manifest) of every target, in file order."""
        return [(kind, m) for (kind, _, _), m in self._by.items()]
