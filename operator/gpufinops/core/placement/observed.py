"""What the placement core reads of a Job (or JobSet) and its pods, as plain data.

``adapters.jobs`` builds these from the API server's objects; the core decides
from them alone, so the simulator and the operator feed it the same things.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobView:
    """The parts of a Job the placement loop reads."""

    name: str
    uid: str
    generation: int
    suspended: bool
    started: bool
    """``status.startTime`` is set: the template is immutable until the controller clears it."""
    active: int
    succeeded: int
    failed: int
    complete: bool
    failed_permanently: bool
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]
    gpus_per_pod: float
    parallelism: int
    owned_by: str | None
    """Name of the AIWorkload that owns the Job (controller reference), if any."""
    owner_uid: str | None = None
    """UID of that AIWorkload: the Job is a workload's own only when it is that workload's."""
    kueue_queue: str | None = None
    """The Kueue LocalQueue that admits the Job (label ``kueue.x-k8s.io/queue-name``):
    Kueue then owns its ``suspend`` and placement, never gpufinops."""
    kind: str = "Job"
    """Job, or JobSet (whose pods belong to its child Jobs)."""
    jobset: tuple[str, str] | None = None
    """(name, uid) of the JobSet that controls this Job, if one does."""
    replicated_jobs: tuple[Mapping[str, Any], ...] = ()
    """A JobSet's ``spec.replicatedJobs`` as stored (placement rewrites each template)."""
    resource_version: str | None = None


@dataclass(frozen=True)
class PodView:
    """One pod of the Job."""

    uid: str
    name: str
    node: str | None
    phase: str
    unschedulable: bool
    disrupted: str | None
    """Reason of a True DisruptionTarget condition (EvictionByEvictionAPI, ...)."""
    terminating: bool
    job_uid: str | None = None
    """UID of the Job that controls the pod (its controller ownerReference); None: the pod
    belongs to no Job, whatever its labels say, and never counts for a workload."""
