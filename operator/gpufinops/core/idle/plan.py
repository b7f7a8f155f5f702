"""One interval of idle shutdown for a pool: what to do with each of its nodes.

The operator's loop observes a pool (nodes with their annotations, the pods on
each, GPU utilisation) and carries out the plan this module returns; it decides
nothing itself. So the disruption budget, the timers and the resumable shutdown
tested here are the ones that run.

Each node gets one plan: the idle timer to record, the step to take (taint,
drain, shut down, abort, or nothing), the pods to evict, and the Events that
report the decision. A node already in a shutdown phase is advanced by
``advance``, which the loop also calls again with pods re-listed from the API
server after every step, so no step is taken on a stale view.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpufinops.core.clock import moved_with_the_clock
from gpufinops.core.events import EventReason
from gpufinops.core.idle.model import NodeSnapshot, PodSnapshot
from gpufinops.core.idle.rules import (
    IdleTimer,
    blockers,
    disruption_allowance,
    gpu_workload_pods,
    is_idle,
    still_on_node,
    to_evict,
)
from gpufinops.core.idle.shutdown import (
    PHASE_ANNOTATION,
    REMOVAL_REQUESTED,
    Phase,
    Step,
    next_step,
)

IDLE_SINCE = "gpufinops.dev/idle-since"
DRAIN_STARTED = "gpufinops.dev/drain-started"
TAINTED_AT = "gpufinops.dev/tainted-at"


REPORTS = frozenset(
    {
        EventReason.IDLE_SHUTDOWN_DRY_RUN,
        EventReason.IDLE_SHUTDOWN_BLOCKED,
        EventReason.SHUTDOWN_REFUSED,
    }
)
"""Reports of a standing decision: posted when the decision changes, not every interval."""


@dataclass(frozen=True)
class NodeEvent:
    type: str
    reason: EventReason
    message: str


@dataclass(frozen=True)
class PoolPolicy:
    """A pool's idle-shutdown settings, as the rules need them."""

    idle_after_seconds: float = 600.0
    max_nodes_per_interval: int | None = 1
    max_percent: float | None = None
    in_window: bool = True
    """False outside the pool's shutdown schedule (then nothing new is shut down)."""
    dry_run: bool = False
    drain_timeout_seconds: float = 600.0
    utilization_percent: float | None = None
    """The pool's ``gpuUtilizationBelowPercent``, for messages."""
    deletion_delay_seconds: float = 5.0
    """How old the taint must be before the provider acts: a pod the scheduler had
    already chosen the node for binds meanwhile, and is seen (Cluster Autoscaler's
    node-deletion-delay-after-taint)."""
    releases_after_seconds: float | None = None
    """For a provider that only leaves the node to someone else (``drain``): how long
    after its removal was requested a node still there is given back."""


