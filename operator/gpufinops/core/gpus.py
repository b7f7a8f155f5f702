"""Which resources are GPUs, and how many GPUs a pod holds or a node has (pure).

Counting only ``nvidia.com/gpu`` misses most of how GPUs are handed out today:
MIG slices, time-sliced and MPS replicas, AMD and Intel devices, HAMi-style
sharing and DRA resource claims. A pod using any of them is GPU work: a node
running it is busy, whatever else it advertises. Taking such a node away is
an outage, so the rule is deliberately wide: anything that matches a GPU
resource pattern, and any resource claim, makes a pod GPU work.

How much of a GPU a unit is worth (for cost and for a node's GPU count):

- a whole device (``nvidia.com/gpu``, ``amd.com/gpu``, ``gpu.intel.com/i915``): 1;
- a MIG slice ``nvidia.com/mig-<g>g.<mem>gb``: ``g / 7`` (the compute slices of
  a 7-slice A100/H100; a 4-slice A30 profile is under-priced by this rule, set
  ``gpusPerUnit`` for it);
- a time-sliced or MPS replica of an NVIDIA device (``nvidia.com/gpu.shared``, or
  ``nvidia.com/gpu`` itself when the plugin does not rename shared devices):
  ``1 / replicas`` of what the device is worth, from the node's
  ``nvidia.com/gpu.replicas`` label (GPU feature discovery sets it), else 1;
- companions that only refine another request (HAMi's ``nvidia.com/gpumem`` and
  ``nvidia.com/gpucores``, Intel's ``gpu.intel.com/millicores``): 0;
- a DRA resource claim: GPU work, but 0 GPUs here (its devices are in the
  ResourceClaim, which is not read).

Patterns are ``fnmatch`` globs; the first that matches a resource name decides.
"""

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from gpufinops.config.model import OperatorConfig

REPLICAS_LABEL = "nvidia.com/gpu.replicas"
"""GPU feature discovery: how many replicas each GPU is shared into (time-slicing, MPS)."""
COUNT_LABEL = "nvidia.com/gpu.count"
"""GPU feature discovery: physical GPUs on the node."""
MIG_COMPUTE_SLICES = 7
NVIDIA = "nvidia.com/"
_MIG = re.compile(r"/mig-(\d+)g\.")


@dataclass(frozen=True)
class GpuResource:
    """An extended resource (glob) that is a GPU, and what one unit of it is worth."""

    pattern: str
    gpus_per_unit: float | None = None
    """None: derived from the name (MIG profile, ``.shared`` replicas, else 1)."""

    def matches(self, resource: str) -> bool:
        return fnmatchcase(resource, self.pattern)


DEFAULT_GPU_RESOURCES: tuple[GpuResource, ...] = (
    GpuResource("nvidia.com/gpumem", 0.0),
    GpuResource("nvidia.com/gpumem-percentage", 0.0),
    GpuResource("nvidia.com/gpucores", 0.0),
    GpuResource("nvidia.com/gpu"),
    GpuResource("nvidia.com/gpu.shared"),
    GpuResource("nvidia.com/mig-*"),
    GpuResource("amd.com/gpu"),
    GpuResource("gpu.intel.com/i915"),
    GpuResource("gpu.intel.com/xe"),
    GpuResource("gpu.intel.com/*", 0.0),
)


def rules_of(config: OperatorConfig | None) -> tuple[GpuResource, ...]:
    """The config's ``gpuResources`` first (first match wins), then the built-in ones."""
    extra = config.gpu_resources if config is not None else []
    return (*(GpuResource(r.pattern, r.gpus_per_unit) for r in extra), *DEFAULT_GPU_RESOURCES)


def rule_for(resource: str, rules: Sequence[GpuResource]) -> GpuResource | None:
    return next((r for r in rules if r.matches(resource)), None)


def gpus_per_unit(resource: str, rule: GpuResource, node_labels: Mapping[str, str]) -> float:
    """What one unit of ``resource`` is worth in GPUs on a node with ``node_labels``."""
    if rule.gpus_per_unit is not None:
        return rule.gpus_per_unit
    mig = _MIG.search(resource)
    whole = min(1.0, int(mig.group(1)) / MIG_COMPUTE_SLICES) if mig else 1.0
    if resource.startswith(NVIDIA):
        # NVIDIA's device plugin shares each device into `replicas` (time-slicing, MPS),
        # renamed (`.shared`) or not; GPU feature discovery labels the node with it.
        replicas = _positive(node_labels.get(REPLICAS_LABEL))
        return whole / replicas if replicas else whole
    return whole


def _positive(raw: object) -> float | None:
    try:
        value = float(str(raw))
    except (TypeError, ValueError):
        return None
    return value if value > 0 and math.isfinite(value) else None


@dataclass(frozen=True)
class GpuUse:
    """What a pod holds: whether it is GPU work, and how many GPUs that is worth."""

    work: bool
    gpus: float


def gpu_use(
    requests: Mapping[str, float],
    claims: int,
    rules: Sequence[GpuResource],
    node_labels: Mapping[str, str] | None = None,
) -> GpuUse:
    """A pod's GPU use from its effective requests per resource and its claim count."""
    labels = node_labels or {}
    gpus, work = 0.0, claims > 0
    for resource, amount in requests.items():
        rule = rule_for(resource, rules)
        if rule is None or not amount > 0:
            continue
        work = True
        gpus += amount * gpus_per_unit(resource, rule, labels)
    return GpuUse(work, gpus)


def node_gpus(
    allocatable: Mapping[str, float], labels: Mapping[str, str], rules: Sequence[GpuResource]
) -> float:
    """Physical GPUs of a node: GPU feature discovery's count, else its GPU resources' worth."""
    counted = _positive(labels.get(COUNT_LABEL))
    if counted is not None:
        return counted
    return gpu_use(allocatable, 0, rules, labels).gpus


def effective_requests(
    containers: Iterable[Mapping[str, float]], init_containers: Iterable[Mapping[str, float]]
) -> dict[str, float]:
    """Per resource, what a pod holds: the containers' sum, or the largest init container.

    Each mapping is one container's requests (limits standing in where a
    request is missing, as the API server defaults them for extended resources).
    """
    total: dict[str, float] = {}
    for c in containers:
        for name, value in c.items():
            total[name] = total.get(name, 0.0) + value
    for c in init_containers:
        for name, value in c.items():
            total[name] = max(total.get(name, 0.0), value)
    return total
