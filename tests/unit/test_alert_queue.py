"""Budget alerts go out from a bounded background queue: a stuck webhook stalls nothing.

The webhook is a real HTTP server whose handler holds every request until the test
releases it, and the sender is the operator's own ``AlertSender``; every wait is on
a ``threading.Event`` or the queue's condition, never a sleep.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import REGISTRY

from gpufinops.adapters.alert_queue import AlertQueue, deadline_for
from gpufinops.adapters.alerts import AlertSender, BudgetAlert
from gpufinops.adapters.allocations import Pools, gpu_pod, gpu_pod_record
from gpufinops.config.model import AlertingConfig, parse_config
from gpufinops.controllers.cost import CostAccountant, CostEffects, WorkloadView

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
WAIT = 10.0
"""Upper bound on waits for something that is already under way (never reached)."""


class StuckWebhook:
    """A webhook that records each POST, then holds the answer until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrivals = threading.Condition()
        self.received: list[str] = []
        """The ``key`` of each alert, in order of arrival."""
        received, arrivals, release = self.received, self.arrivals, self.release

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with arrivals:
                    received.append(body["key"])
                    arrivals.notify_all()
                release.wait(60)  # bounded, so a failing test cannot leave it hanging
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int) -> bool:
        """Wait until ``count`` requests have arrived (they may still be held)."""
        with self.arrivals:
            return self.arrivals.wait_for(lambda: len(self.received) >= count, timeout=WAIT)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[StuckWebhook]:
    hook = StuckWebhook()
    try:
        yield hook
    finally:
        hook.close()


@pytest.fixture
def queues() -> Iterator[list[AlertQueue]]:
    made: list[AlertQueue] = []
    yield made
    for queue in made:
        queue.close()


def sender(hook: StuckWebhook) -> AlertSender:
    # A request timeout far beyond the test: only the queue's deadline can end a delivery.
    return AlertSender(
        AlertingConfig.model_validate({"webhookURL": hook.url, "timeoutSeconds": 60})
    )


def queue(made: list[AlertQueue], hook: StuckWebhook, **kwargs: Any) -> AlertQueue:
    q = AlertQueue(sender(hook).send, **kwargs)
    made.append(q)
    return q


def alert(key: str) -> BudgetAlert:
    return BudgetAlert("BudgetExceeded", key, "over budget", "ml", "w", T0)


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


FAILURES = "gpufinops_alert_delivery_failures_total"
DROPPED = "gpufinops_alert_queue_dropped_total"


def test_enqueue_returns_while_delivery_is_stuck(
    webhook: StuckWebhook, queues: list[AlertQueue]
) -> None:
    failures = counter(FAILURES)
    q = queue(queues, webhook, deadline=60)
    q.enqueue([alert("a")])
    assert webhook.wait_for(1)  # the worker is now held inside the webhook
    q.enqueue([alert("b"), alert("c")])  # and this still returns
    assert q.depth == 2 and not webhook.release.is_set()
    assert REGISTRY.get_sample_value("gpufinops_alert_queue_depth") == 2

    webhook.release.set()
    assert q.wait_idle(WAIT)
    assert webhook.received == ["a", "b", "c"]
    assert counter(FAILURES) == failures
    assert REGISTRY.get_sample_value("gpufinops_alert_queue_depth") == 0


def test_a_full_queue_drops_the_oldest_and_counts_it(
    webhook: StuckWebhook, queues: list[AlertQueue], caplog: pytest.LogCaptureFixture
) -> None:
    dropped = counter(DROPPED)
    q = queue(queues, webhook, capacity=3, deadline=60)
    q.enqueue([alert("a")])
    assert webhook.wait_for(1)
    q.enqueue([alert("b"), alert("c"), alert("d"), alert("e")])
    assert q.depth == 3
    assert counter(DROPPED) == dropped + 1
    assert "1 alert(s) dropped" in caplog.text

    webhook.release.set()
    assert q.wait_idle(WAIT)
    assert webhook.received == ["a", "c", "d", "e"]  # b, the oldest waiting, was dropped


def test_the_deadline_ends_a_stuck_batch_and_the_next_one_goes_out(
    webhook: StuckWebhook, queues: list[AlertQueue], caplog: pytest.LogCaptureFixture
) -> None:
    failures = counter(FAILURES)
    q = queue(queues, webhook, deadline=0.5)
    q.enqueue([alert("a"), alert("b")])
    assert webhook.wait_for(1)
    # The worker gives up on the batch at its deadline, with the webhook still holding it.
    assert q.wait_idle(WAIT)
    assert not webhook.release.is_set()
    assert counter(FAILURES) == failures + 2  # the whole batch counts as failed
    assert "did not finish within its 0.5 s deadline" in caplog.text

    q.enqueue([alert("c")])  # a new batch starts beside the late one
    assert webhook.wait_for(2)
    assert webhook.received == ["a", "c"]


