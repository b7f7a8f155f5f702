"""Idle GPU nodes: what counts as idle, what makes a node unsafe to remove, budgets,
and the resumable shutdown — each safety rule has its own test."""

from hypothesis import given
from hypothesis import strategies as st

from gpufinops.core.events import EventReason
from gpufinops.core.idle.model import NodeSnapshot, PodSnapshot
from gpufinops.core.idle.plan import (
    IDLE_SINCE,
    NodeState,
    PoolPolicy,
    advance,
    plan_pool,
)
from gpufinops.core.idle.rules import (
    IdleTimer,
    blockers,
    disruption_allowance,
    go_duration_seconds,
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

T0 = 1_800_000_000.0
NODE = NodeSnapshot("gpu-1", "l4-spot", 4)


def pod(name: str = "p", **kw: object) -> PodSnapshot:
    base: dict[str, object] = {
        "namespace": "default", "name": name, "node": "gpu-1", "phase": "Running",
        "gpus": 1.0, "controller_kind": "ReplicaSet",
    }  # fmt: skip
    base.update(kw)
    return PodSnapshot(**base)  # type: ignore[arg-type]


# --- idleness -------------------------------------------------------------------------


def test_gpu_pod_makes_a_node_busy() -> None:
    assert not is_idle([pod()])
    assert is_idle([])


def test_cpu_and_finished_pods_do_not_count_gpu_daemonsets_do() -> None:
    assert is_idle([pod(controller_kind="DaemonSet", gpus=0)])
    assert not is_idle([pod(controller_kind="DaemonSet")])  # a per-node GPU server
    assert is_idle([pod(gpus=0)])
    assert is_idle([pod(phase="Succeeded"), pod("q", phase="Failed")])


def test_a_terminating_gpu_pod_holds_the_node_until_it_is_gone() -> None:
    assert not is_idle([pod(terminating=True)])
    # a drain waits for it, but does not evict it again
    assert still_on_node([pod(terminating=True)]) and not to_evict([pod(terminating=True)])


def test_any_gpu_resource_or_claim_is_gpu_work_even_worth_zero_gpus() -> None:
    assert not is_idle([pod(gpus=0.0, gpu_work=True)])


def test_mirror_pods_are_neither_evicted_nor_waited_for_nor_blocking() -> None:
    static = pod(namespace="kube-system", gpus=0, controller_kind="Node", mirror=True)
    assert not blockers(NODE, [static])
    assert not to_evict([static]) and not still_on_node([static])
    # a static pod holding a GPU is still work on the node
    assert not is_idle([pod(controller_kind="Node", mirror=True)])


def test_utilisation_threshold_makes_low_use_nodes_idle_but_unknown_never_does() -> None:
    assert is_idle([pod()], utilization_below_threshold=True)
    assert not is_idle([pod()], utilization_below_threshold=False)
    assert not is_idle([pod()], utilization_below_threshold=None)


def test_fractional_gpu_pods_count() -> None:
    assert not is_idle([pod(gpus=0.25)])


# --- safety rules, one each -------------------------------------------------------------


def test_restrictive_pdb_blocks() -> None:
    assert any("PodDisruptionBudget" in r for r in blockers(NODE, [pod(pdb_blocks=True)]))


def test_karpenter_do_not_disrupt_blocks() -> None:
    assert blockers(NODE, [pod(annotations={"karpenter.sh/do-not-disrupt": "true"})])
    assert blockers(NODE, [pod(annotations={"karpenter.sh/do-not-disrupt": "4h"})])


def test_karpenter_do_not_disrupt_with_a_duration_protects_until_start_plus_duration() -> None:
    held = pod(annotations={"karpenter.sh/do-not-disrupt": "1h30m"}, started=T0)
    assert blockers(NODE, [held], now=T0 + 5399)
    assert not blockers(NODE, [held], now=T0 + 5400)
    # unknown start, or a value that is no duration: doubt keeps the node
    assert blockers(NODE, [pod(annotations={"karpenter.sh/do-not-disrupt": "1h"})], now=T0)
    odd = pod(annotations={"karpenter.sh/do-not-disrupt": "soon"}, started=T0)
    assert blockers(NODE, [odd], now=T0 + 10**6)
    assert not blockers(NODE, [pod(annotations={"karpenter.sh/do-not-disrupt": "false"})])


def test_go_durations() -> None:
    assert go_duration_seconds("5m") == 300
    assert go_duration_seconds("1h30m") == 5400
    assert go_duration_seconds("1.5h") == 5400
    assert go_duration_seconds("250ms") == 0.25
    for bad in ("", "true", "5", "5d", "m5", "-5m"):
        assert go_duration_seconds(bad) is None, bad


def test_safe_to_evict_false_blocks() -> None:
    ann = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert blockers(NODE, [pod(annotations=ann)])


def test_our_do_not_disrupt_blocks() -> None:
    assert blockers(NODE, [pod(annotations={"gpufinops.dev/do-not-disrupt": "true"})])


def test_local_storage_blocks_unless_safe_to_evict() -> None:
    assert blockers(NODE, [pod(local_storage=True)])
    ann = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}
    assert not blockers(NODE, [pod(local_storage=True, annotations=ann)])


