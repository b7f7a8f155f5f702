"""The idle-shutdown loop of a pool carries out the core's plan, looking again first.

Driven with in-memory node actions (``tests.support.node_actions``); the same
loop runs against the real API server in ``tests/integration/test_idle_*``.
"""

import asyncio
import logging
from typing import Any

import pytest
from tests.support.node_actions import FakeNodeActions, node_body, pod_body

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.nodes import pod_record
from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.clock import Reading
from gpufinops.controllers.idle_nodes import PoolShutdown
from gpufinops.core.events import EventReason
from gpufinops.core.gpus import rules_of

T0 = 1_800_000_000.0
IDLE = {"gpufinops.dev/idle-since": f"{T0 - 700:.3f}"}


def config(**idle: Any) -> OperatorConfig:
    settings = {"enabled": True, "dryRun": False, "idleAfterSeconds": 600,
                "deletionDelayAfterTaintSeconds": 0, **idle}  # fmt: skip
    return OperatorConfig.model_validate({"nodePools": [{
        "name": "clock-test", "selector": {"pool": "clock-test"}, "instanceType": "g6.xlarge",
        "capacityType": "on-demand", "gpusPerNode": 1, "hourlyPriceUSD": 1.0,
        "idleShutdown": settings,
    }]})  # fmt: skip


class Loop:
    """A pool loop over fake actions, with the Events it posts."""

    def __init__(self, actions: FakeNodeActions, **idle: Any) -> None:
        self.actions, self.events = actions, []
        self.config = config(**idle)
        self.loop = PoolShutdown("clock-test", self.config, actions,
                                 lambda body, e: self.events.append(e.reason),
                                 logging.getLogger("test"))  # fmt: skip

    def tick(self, now: float = T0, stepped: float = 0.0, elapsed: float = 30.0) -> None:
        rules = rules_of(self.config)
        indexed = {n: [pod_record(p, rules) for p in ps] for n, ps in self.actions.pods.items()}
        indexes = {"pdbs": {}, "pods_by_node": indexed}
        bodies = [self.actions.read_node(n) for n in list(self.actions.nodes)]
        asyncio.run(self.loop.tick(bodies, indexes, Reading(now, stepped, elapsed)))  # type: ignore[arg-type]


def shutdowns() -> float:
    return float(metrics.NODES_SHUT_DOWN.labels("clock-test")._value.get())


def test_an_idle_node_is_tainted_drained_and_removed_with_a_fresh_look_before_each_step() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    loop, before = Loop(actions), shutdowns()
    loop.tick()
    assert "gpu-1" not in actions.nodes
    assert [c for c in actions.calls if not c.startswith("annotate")] == [
        "taint True", "shut_down gpu-1",
    ]  # fmt: skip
    assert loop.events == [EventReason.DRAINING, EventReason.SHUT_DOWN]
    assert shutdowns() == before + 1


def test_a_gpu_pod_bound_right_after_the_taint_keeps_the_node() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    # the scheduler binds a GPU pod as the taint lands; the watch has not seen it yet
    actions.on_taint = lambda node: actions.pods.setdefault(node, []).append(
        pod_body("late", node, gpus=1)
    )
    loop = Loop(actions)
    loop.tick(elapsed=0)
    assert "gpu-1" in actions.nodes and "shut_down gpu-1" not in actions.calls
    assert actions.calls[-3:-1] == ["release gpu-1", "taint False"]
    assert actions.calls[-1].startswith("annotate {'gpufinops.dev/idle-shutdown-phase': None")
    assert actions.body("gpu-1")["spec"]["taints"] == []
    assert loop.events == [EventReason.SHUTDOWN_ABORTED]


def test_the_provider_is_asked_once_however_many_intervals_and_restarts() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    actions.removes_node = False  # as with Cluster API: the Node goes minutes later
    loop = Loop(actions)
    for i in range(20):
        loop.tick(now=T0 + 30 * i)
    restarted = Loop(actions)
    for i in range(20, 40):
        restarted.tick(now=T0 + 30 * i)
    assert actions.calls.count("shut_down gpu-1") == 1
    assert loop.events.count(EventReason.SHUT_DOWN) == 1 and not restarted.events


def test_a_standing_decision_is_reported_once_not_every_interval() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    loop = Loop(actions, dryRun=True)
    for i in range(10):
        loop.tick(now=T0 + 30 * i)
    assert loop.events == [EventReason.IDLE_SHUTDOWN_DRY_RUN]
    assert not [c for c in actions.calls if not c.startswith("annotate")]


