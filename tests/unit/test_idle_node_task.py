"""The per-node idle task records a shutdown even when the node's deletion cancels it.

Deleting the Node reaches the operator's watch (which cancels the node's task)
before the API call's thread hands its result back; the count and the Event
must not depend on which of the two wins.
"""

import asyncio
from typing import Any

import kopf
import pytest

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.nodes import node_snapshot
from gpufinops.config.model import IdleShutdownDefaults, NodePool
from gpufinops.core.idle.shutdown import Phase
from gpufinops.handlers import idle_nodes

POOL = NodePool.model_validate({
    "name": "cancel-test", "selector": {"pool": "cancel-test"}, "instanceType": "g6.xlarge",
    "capacityType": "on-demand", "gpusPerNode": 1, "hourlyPriceUSD": 1.0,
})  # fmt: skip
SETTINGS = IdleShutdownDefaults.model_validate({"enabled": True, "dryRun": False})
BODY = {
    "metadata": {"name": "gpu-1", "annotations": {}},
    "status": {
        "allocatable": {"nvidia.com/gpu": "1"},
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


class DeletionCancelsTheTask:
    """Node actions whose shut_down lets the task be cancelled before it returns,
    as the DELETED watch event does in the operator."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def annotate(self, node: str, annotations: Any) -> None:
        self.calls.append(f"annotate {dict(annotations)}")

    def set_taint(self, node: str, present: bool) -> None:
        self.calls.append(f"taint {present}")

    def evict(self, namespace: str, name: str) -> None:
        raise AssertionError("no pod to evict")

    def shut_down(self, node: str, provider: object) -> None:
        assert self.loop is not None and self.task is not None
        self.loop.call_soon_threadsafe(self.task.cancel)
        # the watch event is handled while the call is still returning
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result()
        self.calls.append(f"shut_down {node}")


def test_a_shutdown_cancelled_by_the_nodes_deletion_is_still_counted_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(kw["reason"]))
    actions = DeletionCancelsTheTask()
    before = metrics.NODES_SHUT_DOWN.labels(POOL.name)._value.get()

    async def scenario() -> None:
        node = node_snapshot(BODY, POOL.name)
        advance = idle_nodes._advance(
            "gpu-1", BODY, node, [], Phase.DRAINING, POOL, SETTINGS, actions,  # type: ignore[arg-type]
            1000.0,
        )  # fmt: skip
        with pytest.raises(asyncio.CancelledError):
            await advance

    async def run() -> None:
        actions.loop = asyncio.get_running_loop()
        actions.task = actions.loop.create_task(scenario())
        await asyncio.gather(actions.task, return_exceptions=True)
        # whatever the cancelled task left running (the shielded shutdown) ends too
        others = asyncio.all_tasks() - {asyncio.current_task()}
        await asyncio.gather(*others)

    asyncio.run(run())
    assert "shut_down gpu-1" in actions.calls
    assert events == ["ShutDown"]
    assert metrics.NODES_SHUT_DOWN.labels(POOL.name)._value.get() == before + 1
