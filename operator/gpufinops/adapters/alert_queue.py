"""Budget alerts delivered in the background, from a bounded queue, under a deadline.

The cost loop posts each alert's Event itself (the record) and hands the alert to
an ``AlertQueue``, which returns at once: a slow Alertmanager or webhook must not
stall the accounting of every workload. One worker thread takes the queued alerts
in batches and delivers each batch with the sender of ``adapters.alerts`` (whose
requests carry their own timeout, ``alerting.timeoutSeconds``) under a total
deadline, because per-request timeouts alone do not bound a batch: a webhook that
trickles bytes, or many alerts to a slow one, can each stay under them.

A blocking call cannot be interrupted, so a batch runs in a thread of its own and
the worker stops waiting for it at the deadline: the batch is counted as failed
and the worker moves on while the late delivery finishes (its requests time out).
At most ``STRAGGLERS`` such late deliveries run at once; beyond that the worker
waits for one to end, and meanwhile the queue keeps accepting, dropping its
oldest alerts when full (counted and logged). Delivery stays best effort, as
``adapters.alerts`` says: nothing is retried, and the Event was posted anyway.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.alerts import BudgetAlert

log = logging.getLogger(__name__)

Send = Callable[[Sequence[BudgetAlert]], int]
"""Delivers a batch (blocking); returns how many deliveries failed (``AlertSender.send``)."""

CAPACITY = 1000
"""Alerts waiting at most. Alerts are raised once per threshold and period, a handful
per workload and day, so a thousand waiting means the endpoints have been down for
long; the oldest then matter least (their Events are posted, later ones supersede)."""

BATCH = 10
"""Alerts per delivery: one Alertmanager request and one webhook request per alert,
so a batch fits its deadline unless an endpoint is in trouble."""

DEADLINE_SECONDS = 30.0
"""Total time one batch may take, unless two request timeouts are longer (see
``deadline_for``)."""

STRAGGLERS = 2
"""Deliveries past their deadline that may still run before the worker waits for one."""


def deadline_for(request_timeout: float) -> float:
    """A batch's deadline: ``DEADLINE_SECONDS``, or two request timeouts if longer, so
    a configured ``alerting.timeoutSeconds`` is never cut short by the deadline."""
    return max(DEADLINE_SECONDS, 2 * request_timeout)


class _Delivery:
    """One batch in flight: who finishes first, the delivery or the deadline."""

    def __init__(self, size: int) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.size = size
        self.failed: int | None = None
        self.abandoned = False


class AlertQueue:
    """A bounded queue of budget alerts and the one thread that delivers them.

    ``enqueue`` never blocks. Failed deliveries are counted in
    ``gpufinops_alert_delivery_failures_total``, a batch past its deadline as wholly
    failed; alerts dropped from a full queue in ``gpufinops_alert_queue_dropped_total``.
    """

    def __init__(
        self,
        send: Send,
        *,
        capacity: int = CAPACITY,
        batch: int = BATCH,
        deadline: float = DEADLINE_SECONDS,
        stragglers: int = STRAGGLERS,
        name: str = "gpufinops-alerts",
    ) -> None:
        if capacity < 1 or batch < 1 or deadline <= 0 or stragglers < 0:
            raise ValueError("capacity and batch must be positive, deadline > 0, stragglers >= 0")
        self._send, self._capacity, self._batch = send, capacity, batch
        self.deadline = deadline
        self._pending: deque[BudgetAlert] = deque()
        self._changed = threading.Condition()
        self._busy = False
        self._closed = False
        self._slots = threading.BoundedSemaphore(1 + stragglers)
        self._name = name
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ producer side

    def enqueue(self, alerts: Sequence[BudgetAlert]) -> None:
        """Queue ``alerts`` for delivery and return at once (oldest dropped when full)."""
        if not alerts:
            return
        dropped, why = 0, "full"
        with self._changed:
            if self._closed:
                dropped, why = len(alerts), "closed"
            else:
                self._pending.extend(alerts)
                while len(self._pending) > self._capacity:
                    self._pending.popleft()
                    dropped += 1
                metrics.ALERT_QUEUE_DEPTH.set(len(self._pending))
                self._changed.notify_all()
        if dropped:
            metrics.ALERT_QUEUE_DROPPED.inc(dropped)
            log.warning(
                "budget alert queue %s: %d alert(s) dropped undelivered (their Events were "
                "posted)", why, dropped,
            )  # fmt: skip

    @property
    def depth(self) -> int:
        with self._changed:
            return len(self._pending)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued and the worker waits for alerts; False on timeout.

        A batch abandoned at its deadline no longer counts: the worker has moved on.
        """
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._pending and not self._busy, timeout=timeout
            )

    def close(self, timeout: float | None = 0.0) -> bool:
        """Accept no more alerts; the worker delivers what is queued, then ends.

        Waits up to ``timeout`` seconds for that (0: not at all, None: as long as it
        takes) and returns whether the worker has ended.
        """
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if timeout is None or timeout > 0:
            self._worker.join(timeout)
        return not self._worker.is_alive()

    # ------------------------------------------------------------------ worker side

    def _take(self) -> list[BudgetAlert] | None:
        with self._changed:
            self._busy = False
            self._changed.notify_all()
            self._changed.wait_for(lambda: bool(self._pending) or self._closed)
            if not self._pending:
                return None  # closed and drained
            n = min(self._batch, len(self._pending))
            batch = [self._pending.popleft() for _ in range(n)]
            metrics.ALERT_QUEUE_DEPTH.set(len(self._pending))
            self._busy = True
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            try:
                failed = self._deliver(batch)
            except Exception:  # the worker must outlive any one batch
                log.exception("budget alert delivery failed")
                failed = len(batch)
            if failed:
                metrics.ALERT_DELIVERY_FAILURES.inc(failed)

    def _deliver(self, batch: list[BudgetAlert]) -> int:
        """Deliver ``batch`` within the deadline; how many deliveries failed."""
        self._slots.acquire()  # at most 1 + stragglers deliveries running
        delivery = _Delivery(len(batch))
        try:
            threading.Thread(
                target=self._run, args=(batch, delivery), name=f"{self._name}-send", daemon=True
            ).start()
        except BaseException:
            self._slots.release()
            raise
        finished = delivery.done.wait(self.deadline)
        with delivery.lock:
            if finished or delivery.failed is not None:
                return delivery.failed or 0
            delivery.abandoned = True
        log.warning(
            "budget alert delivery of %d alert(s) did not finish within its %g s deadline; "
            "counted as failed", len(batch), self.deadline,
        )  # fmt: skip
        return len(batch)

    def _run(self, batch: list[BudgetAlert], delivery: _Delivery) -> None:
        try:
            try:
                failed = self._send(batch)
            except Exception as exc:  # a sender bug must not kill the thread silently
                log.warning("budget alert delivery failed: %s", type(exc).__name__)
                failed = len(batch)
            with delivery.lock:
                delivery.failed = failed
                if delivery.abandoned:
                    log.info("a budget alert delivery past its deadline ended (%d failed)", failed)
        finally:
            self._slots.release()
            delivery.done.set()