def test_late_deliveries_are_bounded(webhook: StuckWebhook, queues: list[AlertQueue]) -> None:
    """With no room for a late delivery, the next batch waits for the stuck one to end."""
    q = queue(queues, webhook, deadline=0.2, stragglers=0)
    q.enqueue([alert("a")])
    assert webhook.wait_for(1)
    assert q.wait_idle(WAIT)  # past its deadline, still running
    q.enqueue([alert("b")])
    assert not q.wait_idle(0.2)  # b waits: the one delivery allowed is still running
    assert webhook.received == ["a"]

    webhook.release.set()
    assert q.wait_idle(WAIT)
    assert webhook.wait_for(2) and webhook.received == ["a", "b"]


def test_a_failing_sender_is_counted_and_the_worker_goes_on(queues: list[AlertQueue]) -> None:
    failures = counter(FAILURES)
    sent: list[str] = []

    def send(alerts: Sequence[BudgetAlert]) -> int:
        if alerts[0].key == "boom":
            raise RuntimeError("bug")
        sent.extend(a.key for a in alerts)
        return 1  # one delivery failed (e.g. HTTP 500)

    q = AlertQueue(send, deadline=WAIT)
    queues.append(q)
    q.enqueue([alert("boom")])
    assert q.wait_idle(WAIT)
    q.enqueue([alert("ok")])
    assert q.wait_idle(WAIT)
    assert sent == ["ok"] and counter(FAILURES) == failures + 2


def test_a_closed_queue_delivers_what_it_holds_and_drops_the_rest(
    webhook: StuckWebhook, queues: list[AlertQueue]
) -> None:
    dropped = counter(DROPPED)
    q = queue(queues, webhook, deadline=60)
    q.enqueue([alert("a")])
    assert webhook.wait_for(1)
    q.enqueue([alert("b")])
    assert not q.close(timeout=0)
    q.enqueue([alert("c")])
    assert counter(DROPPED) == dropped + 1
    webhook.release.set()
    assert q.close(timeout=WAIT)
    assert webhook.received == ["a", "b"]


def test_the_deadline_leaves_room_for_two_request_timeouts() -> None:
    assert deadline_for(5) == 30
    assert deadline_for(60) == 120


# ------------------------------------------------------------------ the cost pass

CONFIG = parse_config(
    {
        "nodePools": [
            {"name": "l4", "selector": {"pool": "l4"}, "instanceType": "g6.12xlarge",
             "capacityType": "spot", "gpusPerNode": 4, "hourlyPriceUSD": 8.0},
        ]
    }
)  # fmt: skip
"""$2 per GPU-hour."""

SPEC = {
    "type": "Experiment",
    "costAllocation": {"team": "search"},
    "experiment": {"targetRef": {"kind": "Deployment", "name": "nb"}},
    "budget": {"dailyUSD": 1.0, "enforcement": "Alert"},
}

POD = {
    "metadata": {
        "name": "nb-1",
        "namespace": "ml",
        "labels": {"pod-template-hash": "5d8f"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "nb-5d8f", "controller": True}],
    },
    "spec": {
        "nodeName": "l4-0",
        "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 1}}}],
    },
    "status": {
        "phase": "Running",
        "containerStatuses": [{"state": {"running": {"startedAt": "2026-11-27T10:00:00Z"}}}],
    },
}


@pytest.mark.timeout(30)
def test_a_cost_pass_posts_its_events_and_does_not_wait_for_the_webhook(
    webhook: StuckWebhook, queues: list[AlertQueue]
) -> None:
    q = queue(queues, webhook, deadline=60)
    events: list[str] = []
    writes: list[dict[str, Any]] = []
    effects = CostEffects(
        write_status=lambda ns, name, patch: writes.append(patch),
        post_event=lambda ref, type, reason, message: events.append(reason),
        send_alerts=q.enqueue,
    )
    node = {"metadata": {"name": "l4-0"}, "status": {"allocatable": {"nvidia.com/gpu": "4"}}}
    pools = Pools.of([(CONFIG.node_pools[0], node)])
    pods = [gpu_pod(gpu_pod_record(POD))]  # type: ignore[arg-type]
    view = WorkloadView("ml", "nb", {"kind": "AIWorkload"}, SPEC, {}, {})
    accountant = CostAccountant(CONFIG, effects)

    # $2 of a $1 budget: 50 %, 80 % and exceeded at once.
    asyncio.run(accountant.tick(T0 + timedelta(hours=1), [view], pods, pools, lambda *_: None))
    assert events == ["BudgetThresholdCrossed", "BudgetThresholdCrossed", "BudgetExceeded"]
    assert writes and writes[-1]["budget"]["state"] == "Exceeded"
    assert webhook.wait_for(1) and not webhook.release.is_set()  # still held: pass is done

    webhook.release.set()
    assert q.wait_idle(WAIT)
    assert len(webhook.received) == 3