def test_a_node_the_provider_must_not_remove_is_never_tainted() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    actions.refusal = "at its minimum size"
    loop = Loop(actions)
    for i in range(5):
        loop.tick(now=T0 + 30 * i)
    assert not [c for c in actions.calls if c.startswith("taint")]
    assert loop.events == [EventReason.SHUTDOWN_REFUSED]


def test_a_shutdown_whose_loop_is_cancelled_mid_call_is_still_counted_and_reported() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    loop, before = Loop(actions), shutdowns()
    state: dict[str, Any] = {}

    def cancel_while_shutting_down(node: str) -> None:
        # the operator stops (its loop is cancelled) while the call is still returning
        state["loop"].call_soon_threadsafe(state["task"].cancel)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), state["loop"]).result()

    actions.on_shut_down = cancel_while_shutting_down
    indexes: dict[str, Any] = {"pdbs": {}, "pods_by_node": {}}

    async def run() -> None:
        state["loop"] = asyncio.get_running_loop()
        bodies = [actions.read_node("gpu-1")]
        state["task"] = state["loop"].create_task(
            loop.loop.tick(bodies, indexes, Reading(T0, 0.0, 30.0))  # type: ignore[arg-type]
        )
        with pytest.raises(asyncio.CancelledError):
            await state["task"]
        others = asyncio.all_tasks() - {asyncio.current_task()}
        await asyncio.gather(*others)

    asyncio.run(run())
    assert "shut_down gpu-1" in actions.calls
    assert loop.events[-1] == EventReason.SHUT_DOWN
    assert shutdowns() == before + 1


def _taints(actions: FakeNodeActions) -> list[str]:
    return [c for c in actions.calls if c.startswith("taint")]


def test_a_node_the_provider_refuses_does_not_hold_the_pools_budget() -> None:
    oldest = node_body("gpu-1", {"gpufinops.dev/idle-since": f"{T0 - 900:.3f}"})
    actions = FakeNodeActions(oldest, node_body("gpu-2", IDLE))
    refused = {"gpu-1"}
    actions.removal_blocker = lambda node, settings: (  # type: ignore[method-assign]
        "at its minimum size" if node["metadata"]["name"] in refused else None
    )
    loop = Loop(actions, maxNodesPerInterval=1)
    for i in range(3):
        loop.tick(now=T0 + 30 * i)
    assert "gpu-2" not in actions.nodes and "gpu-1" in actions.nodes


def test_dry_run_gives_back_a_node_caught_mid_shutdown() -> None:
    draining = {**IDLE, "gpufinops.dev/idle-shutdown-phase": "Draining",
                "gpufinops.dev/drain-started": f"{T0 - 10:.3f}"}  # fmt: skip
    actions = FakeNodeActions(node_body("gpu-1", draining, taint=True))
    loop = Loop(actions, dryRun=True)
    loop.tick()
    assert "shut_down gpu-1" not in actions.calls and "taint False" in actions.calls
    assert loop.events == [EventReason.SHUTDOWN_ABORTED]


def test_a_drained_node_nobody_removes_is_given_back_after_the_drain_timeout() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    actions.removes_node = False
    loop = Loop(actions, provider="drain", drainTimeoutSeconds=120)
    loop.tick()
    assert "shut_down gpu-1" in actions.calls and "taint False" not in actions.calls
    loop.tick(now=T0 + 60)
    assert "taint False" not in actions.calls
    loop.tick(now=T0 + 150)
    assert "taint False" in actions.calls
    assert actions.body("gpu-1")["spec"]["taints"] == []


def test_the_provider_waits_until_the_taint_is_old_enough() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    loop = Loop(actions, deletionDelayAfterTaintSeconds=5)
    loop.tick()
    assert _taints(actions) == ["taint True"] and "shut_down gpu-1" not in actions.calls
    loop.tick(now=T0 + 3)
    assert "shut_down gpu-1" not in actions.calls
    loop.tick(now=T0 + 6)
    assert "shut_down gpu-1" in actions.calls