def test_pod_without_controller_blocks() -> None:
    assert any("no controller" in r for r in blockers(NODE, [pod(controller_kind=None)]))


def test_kube_system_pod_without_pdb_blocks() -> None:
    assert blockers(NODE, [pod(namespace="kube-system", gpus=0)])
    assert not blockers(NODE, [pod(namespace="kube-system", gpus=0, has_pdb=True)])


def test_node_opt_out_annotations_block() -> None:
    for key in ("cluster-autoscaler.kubernetes.io/scale-down-disabled",
                "gpufinops.dev/scale-down-disabled"):  # fmt: skip
        node = NodeSnapshot("gpu-1", "l4-spot", 4, annotations={key: "true"})
        assert blockers(node, [])


def test_daemonset_and_finished_pods_never_block() -> None:
    assert not blockers(NODE, [pod(controller_kind="DaemonSet", local_storage=True)])
    assert not blockers(NODE, [pod(controller_kind=None, phase="Succeeded")])


def in_phase(phase: Phase, pods: tuple[PodSnapshot, ...] = (), **annotations: str) -> NodeState:
    marks = {PHASE_ANNOTATION: phase.value, IDLE_SINCE: f"{T0 - 9999:.3f}", **annotations}
    return NodeState(NodeSnapshot("gpu-1", "l4-spot", 4, annotations=marks), pods)


def test_recheck_aborts_when_work_landed_during_the_timer() -> None:
    assert advance(in_phase(Phase.TAINTED), PoolPolicy(600), T0).step == Step.DRAIN
    plan = advance(in_phase(Phase.TAINTED, (pod(),)), PoolPolicy(600), T0)
    assert plan.step == Step.ABORT and "GPU pod is running" in plan.reasons[0]
    assert [e.reason for e in plan.events] == [EventReason.SHUTDOWN_ABORTED]


# --- budgets and planning ---------------------------------------------------------------