def _epoch(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


@dataclass(frozen=True)
class NodeState:
    """What the loop observed of one node: the node, its pods, its GPU utilisation."""

    node: NodeSnapshot
    pods: tuple[PodSnapshot, ...] = ()
    utilization_low: bool | None = None
    """None: no threshold configured; False: busy or unknown; True: every GPU stayed low."""
    refusal: str | None = None
    """Why the provider must not remove this node, when the loop recently learnt it."""

    @property
    def phase(self) -> Phase:
        raw = self.node.annotations.get(PHASE_ANNOTATION, "")
        return Phase(raw) if raw in Phase._value2member_map_ else Phase.NONE

    @property
    def timer(self) -> IdleTimer:
        return IdleTimer(_epoch(self.node.annotations.get(IDLE_SINCE)))

    @property
    def drain_started(self) -> float | None:
        return _epoch(self.node.annotations.get(DRAIN_STARTED))

    @property
    def tainted_at(self) -> float | None:
        return _epoch(self.node.annotations.get(TAINTED_AT))

    @property
    def removal_requested(self) -> float | None:
        return _epoch(self.node.annotations.get(REMOVAL_REQUESTED))


Record = Mapping[str, str | None]
"""Node annotations to set (None: remove) before a step is taken."""


@dataclass(frozen=True)
class NodePlan:
    """What to do with one node this interval."""

    node: str
    idle: bool
    timer: IdleTimer
    """The idle timer to record (``idle-since``)."""
    step: Step
    phase: Phase
    """The phase the node was seen in."""
    reasons: tuple[str, ...] = ()
    """Why the node is kept or the shutdown aborted."""
    evict: tuple[PodSnapshot, ...] = ()
    record: Record = field(default_factory=dict)
    """What to write on the node before taking the step (phase, drain start...)."""
    events: tuple[NodeEvent, ...] = field(default_factory=tuple)
    """Decisions to report now (the ShutDown Event waits for the provider's success)."""


def _at(value: float) -> str:
    return f"{value:.3f}"


def _idle_detected(state: NodeState, policy: PoolPolicy) -> NodeEvent:
    why = (
        f"every GPU below {policy.utilization_percent:g} % utilisation"
        if state.utilization_low and gpu_workload_pods(state.pods)
        else "no GPU pod on the node"
    )
    message = f"{why}; shutdown after {policy.idle_after_seconds:g}s if it stays idle"
    return NodeEvent("Normal", EventReason.IDLE_DETECTED, message)


def observe(state: NodeState, now: float, stepped: float) -> tuple[bool, IdleTimer]:
    """Whether the node is idle now, and its timer after this look."""
    idle = is_idle(state.pods, state.utilization_low)
    return idle, state.timer.observe(idle, now, stepped=stepped)


def unsafe_reasons(
    state: NodeState, idle: bool, now: float, *, draining: bool = False
) -> list[str]:
    """Why a node may not be (or go on being) shut down: a blocker, or work on it again.

    Once its drain has begun, a PodDisruptionBudget that allows no disruption
    *right now* is expected (each eviction uses the budget up until the
    replacement is ready): the eviction is refused and retried, and the drain
    timeout bounds the wait.
    """
    reasons = blockers(state.node, state.pods, now, during_drain=draining)
    if not idle:
        reasons.append(
            "a GPU pod is running on the node again"
            if state.utilization_low is None
            else "its GPUs are busy again (or their utilisation is unknown)"
        )
    return reasons


def claim_blockers(
    state: NodeState, policy: PoolPolicy, now: float, stepped: float = 0.0
) -> list[str]:
    """Why an idle node, not yet claimed, may not be claimed now (budget aside).

    The same rules decide in the plan and in the loop's fresh look just before
    it taints the node.
    """
    idle, timer = observe(state, now, stepped)
    if not idle or not timer.expired(policy.idle_after_seconds, now):
        return ["not idle for its whole timer"]
    reasons = unsafe_reasons(state, idle, now)
    if not policy.in_window:
        reasons.append("outside the pool's shutdown schedule")
    if state.refusal:
        reasons.append(state.refusal)
    return reasons


def claim(now: float) -> Record:
    """What tainting records: the phase, when, and nothing left from an earlier shutdown."""
    return {
        PHASE_ANNOTATION: Phase.TAINTED.value, TAINTED_AT: _at(now),
        DRAIN_STARTED: None, REMOVAL_REQUESTED: None,
    }  # fmt: skip


RELEASED: Record = {
    PHASE_ANNOTATION: None, DRAIN_STARTED: None, IDLE_SINCE: None, REMOVAL_REQUESTED: None,
    TAINTED_AT: None,
}  # fmt: skip
"""What an abort leaves: no phase, no timers (the node starts afresh)."""


def advance(state: NodeState, policy: PoolPolicy, now: float, stepped: float = 0.0) -> NodePlan:
    """The next step for a node already in a shutdown phase, or carrying our taint
    without one (after a fresh look at it)."""
    node, pods, phase = state.node, state.pods, state.phase
    idle, timer = observe(state, now, stepped)
    if node.being_deleted:
        return NodePlan(node.name, idle, timer, Step.AWAIT_REMOVAL, phase)
    if phase == Phase.NONE:
        # Our taint with no phase recorded: the record was lost (edited away, or
        # cleared around a taint that landed later). Nothing would ever lift it.
        return _abort(state, idle, timer, ["our taint was left without a recorded phase"])
    requested = state.removal_requested
    if requested is not None and phase == Phase.SHUTTING_DOWN:
        released = policy.releases_after_seconds
        if released is None or now - moved(requested, stepped, now) <= released:
            return NodePlan(node.name, idle, timer, Step.AWAIT_REMOVAL, phase)
        reason = f"nothing removed it within {released:.0f}s of the drain; given back"
        return _abort(state, idle, timer, [reason])
    draining = phase in (Phase.DRAINING, Phase.SHUTTING_DOWN)
    reasons = unsafe_reasons(state, idle, now, draining=draining)
    if policy.dry_run:
        reasons.append("dryRun is on")
    record: dict[str, str | None] = {}
    recorded = state.drain_started
    drain_started = moved(recorded, stepped, now) if recorded is not None else None
    if drain_started is not None and drain_started != recorded:
        record[DRAIN_STARTED] = _at(drain_started)
    if (
        draining
        and drain_started is not None
        and now - drain_started > policy.drain_timeout_seconds
    ):
        reasons.append(f"drain did not finish in {policy.drain_timeout_seconds:.0f}s")
    drained = not still_on_node(pods)
    step = next_step(phase, safe=not reasons, drained=drained)
    if step == Step.ABORT:
        return _abort(state, idle, timer, reasons)
    if step in (Step.DRAIN, Step.WAIT):
        evict = tuple(to_evict(pods))
        events: tuple[NodeEvent, ...] = ()
        if phase != Phase.DRAINING:
            record[PHASE_ANNOTATION] = Phase.DRAINING.value
            if drain_started is None:
                record[DRAIN_STARTED] = _at(now)
            if phase == Phase.TAINTED:
                message = f"evicting {len(evict)} pod(s) before shutdown"
                events = (NodeEvent("Normal", EventReason.DRAINING, message),)
        return NodePlan(node.name, idle, timer, step, phase, (), evict, record, events)
    # Drained and safe.
    if phase != Phase.SHUTTING_DOWN:
        record[PHASE_ANNOTATION] = Phase.SHUTTING_DOWN.value
        return NodePlan(node.name, idle, timer, Step.SHUT_DOWN, phase, record=record)
    tainted = moved(state.tainted_at, stepped, now) if state.tainted_at is not None else None
    if tainted is not None and now - tainted < policy.deletion_delay_seconds:
        return NodePlan(node.name, idle, timer, Step.WAIT, phase, record=record)
    return NodePlan(node.name, idle, timer, Step.SHUT_DOWN, phase, record=record)


def moved(start: float, stepped: float, now: float) -> float:
    """A recorded instant, as it reads after a clock step (``core.clock``)."""
    out = moved_with_the_clock(start, stepped, now)
    assert out is not None
    return out


def _abort(state: NodeState, idle: bool, timer: IdleTimer, reasons: list[str]) -> NodePlan:
    event = NodeEvent("Warning", EventReason.SHUTDOWN_ABORTED, "; ".join(reasons))
    return NodePlan(
        state.node.name, idle, timer, Step.ABORT, state.phase, tuple(reasons),
        record=RELEASED, events=(event,),
    )  # fmt: skip


def plan_pool(
    states: Sequence[NodeState], policy: PoolPolicy, now: float, stepped: float = 0.0
) -> list[NodePlan]:
    """One plan per node; nodes idle the longest go first when the budget is short.

    Nodes in a shutdown phase, or being deleted, count against the pool's
    disruption budget (as Karpenter counts its deleting nodes), so a slow drain
    or a slow provider never lets more nodes go at once than the budget allows.
    A node the provider refuses is no candidate: it never holds the budget.
    """
    in_progress = {
        s.node.name for s in states
        if s.phase != Phase.NONE or s.node.being_deleted or s.node.idle_tainted
    }  # fmt: skip
    not_ready = sum(1 for s in states if not s.node.ready and s.node.name not in in_progress)
    allowance = disruption_allowance(
        len(states), max_percent=policy.max_percent, max_nodes=policy.max_nodes_per_interval,
        deleting=len(in_progress), not_ready=not_ready,
    )  # fmt: skip
    plans: dict[str, NodePlan] = {}
    candidates: list[tuple[float, str]] = []
    for state in states:
        node = state.node
        if node.name in in_progress:
            plans[node.name] = advance(state, policy, now, stepped)
            continue
        idle, timer = observe(state, now, stepped)
        events = (
            (_idle_detected(state, policy),)
            if timer.since is not None and state.timer.since is None
            else ()
        )
        reasons: list[str] = []
        if idle and timer.expired(policy.idle_after_seconds, now):
            reasons = claim_blockers(state, policy, now, stepped)
            if not reasons:
                assert timer.since is not None
                candidates.append((timer.since, node.name))
        if reasons == [state.refusal]:
            events = (*events, NodeEvent("Warning", EventReason.SHUTDOWN_REFUSED, reasons[0]))
        elif reasons:
            message = "idle but kept: " + "; ".join(reasons)
            events = (*events, NodeEvent("Normal", EventReason.IDLE_SHUTDOWN_BLOCKED, message))
        plans[node.name] = NodePlan(
            node.name, idle, timer, Step.DONE, Phase.NONE, tuple(reasons), events=events
        )
    ordered = [name for _, name in sorted(candidates)]
    for rank, name in enumerate(ordered):
        p = plans[name]
        if rank >= allowance:
            reason = "disruption budget exhausted"
            event = NodeEvent(
                "Normal", EventReason.IDLE_SHUTDOWN_BLOCKED, f"idle but kept: {reason}"
            )
            plans[name] = NodePlan(name, p.idle, p.timer, Step.DONE, Phase.NONE, (reason,),
                                   events=(*p.events, event))  # fmt: skip
        elif policy.dry_run:
            message = "idle and safe to shut down; dryRun is on, so nothing is done"
            event = NodeEvent("Normal", EventReason.IDLE_SHUTDOWN_DRY_RUN, message)
            plans[name] = NodePlan(name, p.idle, p.timer, Step.DONE, Phase.NONE, ("dry run",),
                                   events=(*p.events, event))  # fmt: skip
        else:
            plans[name] = NodePlan(name, p.idle, p.timer, Step.TAINT, Phase.NONE,
                                   record=claim(now), events=p.events)  # fmt: skip
    return [plans[s.node.name] for s in states]