def test_a_pod_disruption_budget_used_up_by_the_drain_delays_it_without_aborting() -> None:
    draining = {**IDLE, "gpufinops.dev/idle-shutdown-phase": "Draining",
                "gpufinops.dev/drain-started": f"{T0 - 10:.3f}"}  # fmt: skip
    actions = FakeNodeActions(node_body("gpu-1", draining, taint=True))
    actions.pods["gpu-1"] = [pod_body("web-2", "gpu-1", labels={"app": "web"})]
    loop = Loop(actions)
    pdb = {"namespace": "ns", "selector": {"matchLabels": {"app": "web"}},
           "disruptions_allowed": 0}  # fmt: skip
    rules = rules_of(loop.config)
    indexes = {
        "pdbs": {"ns": [pdb]},
        "pods_by_node": {"gpu-1": [pod_record(p, rules) for p in actions.pods["gpu-1"]]},
    }
    asyncio.run(loop.loop.tick([actions.read_node("gpu-1")], indexes, Reading(T0, 0.0, 30.0)))  # type: ignore[list-item]
    assert "evict web-2" in actions.calls and "taint False" not in actions.calls


def test_what_an_earlier_shutdown_left_on_the_node_is_cleared_when_it_is_claimed() -> None:
    stale = {**IDLE, "gpufinops.dev/removal-requested": f"{T0 - 9999:.3f}"}
    actions = FakeNodeActions(node_body("gpu-1", stale))
    Loop(actions).tick()
    assert "shut_down gpu-1" in actions.calls


def test_resumed_after_the_provider_acted_but_before_it_was_recorded_it_is_not_given_back() -> None:
    shutting = {**IDLE, "gpufinops.dev/idle-shutdown-phase": "ShuttingDown"}
    actions = FakeNodeActions(node_body("gpu-1", shutting, taint=True))
    actions.removes_node = False
    actions.provider_done = True  # e.g. the MachineDeployment records it was lowered
    actions.pods["gpu-1"] = [pod_body("late", "gpu-1", gpus=1)]
    loop = Loop(actions)
    loop.tick()
    assert "taint False" not in actions.calls and "shut_down gpu-1" not in actions.calls
    assert "gpufinops.dev/removal-requested" in actions.body("gpu-1")["metadata"]["annotations"]


def test_a_claim_the_watch_does_not_show_yet_still_counts_against_the_budget() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE), node_body("gpu-2", IDLE))
    actions.removes_node = False
    loop = Loop(actions, maxNodesPerInterval=1, deletionDelayAfterTaintSeconds=600)
    stale = [actions.read_node("gpu-1"), actions.read_node("gpu-2")]
    loop.tick()
    assert _taints(actions) == ["taint True"]
    indexes: dict[str, Any] = {"pdbs": {}, "pods_by_node": {}}
    # the next interval's watch still shows both nodes as they were before the claim
    asyncio.run(loop.loop.tick(stale, indexes, Reading(T0 + 1, 0.0, 1.0)))  # type: ignore[arg-type]
    assert _taints(actions) == ["taint True"]


def test_a_drain_that_cannot_finish_is_given_back_after_its_timeout() -> None:
    draining = {**IDLE, "gpufinops.dev/idle-shutdown-phase": "Draining",
                "gpufinops.dev/drain-started": f"{T0 - 100:.3f}"}  # fmt: skip
    actions = FakeNodeActions(node_body("gpu-1", draining, taint=True))
    actions.pods["gpu-1"] = [pod_body("web", "gpu-1")]  # comes back after every eviction
    loop = Loop(actions, drainTimeoutSeconds=5)
    loop.tick()
    assert "taint False" in actions.calls and loop.events == [EventReason.SHUTDOWN_ABORTED]
    assert (
        "gpufinops.dev/idle-shutdown-phase" not in actions.body("gpu-1")["metadata"]["annotations"]
    )


def test_our_taint_left_without_a_recorded_phase_is_removed() -> None:
    # The phase was lost (an annotation edited away, or written and cleared around a
    # taint that landed later): nothing would ever take our taint off again.
    busy = FakeNodeActions(node_body("gpu-1", {}, taint=True))
    busy.pods["gpu-1"] = [pod_body("work", "gpu-1", gpus=1)]
    loop = Loop(busy)
    loop.tick()
    assert busy.body("gpu-1")["spec"]["taints"] == [] and "gpu-1" in busy.nodes
    assert loop.events == [EventReason.SHUTDOWN_ABORTED]
    loop.tick(now=T0 + 30)
    assert _taints(busy) == ["taint False"], "given back once, not every interval"
