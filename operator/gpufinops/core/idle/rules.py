"""When is a GPU node idle, and when is it safe to take away.

A node is removed only when *every* rule allows it: shutting down a node that
holds work drops traffic or loses a training run, which costs far more than
the idle GPU-hours saved. Each refusal carries its reason, for Events.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gpufinops.core.clock import moved_with_the_clock
from gpufinops.core.idle.model import (
    CA_SAFE_TO_EVICT,
    CA_SCALE_DOWN_DISABLED,
    DO_NOT_DISRUPT,
    KARPENTER_DO_NOT_DISRUPT,
    SCALE_DOWN_DISABLED,
    NodeSnapshot,
    PodSnapshot,
)


def gpu_workload_pods(pods: Iterable[PodSnapshot]) -> list[PodSnapshot]:
    """Pods that make a node busy: they request GPUs, are not DaemonSet pods, not finished."""
    return [p for p in pods if p.gpus > 0 and not p.daemonset and not p.terminal]


def is_idle(pods: Iterable[PodSnapshot], utilization_below_threshold: bool | None = None) -> bool:
    """Idle: no GPU workload pod; or, with utilisation configured, every GPU stayed low.

    ``utilization_below_threshold`` is None when no threshold is configured, and
    False when unknown: missing utilisation data never makes a node idle.
    """
    if not gpu_workload_pods(pods):
        return True
    return utilization_below_threshold is True


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def node_blockers(node: NodeSnapshot) -> list[str]:
    """Reasons the node itself refuses to be shut down."""
    out = []
    for key in (CA_SCALE_DOWN_DISABLED, SCALE_DOWN_DISABLED, DO_NOT_DISRUPT,
                KARPENTER_DO_NOT_DISRUPT):  # fmt: skip
        if _truthy(node.annotations.get(key)):
            out.append(f"node annotation {key}=true")
    if node.being_deleted:
        out.append("node is already being deleted")
    return out


def pod_blockers(pod: PodSnapshot) -> list[str]:
    """Reasons a pod on the node forbids draining it (Cluster Autoscaler's and Karpenter's)."""
    if pod.terminal or pod.daemonset:
        return []
    who = f"pod {pod.key}"
    out = []
    if pod.pdb_blocks:
        out.append(f"{who} is protected by a PodDisruptionBudget that allows no disruption")
    if _truthy(pod.annotations.get(DO_NOT_DISRUPT)):
        out.append(f"{who} has {DO_NOT_DISRUPT}")
    if KARPENTER_DO_NOT_DISRUPT in pod.annotations and pod.annotations[
        KARPENTER_DO_NOT_DISRUPT
    ].strip().lower() not in ("false", ""):
        out.append(f"{who} has {KARPENTER_DO_NOT_DISRUPT}")
    if (pod.annotations.get(CA_SAFE_TO_EVICT) or "").strip().lower() == "false":
        out.append(f'{who} has {CA_SAFE_TO_EVICT}: "false"')
    safe_to_evict = _truthy(pod.annotations.get(CA_SAFE_TO_EVICT))
    if pod.local_storage and not safe_to_evict:
        out.append(f"{who} uses local storage")
    if pod.controller_kind is None and not safe_to_evict:
        out.append(f"{who} has no controller to recreate it")
    if pod.namespace == "kube-system" and not pod.has_pdb and not safe_to_evict:
        out.append(f"{who} is a kube-system pod without a PodDisruptionBudget")
    return out


def blockers(node: NodeSnapshot, pods: Sequence[PodSnapshot]) -> list[str]:
    """Every reason not to shut ``node`` down now; empty means it is safe."""
    out = node_blockers(node)
    for pod in pods:
        out.extend(pod_blockers(pod))
    return out


def disruption_allowance(
    total: int, *, max_percent: float | None, max_nodes: int | None, deleting: int, not_ready: int
) -> int:
    """How many more nodes of a pool may be shut down now (Karpenter's budget arithmetic).

    allowed = roundup(total * percent) - deleting - not ready, capped by ``max_nodes``;
    never negative.
    """
    limits = []
    if max_percent is not None:
        limits.append(math.ceil(total * max_percent / 100 - 1e-9))
    if max_nodes is not None:
        limits.append(max_nodes)
    allowed = min(limits) if limits else total
    return max(0, allowed - deleting - not_ready)


@dataclass(frozen=True)
class IdleTimer:
    """Since when a node has been idle (persisted on the node as an annotation)."""

    since: float | None

    def observe(self, idle: bool, now: float, *, stepped: float = 0.0) -> "IdleTimer":
        """Idle keeps the start; busy resets it, so the timer counts uninterrupted idleness.

        A wall-clock step (``stepped``, see ``core.clock``) moves the
        start with it: a forward jump does not make a node idle for longer than
        it was seen idle (no instant shutdown), a backward jump neither delays
        the shutdown by the jump nor leaves a start in the future.
        """
        if not idle:
            return IdleTimer(None)
        since = moved_with_the_clock(self.since, stepped, now)
        return IdleTimer(now if since is None else since)

    def idle_seconds(self, now: float) -> float:
        """How long the node has been idle as of ``now`` (0 when not idle); never negative."""
        return 0.0 if self.since is None else max(0.0, now - self.since)

    def expired(self, after_seconds: float, now: float) -> bool:
        return self.since is not None and now - self.since >= after_seconds