@given(
    total=st.integers(0, 200),
    pct=st.none() | st.floats(0, 100),
    nodes=st.none() | st.integers(0, 50),
    deleting=st.integers(0, 20),
    not_ready=st.integers(0, 20),
)
def test_allowance_never_negative_and_within_every_limit(
    total, pct, nodes, deleting, not_ready
) -> None:
    allowed = disruption_allowance(
        total, max_percent=pct, max_nodes=nodes, deleting=deleting, not_ready=not_ready
    )
    assert allowed >= 0
    if nodes is not None:
        assert allowed <= nodes
    if pct is not None:
        assert allowed <= -(-total * pct // 100) + 1e-9


def test_karpenter_budget_formula() -> None:
    # roundup(10 x 10 %) - 0 deleting - 0 not ready = 1
    assert disruption_allowance(10, max_percent=10, max_nodes=None, deleting=0, not_ready=0) == 1
    assert disruption_allowance(25, max_percent=10, max_nodes=None, deleting=1, not_ready=0) == 2


def states(
    pool: list[NodeSnapshot],
    pods: dict[str, list[PodSnapshot]],
    timers: dict[str, IdleTimer],
) -> list[NodeState]:
    """The pool as the loop observes it: each node's timer is its idle-since annotation."""
    out = []
    for n in pool:
        since = timers.get(n.name, IdleTimer(None)).since
        marks = {**n.annotations, **({IDLE_SINCE: f"{since:.3f}"} if since is not None else {})}
        node = NodeSnapshot(n.name, n.pool, n.gpus, n.ready, marks, n.being_deleted)
        out.append(NodeState(node, tuple(pods.get(n.name, ()))))
    return out


def nodes(n: int) -> list[NodeSnapshot]:
    return [NodeSnapshot(f"gpu-{i}", "l4-spot", 4) for i in range(n)]


def test_timer_must_expire_and_oldest_idle_go_first_within_budget() -> None:
    pool = nodes(3)
    timers = {"gpu-0": IdleTimer(T0 - 700), "gpu-1": IdleTimer(T0 - 900), "gpu-2": IdleTimer(T0)}
    verdicts = plan_pool(states(pool, {}, timers), PoolPolicy(600, max_nodes_per_interval=1), T0)
    shut = [v.node for v in verdicts if v.step == Step.TAINT]
    assert shut == ["gpu-1"]
    kept = {v.node: v.reasons for v in verdicts}
    assert kept["gpu-0"] == ("disruption budget exhausted",)
    assert kept["gpu-2"] == ()  # still on its timer


def test_busy_node_resets_its_timer() -> None:
    pool = nodes(1)
    busy = states(pool, {"gpu-0": [pod(node="gpu-0")]}, {"gpu-0": IdleTimer(T0 - 9999)})
    verdicts = plan_pool(busy, PoolPolicy(600), T0)
    assert verdicts[0].step == Step.DONE and verdicts[0].timer.since is None


def test_outside_schedule_and_dry_run_change_nothing() -> None:
    pool = nodes(1)
    timers = {"gpu-0": IdleTimer(T0 - 9999)}
    outside = plan_pool(states(pool, {}, timers), PoolPolicy(600, in_window=False), T0)
    assert outside[0].step == Step.DONE and "schedule" in outside[0].reasons[0]
    dry = plan_pool(states(pool, {}, timers), PoolPolicy(600, dry_run=True), T0)
    assert dry[0].step == Step.DONE and dry[0].reasons == ("dry run",)


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 30)), max_size=12))
def test_never_more_shutdowns_than_the_budget(specs) -> None:
    pool = [NodeSnapshot(f"n{i}", "p", 4, ready=ready) for i, (ready, _, _) in enumerate(specs)]
    pods = {f"n{i}": ([pod(node=f"n{i}")] if busy else []) for i, (_, busy, _) in enumerate(specs)}
    timers = {f"n{i}": IdleTimer(T0 - age * 60) for i, (_, _, age) in enumerate(specs)}
    policy = PoolPolicy(600, max_nodes_per_interval=2, max_percent=50)
    verdicts = plan_pool(states(pool, pods, timers), policy, T0)
    shut = [v for v in verdicts if v.step == Step.TAINT]
    not_ready = sum(1 for n in pool if not n.ready)
    assert len(shut) <= disruption_allowance(
        len(pool), max_percent=50, max_nodes=2, deleting=0, not_ready=not_ready
    )
    assert all(v.idle and not pods[v.node] for v in shut)


# --- the resumable shutdown -------------------------------------------------------------


def test_shutdown_walks_taint_drain_delete() -> None:
    # Each plan records (plan.record) the phase the next look starts from.
    marks: dict[str, str] = {IDLE_SINCE: f"{T0 - 9999:.3f}"}
    steps = []
    for drained in (False, False, False, True):
        pods = () if drained else (pod("web", gpus=0),)
        node = NodeSnapshot("gpu-1", "l4-spot", 4, annotations=marks)
        plan = plan_pool([NodeState(node, pods)], PoolPolicy(600), T0)[0]
        steps.append(plan.step)
        marks = {k: v for k, v in {**marks, **plan.record}.items() if v is not None}
    assert steps == [Step.TAINT, Step.DRAIN, Step.WAIT, Step.SHUT_DOWN]


