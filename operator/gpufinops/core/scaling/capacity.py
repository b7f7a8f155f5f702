"""How many requests per second one replica sustains, learned from what it did.

GPU serving capacity depends on model, prompt mix and batch settings, so the
operator learns it instead of asking for it: while requests queue, replicas
are saturated and throughput per ready replica *is* their capacity; while
nothing queues, it is only a lower bound.
"""

from gpufinops.core.scaling.observation import Observation

SMOOTHING = 0.3
"""Weight of a new saturated sample: reacts within a few ticks, ignores one-off noise."""

SETTLE_SECONDS = 90.0
"""How long the ready replicas must stay the same before throughput per ready
replica means anything. Throughput is a mean over the last minute, as of the
scrape lag; divided by a ready count that changed meanwhile (replicas that just
became ready serve nothing in that window yet) it reads low, and each such
sample during a scale-up under load would drag the estimate down and make
every later decision over-provision."""


def is_saturated(observation: Observation, ready: int) -> bool:
    """At least one waiting request per ready replica: replicas are working flat out."""
    return ready > 0 and observation.queue_depth is not None and observation.queue_depth >= ready


def update_capacity(
    previous: float | None, observation: Observation, ready: int, settled: bool = True
) -> float | None:
    """The new capacity estimate (requests/s per replica), or ``previous`` when nothing new.

    ``settled``: the ready replicas have not changed for :data:`SETTLE_SECONDS`;
    until then only a first estimate is taken (better than none).
    """
    if ready <= 0 or observation.throughput is None or observation.throughput <= 0:
        return previous
    if previous is not None and not settled:
        return previous
    per_replica = observation.throughput / ready
    if is_saturated(observation, ready):
        if previous is None:
            return per_replica
        return previous + SMOOTHING * (per_replica - previous)
    # Unsaturated replicas served this much and could have served more.
    return per_replica if previous is None else max(previous, per_replica)
