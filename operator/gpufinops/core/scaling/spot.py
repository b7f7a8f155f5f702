"""Where an inference service's replicas run: an on-demand base, spot above it.

The replica count comes from the scaling core (``tick.plan_inference``); this
module only splits it over capacity classes, once per tick, from what each spot
pool has shown:

- **Base.** ``onDemandBaseReplicas`` plus ``onDemandPercentAboveBase`` of the rest
  stay on on-demand: what must be served through a preemption.
- **Spread, without moves.** The spot share is spread over the pools that are
  available, but a replica that serves (or is scheduled) is never moved to even the
  spread: moving it would open a gap of one start-up. New replicas go to the pool
  holding the fewest; a scale-down takes pending replicas first, then starting, then
  ready ones, from unavailable pools first, then the fullest.
- **Surviving a pool's loss.** A zone running dry takes every replica there at once,
  and a replacement takes longer to start than a notice lasts. Once a pool's loss
  within one replacement time is likely (``SURVIVE_POOL_LOSS_ABOVE``, which the prior
  alone reaches with two pools or more), extra replicas in the other pools keep
  ``SURVIVE_FRACTION`` of the need through the loss of the fullest pool; with one
  pool left, on-demand keeps that fraction instead. On top, each pool's expected
  loss: with ``r`` events per hour and a replacement taking ``H`` seconds, the chance
  the pool is hit within ``H`` is ``1 - exp(-r H / 3600)``, times its share.
  ``minExtraReplicas`` is a floor, as SpotHedge's fixed over-provisioning.
- **Unavailable pools.** A pool interrupted (a node of it tainted with an
  interruption notice) or unable to place a replica for ``pendingTimeoutSeconds``
  is left alone for ``unavailableSeconds``: it gets no new replicas; its healthy
  ones stay.
- **Fallback.** Spot replicas needed but not on their way (unscheduled for more
  than ``PENDING_GRACE_SECONDS``, under a notice, in a pool that is short) are run
  on on-demand until spot ones are ready again. Fallback rises at once and falls
  only as spot replicas become *ready*, never on spot replicas still starting, so
  a spot recovery never opens a capacity gap.
- **Notices.** A replica on a node under an interruption notice still serves until
  its instance goes, so it is kept while its replacement starts (elsewhere: its
  pool gets no new replicas) and removed, first of its pool, once what replaces it
  is ready (``drain``). Removing it at the notice would open a gap of the
  start-up time less the notice on every preemption. One not replaced yet is drained
  ``DRAIN_AHEAD_SECONDS`` before its notice's deadline (``notice_seconds``), so its
  in-flight requests finish rather than go with the instance. A replacement asked of a pool
  running none of ours is a guess at its capacity: on-demand stands in for it at
  once. The sizing core does not learn headroom from the gap, nor from the queue it
  leaves, for two replacement times after a preemption (``replacing``).

Pure: counts, timestamps and settings in, a plan out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gpufinops.api.inference import SpotInference
from gpufinops.core.events import EventReason
from gpufinops.core.placement.interruptions import notice_seconds
from gpufinops.core.search import smallest

PRIOR_PREEMPTIONS_PER_HOUR = 0.05
"""Assumed preemption events per pool-hour before a pool has been watched: a few a
day, as the published spot traces show for GPU instances; the pool's own record
replaces it as its hours grow (``preemption_rate``)."""
PRIOR_HOURS = 4.0
"""Weight of that assumption, in pool-hours of observation."""
RATE_WINDOW_SECONDS = 7 * 86400
"""Preemptions older than this are forgotten."""
MAX_REMEMBERED = 50
"""Preemption instants kept per pool (status stays bounded)."""
SURVIVE_POOL_LOSS_ABOVE = 0.005
"""Chance of some pool being preempted within one replacement time above which a pool's
loss is planned for (``SURVIVE_FRACTION``), not only the expected loss: the prior alone
reaches it with two pools or more, a single pool once its preemptions are seen."""
PENDING_GRACE_SECONDS = 30.0
"""An unscheduled spot replica younger than this is still expected (the scheduler
binding it); older, on-demand stands in for it."""
DRAIN_AHEAD_SECONDS = 30.0
"""A noticed replica not yet replaced is drained this long before its deadline (the
Pod's default grace period), so its in-flight requests finish instead of being lost
with the instance: the notice is seen up to one tick late, and draining takes time."""
INTERRUPTED = "Interrupted"
NO_CAPACITY = "NoCapacity"


@dataclass(frozen=True)
class SpotSettings:
    pools: tuple[str, ...]
    on_demand_base: int = 1
    on_demand_percent: int = 0
    min_extra: int = 0
    by_preemption_rate: bool = True
    unavailable_seconds: float = 900.0
    pending_timeout_seconds: float = 180.0
    replacement_seconds: float = 180.0
    """Time for a replacement replica to be ready (the forecast lead time: node, image
    and model load)."""

    @classmethod
    def from_spec(cls, spec: SpotInference, replacement_seconds: float) -> SpotSettings:
        return cls(
            pools=tuple(spec.pools),
            on_demand_base=spec.on_demand_base_replicas,
            on_demand_percent=spec.on_demand_percent_above_base,
            min_extra=spec.overprovision.min_extra_replicas,
            by_preemption_rate=spec.overprovision.by_preemption_rate,
            unavailable_seconds=float(spec.unavailable_seconds),
            pending_timeout_seconds=float(spec.pending_timeout_seconds),
            replacement_seconds=max(float(replacement_seconds), 0.0),
        )


@dataclass(frozen=True)
class PoolRecord:
    """What is remembered of a spot pool across ticks (status.spot.pools)."""

    preemptions: tuple[float, ...] = ()
    """Instants (epoch s) of its preemption events, oldest first."""
    watched_since: float | None = None
    """When this workload began to run spot replicas in it: the rate's denominator."""
    unavailable_until: float | None = None
    reason: str = ""
    """Why it is unavailable: ``Interrupted`` or ``NoCapacity``."""


@dataclass(frozen=True)
class PoolObservation:
    """A spot pool's replicas of this workload now (from the pods and their nodes)."""

    ready: int = 0
    starting: int = 0
    """Scheduled, not ready yet."""
    pending: int = 0
    """Not scheduled."""
    pending_since: float | None = None
    """The oldest unscheduled replica's creation (epoch s)."""
    noticed: tuple[str, ...] = ()
    """Pods on nodes under an interruption notice."""
    notice_reason: str = ""


@dataclass(frozen=True)
class OnDemandObservation:
    replicas: int = 0
    """Replicas of the scaled object now (its spec)."""
    ready: int = 0


@dataclass(frozen=True)
class SpotEvent:
    type: str
    reason: EventReason
    message: str


@dataclass(frozen=True)
class SpotPlan:
    on_demand: int
    """Replicas of the scaled object (the on-demand class)."""
    spot: Mapping[str, int]
    """Replicas per spot pool."""
    base: int
    fallback: int
    """On-demand replicas standing in for spot ones."""
    extra: int
    """Spot replicas over the need (over-provisioning)."""
    drain: tuple[str, ...]
    """Pods under a notice to remove now: what replaces them is ready."""
    noticed: tuple[str, ...]
    """Every pod under a notice: removed first by any scale-down of its pool."""
    replacing: bool
    """Noticed replicas not replaced by ready ones yet, or a preemption within two
    replacement times: the sizing core learns no headroom from the gap, nor from the
    queue it leaves."""
    records: Mapping[str, PoolRecord]
    events: tuple[SpotEvent, ...] = field(default=())

    @property
    def total(self) -> int:
        return self.on_demand + sum(self.spot.values())


def preemption_rate(record: PoolRecord, now: float) -> float:
    """Preemption events per hour in the pool: its record with a prior, as a
    gamma-Poisson mean, so a pool never watched is neither trusted nor shunned."""
    recent = [t for t in record.preemptions if now - t <= RATE_WINDOW_SECONDS]
    hours = 0.0
    if record.watched_since is not None:
        hours = max(0.0, min(now - record.watched_since, RATE_WINDOW_SECONDS)) / 3600.0
    return (len(recent) + PRIOR_PREEMPTIONS_PER_HOUR * PRIOR_HOURS) / (hours + PRIOR_HOURS)


def hit_probability(rate_per_hour: float, seconds: float) -> float:
    """Chance a pool with ``rate_per_hour`` preemption events has one within ``seconds``."""
    return 1.0 - math.exp(-max(rate_per_hour, 0.0) * max(seconds, 0.0) / 3600.0)


def split_base(desired: int, settings: SpotSettings) -> tuple[int, int]:
    """(on-demand base, spot need) of ``desired`` replicas."""
    base = min(desired, settings.on_demand_base)
    above = desired - base
    kept = math.ceil(above * settings.on_demand_percent / 100 - 1e-9)
    return base + kept, above - kept


def place(
    count: int,
    pools: Sequence[str],
    held: Mapping[str, tuple[int, int, int]],
    available: Sequence[str],
    order: Mapping[str, float],
) -> dict[str, int]:
    """``count`` replicas over ``pools``, moving none that serve.

    ``held``: each pool's (ready, starting, pending) replicas. Too many: pending ones
    go first (they serve nobody), then starting ones, then ready ones, each from
    pools no longer available first, then from the fullest. Too few: each missing one
    goes to the available pool holding the fewest (then the lowest ``order``), so the
    spread evens out as the service grows and shrinks, never by moving a replica that
    serves.
    """
    rank = {p: i for i, p in enumerate(pools)}
    kinds = [{p: max(held.get(p, (0, 0, 0))[k], 0) for p in pools} for k in (2, 1, 0)]
    out = {p: sum(kind[p] for kind in kinds) for p in pools}
    surplus = sum(out.values()) - max(count, 0)
    for kind in kinds:
        while surplus > 0 and any(kind.values()):
            pool = max(
                (p for p in pools if kind[p] > 0),
                key=lambda p: (p not in available, out[p], order.get(p, 0.0), rank[p]),
            )
            kind[pool] -= 1
            out[pool] -= 1
            surplus -= 1
    if available:
        for _ in range(-surplus):
            pool = min(available, key=lambda p: (out[p], order.get(p, 0.0), rank[p]))
            out[pool] += 1
    return out


SURVIVE_FRACTION = 0.8
"""Share of the spot need that must still serve when the fullest pool is lost: the
rest is what the planning headroom and a short queue absorb until replacements start."""


def survive_extra(need: int, placed: Callable[[int], dict[str, int]], pools: int) -> int:
    """The fewest extra replicas such that losing the fullest pool still leaves
    ``SURVIVE_FRACTION`` of the need; ``placed(count)`` is where ``count`` replicas go
    over ``pools`` available pools (``place``). Each extra goes to the emptiest pool,
    so what a loss leaves never falls as extras are added, and the search may bisect."""
    floor = math.ceil(need * SURVIVE_FRACTION - 1e-9)

    def survives(extra: int) -> bool:
        return need + extra - max(placed(need + extra).values(), default=0) >= floor

    if pools < 2:
        return 0
    return smallest(survives, 0, 0, 4 * max(need, 1))


def notice_deadline(record: PoolRecord, reason: str) -> float | None:
    """When the instances behind a pool's notice go (epoch s), from the first sight of
    the notice (``record.preemptions[-1]``) and its reason; None without a deadline.
    A later notice in a pool already interrupted shares the first one's deadline, so
    its replicas are drained early rather than late."""
    seconds = notice_seconds(reason)
    if not record.preemptions or seconds is None:
        return None
    return record.preemptions[-1] + seconds


def _remember(
    record: PoolRecord, observed: PoolObservation, settings: SpotSettings, now: float
) -> tuple[PoolRecord, SpotEvent | None]:
    """The pool's record after what was seen now, and an Event when it became
    unavailable."""
    preemptions = tuple(t for t in record.preemptions if now - t <= RATE_WINDOW_SECONDS)
    watched = record.watched_since
    if watched is None and observed.ready + observed.starting + observed.pending > 0:
        watched = now
    until, reason = record.unavailable_until, record.reason
    if until is not None and until <= now:
        until, reason = None, ""
    event = None
    if observed.noticed:
        if until is None or reason != INTERRUPTED:
            # One event per interruption, however many ticks its notice is seen.
            preemptions = (*preemptions, now)[-MAX_REMEMBERED:]
            message = (
                f"{len(observed.noticed)} replica(s) under an interruption notice "
                f"({observed.notice_reason or 'interruption taint'}): drained and replaced; "
                f"no new replicas there for {settings.unavailable_seconds:.0f}s"
            )
            event = SpotEvent("Warning", EventReason.SPOT_INTERRUPTED, message)
        until, reason = now + settings.unavailable_seconds, INTERRUPTED
    elif _stuck(observed, settings, now):
        assert observed.pending_since is not None
        if until is None:
            message = (
                f"{observed.pending} spot replica(s) unschedulable for "
                f"{now - observed.pending_since:.0f}s: no spot capacity; no new replicas "
                f"there for {settings.unavailable_seconds:.0f}s"
            )
            event = SpotEvent("Warning", EventReason.SPOT_UNAVAILABLE, message)
            until, reason = now + settings.unavailable_seconds, NO_CAPACITY
    return PoolRecord(preemptions, watched, until, reason), event


def _stuck(observed: PoolObservation, settings: SpotSettings, now: float) -> bool:
    return (
        observed.pending > 0
        and observed.pending_since is not None
        and now - observed.pending_since >= settings.pending_timeout_seconds
    )


def _recently_preempted(
    records: Mapping[str, PoolRecord], settings: SpotSettings, now: float
) -> bool:
    """A preemption within two replacement times: its replacements may still be
    starting, or the queue it left still draining."""
    return any(
        r.preemptions and now - r.preemptions[-1] <= 2 * settings.replacement_seconds
        for r in records.values()
    )


def plan_spot(
    desired: int,
    settings: SpotSettings,
    on_demand: OnDemandObservation,
    pools: Mapping[str, PoolObservation],
    records: Mapping[str, PoolRecord],
    now: float,
) -> SpotPlan:
    """Split ``desired`` replicas over on-demand and the spot pools, for this tick.

    ``pools`` counts each pool's replicas of this workload; replicas under a notice
    are in ``noticed`` only, never in ``ready``, ``starting`` or ``pending``.
    """
    desired = max(int(desired), 0)
    base, need = split_base(desired, settings)
    events: list[SpotEvent] = []
    recs: dict[str, PoolRecord] = {}
    rates: dict[str, float] = {}
    seen = {p: pools.get(p, PoolObservation()) for p in settings.pools}
    for name in settings.pools:
        record, event = _remember(records.get(name, PoolRecord()), seen[name], settings, now)
        recs[name] = record
        rates[name] = preemption_rate(record, now)
        if event is not None:
            events.append(SpotEvent(event.type, event.reason, f"pool {name}: {event.message}"))
    available = [p for p in settings.pools if recs[p].unavailable_until is None]
    healthy = {p: seen[p].ready + seen[p].starting for p in settings.pools}
    # Replicas stay where they are: a ready replica moved to even the spread would be a
    # gap of one start-up, paid to guard against a loss that may not come. Pending ones
    # stay in pools still available (they are on their way), not in the others.
    held = {
        p: (seen[p].ready, seen[p].starting, seen[p].pending if p in available else 0)
        for p in settings.pools
    }

    def placed(count: int) -> dict[str, int]:
        return place(count, settings.pools, held, available, rates)

    shares = placed(need)
    expected, spared = 0.0, 1.0
    if settings.by_preemption_rate:
        for pool in available:
            hit = hit_probability(rates[pool], settings.replacement_seconds)
            expected += shares[pool] * hit
            spared *= 1.0 - hit
    rounded = math.floor(expected + 0.5)
    risky = need > 0 and 1.0 - spared >= SURVIVE_POOL_LOSS_ABOVE
    if risky and len(available) > 1:
        # A pool's loss within a replacement is likely enough that the mean loss would
        # leave the service short each time it happens: extra replicas in the other
        # pools keep SURVIVE_FRACTION of the need through the loss of the fullest.
        rounded = max(rounded, survive_extra(need, placed, len(available)))
    count = max(rounded, settings.min_extra) if available and need > 0 else 0
    spot = placed(need + count)
    # Spot replicas that serve now, and those that will: scheduled ones, those just
    # asked for (not created yet, or unscheduled for less than PENDING_GRACE_SECONDS),
    # up to each pool's target. On-demand stands in for the rest at once: a replica
    # that cannot be scheduled is a gap, and a stand-in started late is a longer one.
    noticed = tuple(pod for p in settings.pools for pod in seen[p].noticed)
    serving_now = serving_soon = 0
    for pool in settings.pools:
        observed = seen[pool]
        young = observed.pending_since is None or (
            now - observed.pending_since < PENDING_GRACE_SECONDS
        )
        coming = healthy[pool]
        # While noticed replicas count down, a replacement asked of a pool that runs
        # none of ours now is a guess at its capacity: on-demand stands in at once.
        proven = healthy[pool] > 0 or not noticed
        if pool in available and proven:
            unseen = max(0, spot[pool] - healthy[pool] - observed.pending)
            coming += unseen + (observed.pending if young else 0)
        kept = min(spot[pool], need)
        serving_now += min(observed.ready, kept)
        serving_soon += min(coming, kept)
    serving_now, serving_soon = min(serving_now, need), min(serving_soon, need)
    current_fallback = max(0, on_demand.replicas - base)
    # Rise at once for what will not serve; fall only as spot replicas are ready.
    fallback = min(max(current_fallback, need - serving_soon), need - serving_now)
    insured = 0
    if risky and len(available) == 1:
        # One pool left: its loss would take the whole spot share at once, and no
        # other pool can hold extras. On-demand keeps what must survive it.
        insured = math.ceil(need * SURVIVE_FRACTION - 1e-9)
        fallback = max(fallback, insured)
    # Replicas under a notice serve until their instance goes: they are kept until what
    # replaces them is ready (stand-ins included), then removed first.
    stand_ins_ready = max(0, min(on_demand.ready - base, fallback))
    replaced = serving_now + stand_ins_ready >= need
    # Not replaced yet, but the instance goes soon: drained now, its in-flight
    # requests finish rather than go with it.
    due = {
        p for p in settings.pools
        if seen[p].noticed
        and (end := notice_deadline(recs[p], seen[p].notice_reason)) is not None
        and now >= end - DRAIN_AHEAD_SECONDS
    }  # fmt: skip
    drain = noticed if replaced else tuple(pod for p in settings.pools if p in due
                                           for pod in seen[p].noticed)  # fmt: skip
    if not replaced:
        for pool in settings.pools:
            if pool not in due:
                spot[pool] += len(seen[pool].noticed)
    if fallback > current_fallback:
        why = (
            f"one spot pool left ({available[0]}), likely to be preempted: on-demand keeps "
            f"{insured} of {need} through its loss"
            if fallback == insured
            else f"stand in for spot replicas not serving ({need - serving_soon} of {need} short)"
        )
        events.append(SpotEvent(
            "Normal", EventReason.SPOT_FALLBACK, f"{fallback} on-demand replica(s): {why}",
        ))  # fmt: skip
    elif current_fallback > 0 and fallback == 0 and need > 0:
        events.append(SpotEvent(
            "Normal", EventReason.SPOT_RECOVERED,
            f"spot replicas are ready again; {current_fallback} on-demand stand-in(s) removed",
        ))  # fmt: skip
    return SpotPlan(
        on_demand=base + fallback,
        spot=spot,
        base=base,
        fallback=fallback,
        extra=count,
        drain=drain,
        noticed=noticed,
        replacing=(bool(noticed) and not replaced) or _recently_preempted(recs, settings, now),
        records=recs,
        events=tuple(events),
    )
