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
from gpufinops.core.gpus import rules_of
from gpufinops.core.idle.plan import IdleEventReason
from gpufinops.handlers.clock import Reading
from gpufinops.handlers.idle_nodes import PoolShutdown

T0 = 1_800_000_000.0
IDLE = {"gpufinops.dev/idle-since": f"{T0 - 700:.3f}"}


def config(**idle: Any) -> OperatorConfig:
    settings = {"enabled": True, "dryRun": False, "idleAfterSeconds": 600, **idle}
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
    assert loop.events == [IdleEventReason.DRAINING, IdleEventReason.SHUT_DOWN]
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
    assert actions.calls[-2:] == ["taint False", actions.calls[-1]]
    assert actions.body("gpu-1")["spec"]["taints"] == []
    assert loop.events == [IdleEventReason.ABORTED]


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
    assert loop.events.count(IdleEventReason.SHUT_DOWN) == 1 and not restarted.events


def test_a_standing_decision_is_reported_once_not_every_interval() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    loop = Loop(actions, dryRun=True)
    for i in range(10):
        loop.tick(now=T0 + 30 * i)
    assert loop.events == [IdleEventReason.DRY_RUN]
    assert not [c for c in actions.calls if not c.startswith("annotate")]


def test_a_node_the_provider_must_not_remove_is_never_tainted() -> None:
    actions = FakeNodeActions(node_body("gpu-1", IDLE))
    actions.removal_blocker = lambda node, settings: "at its minimum size"  # type: ignore[method-assign]
    loop = Loop(actions)
    for i in range(5):
        loop.tick(now=T0 + 30 * i)
    assert not [c for c in actions.calls if c.startswith("taint")]
    assert loop.events == [IdleEventReason.REFUSED]


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
    assert loop.events[-1] == IdleEventReason.SHUT_DOWN
    assert shutdowns() == before + 1
