"""Calibrated headroom: how much spare capacity this workload's demand needs.

A replica ordered now serves only after its start-up lead, so the demand of
a moment has to fit into the capacity planned one lead earlier. How much spare
capacity that takes depends on the traffic: a smooth daily curve stays within
the fixed planning headroom, while traffic that jumps in steps needs more than
any forecast can give it. Rather than guess, every tick scores the moment it
sees: the demand observed now, plus the rate that drains the excess queue
(requests keep missing their wait until it is gone), against the capacity of
the replicas ready now, rescaled by the headroom that was planned with one lead
earlier, gives the headroom that moment would have needed. The margin is the
``coverage`` quantile of those needs over the last few days, each moment
weighted by its demand since the service level counts requests (an
exponentially decaying histogram): conformal calibration of the whole loop
(forecast, reactive need, rounding, stabilisation), so that about that share
of requests find enough replicas ready. Scores only use what was observed up
to the tick, and dividing out the headroom in use keeps the margin from
feeding on itself. On traffic the fixed headroom already serves, the margin
stays below it and changes nothing.
"""

import math
from dataclasses import dataclass

COVERAGE = 0.99
"""Share of demand (requests) arriving at moments whose ready capacity covers it."""

WINDOW_SECONDS = 2 * 86400.0
"""Time constant of the decay: scores older than a few days stop counting,
so the margin follows a change in the traffic's character within days."""

MIN_WEIGHT = 1000.0
"""Scored moments (decayed) needed before the margin is trusted: about four
hours at a 15 s sync period, ten misses at the default coverage."""

GROWTH = 1.02
"""Width of a histogram bin as a ratio: margins are resolved to 2 %."""

BINS = 70
"""Bins above 1; the last one holds every ratio beyond ``GROWTH ** BINS`` (4x)."""


@dataclass(frozen=True)
class Pending:
    """The headroom planned with at one tick, until its replicas could be ready."""

    time: float
    headroom: float
    """Planned capacity / planned demand at ``time`` (at least 1)."""


@dataclass(frozen=True)
class Calibration:
    """Decayed histogram of the headroom each past moment would have needed.

    ``counts[0]`` holds needs up to 1 (the ready capacity would have covered
    demand with no headroom at all) and ``counts[i]`` needs in
    ``(GROWTH ** (i - 1), GROWTH ** i]``; the last bin also holds everything larger.
    """

    pending: tuple[Pending, ...] = ()
    counts: tuple[float, ...] = ()
    """Demand (requests/s) of the scored moments in each bin, decayed: the
    service level counts requests, so a busy moment weighs more than a quiet one."""
    scored: float = 0.0
    """Scored moments, decayed the same way."""
    updated: float | None = None
    """Time the counts were last decayed to."""


def bin_of(ratio: float) -> int:
    """Histogram bin of a needed headroom."""
    if ratio <= 1.0:
        return 0
    index = math.ceil(math.log(ratio) / math.log(GROWTH) - 1e-9)
    return min(max(index, 1), BINS)


def observe(
    calibration: Calibration,
    now: float,
    demand: float | None,
    ready_capacity: float | None,
    headroom: float,
    lead_seconds: float,
    window_seconds: float = WINDOW_SECONDS,
    backlog: float = 0.0,
) -> Calibration:
    """Fold one tick in and remember the ``headroom`` it plans with.

    ``demand`` is observed now and ``ready_capacity`` is what the ready
    replicas serve now (their count times the capacity estimate). The moment
    is scored against the latest plan made at least one lead ago: the headroom
    it would have needed is ``demand / ready_capacity`` times the headroom that
    plan used, since that capacity was bought with it. Without a demand or a
    ready capacity the moment is not scored.
    """
    pending: list[Pending] = []
    matured: Pending | None = None
    for item in calibration.pending:
        if item.time >= now:
            continue  # the clock went back (a replay): that plan says nothing
        if now - item.time < lead_seconds - 1e-6:
            pending.append(item)
        else:
            matured = item  # oldest first: the last one is the latest
    pending.append(Pending(now, max(headroom, 1.0)))
    counts, scored, updated = calibration.counts, calibration.scored, calibration.updated
    if matured is not None and demand is not None and ready_capacity and ready_capacity > 0:
        elapsed = 0.0 if updated is None else max(now - updated, 0.0)
        factor = math.exp(-elapsed / window_seconds)
        decayed = [c * factor for c in counts] if counts else [0.0] * (BINS + 1)
        demand = max(demand, 0.0)
        need = (demand + max(backlog, 0.0)) / ready_capacity * matured.headroom
        decayed[bin_of(need)] += demand
        counts, scored, updated = tuple(decayed), scored * factor + 1.0, now
    return Calibration(tuple(pending), counts, scored, updated)


def margin(
    calibration: Calibration, coverage: float = COVERAGE, min_weight: float = MIN_WEIGHT
) -> float | None:
    """Headroom that covered ``coverage`` of the demand of the scored moments
    (the upper edge of the bin where that quantile falls), at least 1; ``None``
    until ``min_weight`` moments (decayed) have been scored."""
    if not 0.0 < coverage < 1.0:
        raise ValueError("coverage must be in (0, 1)")
    total = math.fsum(calibration.counts)
    if calibration.scored < min_weight or total <= 0:
        return None
    needed = coverage * total
    running = 0.0
    for index, count in enumerate(calibration.counts):
        running += count
        if running >= needed - 1e-9 * total:
            return float(GROWTH**index)
    return float(GROWTH**BINS)
