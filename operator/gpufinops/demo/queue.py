"""A fluid queue model of one model-server Deployment, behind the fake vLLM metrics.

The demo has no GPUs, so what a vLLM pod would report is computed: requests
arrive at the replayed rate, every *ready* replica completes up to
``replica_rps`` requests per second, and the rest wait. Only ready pods serve,
so replicas the operator adds drain the queue once they are scheduled, and
pods stuck Pending (no GPU left in the pool) do not help, as in a real cluster.

The model is deliberately simple and deterministic (no random service times):
the point is that the operator's reaction is visible and explainable, not that
latency is realistic. Clients give up after ``max_wait_seconds`` (the queue is
capped at that many seconds of arrivals), as real clients time out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROMPT_TOKENS = 1155.0
COMPLETION_TOKENS = 211.0
"""Mean tokens per request of the Azure 2023 conversation trace (19,366 requests)."""


@dataclass(frozen=True)
class PodSample:
    """What one pod's vLLM exports at a scrape."""

    waiting: float
    running: float
    kv_cache: float
    """Fraction of the KV cache in use (0-1)."""
    success_total: float
    prompt_tokens_total: float
    generation_tokens_total: float


@dataclass
class QueueModel:
    """Requests waiting and in service across a Deployment's ready pods."""

    replica_rps: float
    """Requests per second one ready replica completes at full load."""
    slots: int = 16
    """Requests one replica serves concurrently (vLLM's batch)."""
    max_wait_seconds: float = 120.0
    waiting: float = 0.0
    running: float = 0.0
    completed: float = 0.0
    abandoned: float = 0.0
    _per_pod: dict[str, float] = field(default_factory=dict)
    """Requests each pod has completed since it appeared (its own counter)."""

    def __post_init__(self) -> None:
        if self.replica_rps <= 0 or self.slots <= 0:
            raise ValueError("replica_rps and slots must be positive")

    def step(self, arrivals_rps: float, pods: list[str], dt: float) -> dict[str, PodSample]:
        """Advance ``dt`` seconds with ``pods`` ready and return each pod's sample."""
        ready = len(pods)
        offered = self.waiting + max(arrivals_rps, 0.0) * dt
        capacity = ready * self.replica_rps * dt
        done = min(offered, capacity)
        self.waiting = offered - done
        cap = self.max_wait_seconds * max(arrivals_rps, self.replica_rps)
        if self.waiting > cap:
            self.abandoned += self.waiting - cap
            self.waiting = cap
        busy = done / capacity if capacity > 0 else 0.0
        self.running = ready * self.slots * busy
        self.completed += done
        for gone in set(self._per_pod) - set(pods):
            del self._per_pod[gone]
        samples: dict[str, PodSample] = {}
        for pod in pods:
            total = self._per_pod.get(pod, 0.0) + done / ready
            self._per_pod[pod] = total
            samples[pod] = PodSample(
                waiting=self.waiting / ready,
                running=self.running / ready,
                kv_cache=round(0.9 * busy, 4),
                success_total=total,
                prompt_tokens_total=total * PROMPT_TOKENS,
                generation_tokens_total=total * COMPLETION_TOKENS,
            )
        return samples
