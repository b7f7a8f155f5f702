"""What the idle-node rules look at: plain snapshots of nodes, pods and budgets.

The adapter fills these from watch-fed indexes; the rules never see the API.
"""

from dataclasses import dataclass, field

DO_NOT_DISRUPT = "gpufinops.dev/do-not-disrupt"
KARPENTER_DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
CA_SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
CA_SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
SCALE_DOWN_DISABLED = "gpufinops.dev/scale-down-disabled"
IDLE_TAINT = "gpufinops.dev/idle-shutdown"


@dataclass(frozen=True)
class PodSnapshot:
    """One pod bound to a node, reduced to what the rules need."""

    namespace: str
    name: str
    node: str
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    gpus: float = 0.0
    """GPUs held, in GPU equivalents (``core.gpus``: slices and shares by fraction)."""
    gpu_work: bool = False
    """Uses any GPU resource or a DRA resource claim, even one worth 0 GPUs here."""
    controller_kind: str | None = None
    """Kind of the owning controller (ReplicaSet, StatefulSet, Job, DaemonSet...), if any."""
    annotations: dict[str, str] = field(default_factory=dict)
    local_storage: bool = False
    """Uses an emptyDir not backed by memory, or a hostPath volume."""
    pdb_blocks: bool = False
    """A PodDisruptionBudget selecting this pod currently allows no disruption."""
    has_pdb: bool = False
    """Any PodDisruptionBudget selects this pod."""
    terminating: bool = False
    """Being deleted: it still holds the node (and its GPUs) until it is gone."""
    mirror: bool = False
    """A static pod's mirror: the kubelet owns it, eviction cannot move it (as kubectl drain)."""
    started: float | None = None
    """When the pod started (epoch seconds), for do-not-disrupt durations."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def terminal(self) -> bool:
        """Finished or on its way out: nothing to evict, nothing it can block."""
        return self.finished or self.terminating

    @property
    def daemonset(self) -> bool:
        return self.controller_kind == "DaemonSet"

    @property
    def holds_gpus(self) -> bool:
        return self.gpu_work or self.gpus > 0

    @property
    def stays_with_node(self) -> bool:
        """DaemonSet and mirror pods belong to the node: a drain neither evicts nor waits
        for them."""
        return self.daemonset or self.mirror


@dataclass(frozen=True)
class NodeSnapshot:
    """One GPU node of a pool."""

    name: str
    pool: str
    gpus: float
    ready: bool = True
    annotations: dict[str, str] = field(default_factory=dict)
    being_deleted: bool = False
    idle_tainted: bool = False
    """Our ``NoSchedule`` taint is on the node."""
