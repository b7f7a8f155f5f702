"""When is a GPU node idle, and when is it safe to take away.

A node is removed only when *every* rule allows it: shutting down a node that
holds work drops traffic or loses a training run, which costs far more than
the idle GPU-hours saved. Each refusal carries its reason, for Events.
"""

import math
import re
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
    """Pods that make a node busy: GPU work (any GPU resource or claim) not finished.

    A terminating pod still holds its GPUs until it is gone; a DaemonSet or
    static pod holding GPUs (a per-node inference server, say) is work too.
    """
    return [p for p in pods if p.holds_gpus and not p.finished]


def to_evict(pods: Iterable[PodSnapshot]) -> list[PodSnapshot]:
    """What a drain evicts: every pod but the node's own (DaemonSet, mirror) and those
    already finished or on their way out."""
    return [p for p in pods if not p.terminal and not p.stays_with_node]


def still_on_node(pods: Iterable[PodSnapshot]) -> list[PodSnapshot]:
    """What a drain waits for: evicted pods count until they are gone."""
    return [p for p in pods if not p.finished and not p.stays_with_node]


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


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_seconds(text: str) -> float | None:
    """A Go duration (``5m``, ``1h30m``, ``90s``) in seconds; None when it is not one."""
    text = text.strip()
    if not text or _DURATION_PART.sub("", text) != "":
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def karpenter_protection_active(pod: PodSnapshot, now: float | None) -> bool:
    """``karpenter.sh/do-not-disrupt`` on a pod: ``"true"`` protects it for good, a
    duration protects it until that long after its start (as Karpenter reads it).

    A value that is neither protects it too, and so does a duration whose start
    or ``now`` is unknown: doubt keeps the node.
    """
    raw = pod.annotations.get(KARPENTER_DO_NOT_DISRUPT)
    if raw is None or raw.strip().lower() in ("false", ""):
        return False
    duration = go_duration_seconds(raw)
    if duration is None or pod.started is None or now is None:
        return True
    return now < pod.started + duration


def pod_blockers(
    pod: PodSnapshot, now: float | None = None, *, during_drain: bool = False
) -> list[str]:
    """Reasons a pod on the node forbids draining it (Cluster Autoscaler's and Karpenter's).

    ``now`` dates time-limited protections; without it they count as still on.
    ``during_drain``: the drain has begun, so a PodDisruptionBudget with no
    disruption left now only delays the pod's eviction (refused, retried).
    """
    if pod.terminal or pod.stays_with_node:
        return []
    who = f"pod {pod.key}"
    out = []
    if pod.pdb_blocks and not during_drain:
        out.append(f"{who} is protected by a PodDisruptionBudget that allows no disruption")
    if _truthy(pod.annotations.get(DO_NOT_DISRUPT)):
        out.append(f"{who} has {DO_NOT_DISRUPT}")
    if karpenter_protection_active(pod, now):
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


def blockers(
    node: NodeSnapshot,
    pods: Sequence[PodSnapshot],
    now: float | None = None,
    *,
    during_drain: bool = False,
) -> list[str]:
    """Every reason not to shut ``node`` down now; empty means it is safe."""
    out = node_blockers(node)
    for pod in pods:
        out.extend(pod_blockers(pod, now, during_drain=during_drain))
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
        return self.since is not None and self.idle_seconds(now) >= after_seconds
