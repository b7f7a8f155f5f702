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
    """GPUs requested (fractional GPUs count by fraction)."""
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

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed") or self.terminating

    @property
    def daemonset(self) -> bool:
        return self.controller_kind == "DaemonSet"


@dataclass(frozen=True)
class NodeSnapshot:
    """One GPU node of a pool."""

    name: str
    pool: str
    gpus: float
    ready: bool = True
    annotations: dict[str, str] = field(default_factory=dict)
    being_deleted: bool = False
