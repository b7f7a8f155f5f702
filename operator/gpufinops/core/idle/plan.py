"""Which idle nodes of a pool to shut down this interval, within the budget."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpufinops.core.idle.model import NodeSnapshot, PodSnapshot
from gpufinops.core.idle.rules import IdleTimer, blockers, disruption_allowance, is_idle


@dataclass(frozen=True)
class PoolPolicy:
    """A pool's idle-shutdown settings, as the rules need them."""

    idle_after_seconds: float = 600.0
    max_nodes_per_interval: int | None = 1
    max_percent: float | None = None
    in_window: bool = True
    """False outside the pool's shutdown schedule (then nothing is shut down)."""
    dry_run: bool = False


@dataclass(frozen=True)
class NodeVerdict:
    node: str
    idle: bool
    timer: IdleTimer
    shut_down: bool
    reasons: tuple[str, ...]
    """Why the node is kept (empty when it is shut down or simply busy)."""


def plan_pool(
    nodes: Sequence[NodeSnapshot],
    pods_by_node: Mapping[str, Sequence[PodSnapshot]],
    timers: Mapping[str, IdleTimer],
    policy: PoolPolicy,
    now: float,
    utilization_low: Mapping[str, bool | None] | None = None,
) -> list[NodeVerdict]:
    """One verdict per node; nodes idle the longest go first when the budget is short."""
    deleting = sum(1 for n in nodes if n.being_deleted)
    not_ready = sum(1 for n in nodes if not n.ready and not n.being_deleted)
    allowance = disruption_allowance(
        len(nodes), max_percent=policy.max_percent, max_nodes=policy.max_nodes_per_interval,
        deleting=deleting, not_ready=not_ready,
    )  # fmt: skip
    verdicts: dict[str, NodeVerdict] = {}
    candidates: list[tuple[float, str]] = []
    for node in nodes:
        pods = pods_by_node.get(node.name, ())
        low = (utilization_low or {}).get(node.name)
        idle = is_idle(pods, low)
        timer = timers.get(node.name, IdleTimer(None)).observe(idle, now)
        reasons: list[str] = []
        if idle and timer.expired(policy.idle_after_seconds, now):
            reasons = blockers(node, pods)
            if not policy.in_window:
                reasons.append("outside the pool's shutdown schedule")
            if not reasons:
                assert timer.since is not None
                candidates.append((timer.since, node.name))
        verdicts[node.name] = NodeVerdict(node.name, idle, timer, False, tuple(reasons))
    for _, name in sorted(candidates)[:allowance]:
        v = verdicts[name]
        verdicts[name] = NodeVerdict(v.node, v.idle, v.timer, not policy.dry_run,
                                     ("dry run",) if policy.dry_run else ())  # fmt: skip
    for _, name in sorted(candidates)[allowance:]:
        v = verdicts[name]
        verdicts[name] = NodeVerdict(v.node, v.idle, v.timer, False,
                                     ("disruption budget exhausted",))  # fmt: skip
    return [verdicts[n.name] for n in nodes]


def still_safe(
    node: NodeSnapshot, pods: Sequence[PodSnapshot], utilization_low: bool | None = None
) -> tuple[bool, list[str]]:
    """The re-check immediately before acting: a pod may have landed during the timer,
    or (utilisation configured) its GPUs may have become busy again."""
    reasons = blockers(node, pods)
    if not is_idle(pods, utilization_low):
        reasons.append(
            "a GPU pod is running on the node again"
            if utilization_low is None
            else "its GPUs are busy again (or their utilisation is unknown)"
        )
    return (not reasons, reasons)
