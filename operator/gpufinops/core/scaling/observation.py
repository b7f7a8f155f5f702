"""What the autoscaler sees at one tick: signals that may each be unknown.

``None`` means *unknown* (the query failed or returned no series), never
zero: a missing queue must not read as an empty one, or an outage would
scale a busy service down (the pitfall KEDA users keep hitting).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Observation:
    """Signals summed over the Deployment's pods, as of one scrape."""

    queue_depth: float | None = None
    """Requests waiting to be served (vLLM ``num_requests_waiting``)."""
    running: float | None = None
    """Requests being served right now (vLLM ``num_requests_running``)."""
    arrival_rate: float | None = None
    """Demand in requests per second, averaged over the last minute."""
    throughput: float | None = None
    """Completed requests per second, averaged over the last minute."""
    kv_cache_usage: float | None = None
    """Mean KV-cache usage across pods, 0-1 (saturation hint)."""
    error: str | None = None
    """Why the primary signal is unknown, when it is (for status and Events)."""
    queue_absent: bool = False
    """The queue query answered, with no series at all (not a failed read). With
    replicas running that is still unknown; at zero replicas an engine's series
    left with its last pod, and it means no queue (``decide``)."""

    @property
    def available(self) -> bool:
        """The queue is the signal the autoscaler cannot act without."""
        return self.queue_depth is not None