def test_resume_after_a_crash_finishes_exactly_once_or_untaints() -> None:
    # killed after recording ShuttingDown, before the provider acted: look again first
    assert next_step(Phase.SHUTTING_DOWN, safe=False, drained=False) == Step.ABORT
    assert next_step(Phase.SHUTTING_DOWN, safe=True, drained=False) == Step.DRAIN
    assert next_step(Phase.SHUTTING_DOWN, safe=True, drained=True) == Step.SHUT_DOWN
    # once the provider's action is recorded, it is never asked again, whatever landed
    requested = {REMOVAL_REQUESTED: f"{T0:.3f}"}
    for pods in ((), (pod(),)):
        step = advance(in_phase(Phase.SHUTTING_DOWN, pods, **requested), PoolPolicy(600), T0).step
        assert step == Step.AWAIT_REMOVAL
    # killed while draining and a pod landed: abort, remove the taint
    assert next_step(Phase.DRAINING, safe=False, drained=False) == Step.ABORT
    aborted = advance(in_phase(Phase.DRAINING, (pod(),)), PoolPolicy(600), T0)
    assert aborted.record[PHASE_ANNOTATION] is None
    # nothing started and unsafe: nothing to do
    assert next_step(Phase.NONE, safe=False, drained=False) == Step.DONE


def test_nodes_being_shut_down_count_against_the_budget() -> None:
    pool = nodes(3)
    timers = {n.name: IdleTimer(T0 - 9999) for n in pool}
    observed = states(pool, {}, timers)
    draining = {**observed[0].node.annotations, PHASE_ANNOTATION: "Draining",
                "gpufinops.dev/drain-started": f"{T0 - 10:.3f}"}  # fmt: skip
    first = observed[0].node
    observed[0] = NodeState(NodeSnapshot(first.name, first.pool, first.gpus, annotations=draining))
    plans = plan_pool(observed, PoolPolicy(600, max_nodes_per_interval=1), T0)
    assert [p.step for p in plans] == [Step.SHUT_DOWN, Step.DONE, Step.DONE]
    assert plans[1].reasons == ("disruption budget exhausted",)


def test_each_decision_is_reported_by_the_plan() -> None:
    pool = nodes(2)
    fresh = plan_pool(states(pool, {}, {}), PoolPolicy(600), T0)
    assert [[e.reason for e in p.events] for p in fresh] == [[EventReason.IDLE_DETECTED]] * 2
    timers = {n.name: IdleTimer(T0 - 9999) for n in pool}
    guarded = {"gpu-1": [pod(node="gpu-1", gpus=0, pdb_blocks=True)]}
    plans = plan_pool(states(pool, guarded, timers), PoolPolicy(600, dry_run=True), T0)
    assert [e.reason for e in plans[0].events] == [EventReason.IDLE_SHUTDOWN_DRY_RUN]
    assert [e.reason for e in plans[1].events] == [EventReason.IDLE_SHUTDOWN_BLOCKED]
    assert "PodDisruptionBudget" in plans[1].events[0].message


def test_a_removal_once_requested_is_only_waited_for() -> None:
    landed = in_phase(Phase.SHUTTING_DOWN, (pod(),), **{REMOVAL_REQUESTED: f"{T0:.3f}"})
    assert advance(landed, PoolPolicy(600), T0).step == Step.AWAIT_REMOVAL
    # not yet requested: a pod bound since the drain stops it
    plan = advance(in_phase(Phase.SHUTTING_DOWN, (pod(),)), PoolPolicy(600), T0)
    assert plan.step == Step.ABORT


def test_a_drain_waits_for_terminating_pods_and_evicts_the_rest() -> None:
    cpu = (pod("web", gpus=0), pod("old", gpus=0, terminating=True))
    plan = advance(in_phase(Phase.TAINTED, cpu), PoolPolicy(600), T0)
    assert plan.step == Step.DRAIN and [p.name for p in plan.evict] == ["web"]
    marks = {"gpufinops.dev/drain-started": f"{T0 - 5:.3f}"}
    waiting = advance(in_phase(Phase.DRAINING, cpu[1:], **marks), PoolPolicy(600), T0)
    assert waiting.step == Step.WAIT and not waiting.evict
    done = advance(in_phase(Phase.DRAINING, (), **marks), PoolPolicy(600), T0)
    assert done.step == Step.SHUT_DOWN
