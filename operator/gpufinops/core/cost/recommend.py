"""Rightsizing: what a workload could change to spend less, and how much a month.

Four rules, each from plain observations the caller passes (GPUs held by local
hour of day, replicas, the GPU pool, and the peak DCGM utilisation when
Prometheus has it) and the prices of the configured pools:

- **FewerReplicas**: the GPUs never got busy, so fewer replicas carry the load.
- **SmallerGPU**: utilisation so low that a cheaper GPU type would do.
- **UseSpot**: interruption-tolerant work (Training with checkpoints,
  Experiment) on on-demand capacity that has a cheaper spot twin.
- **AddSchedule**: an Inference service held at its replica floor through a
  quiet stretch of every day; a lower floor with a daytime schedule saves the
  difference.

A recommendation is a suggestion with an estimated saving, never an action.
When the data cannot support a rule (too few hours observed, utilisation
unknown) the rule says nothing: a wrong suggestion costs trust, a missing one
costs only a saving not yet found. The savings of different recommendations are
alternatives, not additive. The thresholds are in ``Thresholds`` and
``docs/cost.md``.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from math import ceil
from zoneinfo import ZoneInfo

from gpufinops.api.spec import AIWorkloadSpec, WorkloadType
from gpufinops.api.status import ObservedUsage
from gpufinops.config.model import CapacityType, NodePool
from gpufinops.core.cost.periods import HOURS_PER_MONTH

HOURS_PER_DAY = 24
DAYS_PER_MONTH = HOURS_PER_MONTH / HOURS_PER_DAY
MAX_RECOMMENDATIONS = 10
"""The most kept in status: enough for every rule, bounded for the object size."""
MAX_POOLS = 16
"""Pools kept in ``status.observedUsage`` (the largest): the size of status is bounded."""


class Kind(StrEnum):
    FEWER_REPLICAS = "FewerReplicas"
    SMALLER_GPU = "SmallerGPU"
    USE_SPOT = "UseSpot"
    ADD_SCHEDULE = "AddSchedule"


@dataclass(frozen=True)
class Recommendation:
    kind: Kind
    message: str
    estimated_monthly_saving_usd: float


@dataclass(frozen=True)
class Thresholds:
    """When each rule speaks; the defaults are documented in docs/cost.md."""

    min_observed_hours: float = 24.0
    """A day at least: less than that cannot tell a quiet hour from a quiet day."""
    min_hours_per_hour_of_day: float = 3.0
    """AddSchedule needs every hour of the day seen on three days, so one holiday is no pattern."""
    low_utilization_percent: float = 40.0
    """FewerReplicas: peak utilisation below this on every GPU."""
    target_utilization_percent: float = 70.0
    """FewerReplicas sizes for this peak utilisation, leaving headroom for bursts."""
    smaller_gpu_utilization_percent: float = 30.0
    """SmallerGPU: a GPU never a third busy is likely larger than the work needs."""
    quiet_share: float = 0.5
    """AddSchedule: an hour is quiet when it holds at most this share of the busiest hour."""
    min_quiet_hours: int = 6
    """AddSchedule: a shorter quiet stretch is not worth a schedule."""
    floor_slack_replicas: float = 0.25
    """AddSchedule: within this of minReplicas, the floor (not demand) held the replicas."""
    experiment_lost_hours: float = 0.5
    """UseSpot on an Experiment: unsaved work an interruption is assumed to lose."""
    min_saving_usd: float = 1.0
    """Savings below a dollar a month are not worth a person's attention."""


@dataclass(frozen=True)
class Usage:
    """What was observed of one workload: GPUs held and replicas, by local hour of day."""

    observed_hours: tuple[float, ...] = (0.0,) * HOURS_PER_DAY
    """Hours observed in each local hour of the day (index 0 is 00:00-01:00)."""
    gpu_hours: tuple[float, ...] = (0.0,) * HOURS_PER_DAY
    """GPU-hours held in each local hour of the day."""
    replica_hours: tuple[float, ...] = (0.0,) * HOURS_PER_DAY
    """Replica-hours in each local hour of the day."""
    peak_replicas: int = 0
    gpus_per_replica: float = 0.0
    """The most GPUs one replica held."""
    gpu_hours_by_pool: Mapping[str, float] = field(default_factory=dict)
    last_time: datetime | None = None
    """End of the last interval observed."""
    first_time: datetime | None = None
    """Start of the first interval observed: with ``last_time``, the evidence window."""

    def to_status(self, peak_utilization_percent: float | None) -> ObservedUsage:
        """``status.observedUsage``: what a restarted operator goes on from (bounded:
        24 hours of the day and the largest pools)."""
        pools = sorted(self.gpu_hours_by_pool.items(), key=lambda kv: (-kv[1], kv[0]))
        return ObservedUsage(
            observed_since=self.first_time,
            observed_until=self.last_time,
            observed_hours=[round(h, 6) for h in self.observed_hours],
            gpu_hours=[round(h, 6) for h in self.gpu_hours],
            replica_hours=[round(h, 6) for h in self.replica_hours],
            peak_replicas=self.peak_replicas,
            gpus_per_replica=self.gpus_per_replica,
            gpu_hours_by_pool={k: round(v, 6) for k, v in pools[:MAX_POOLS]},
            peak_utilization_percent=peak_utilization_percent,
        )

    @classmethod
    def from_status(cls, observed: ObservedUsage) -> "Usage":
        """What a previous process observed, going on from the next interval: the
        time the operator was down is not counted as observed."""
        values = (*observed.observed_hours, *observed.gpu_hours, *observed.replica_hours,
                  *observed.gpu_hours_by_pool.values(), observed.gpus_per_replica)  # fmt: skip
        if not all(math.isfinite(v) and v >= 0 for v in values):
            return cls()  # not what accounting writes: observe again
        return cls(
            tuple(observed.observed_hours),
            tuple(observed.gpu_hours),
            tuple(observed.replica_hours),
            observed.peak_replicas,
            observed.gpus_per_replica,
            dict(observed.gpu_hours_by_pool),
            None,
            observed.observed_since,
        )

    @property
    def total_hours(self) -> float:
        return sum(self.observed_hours)

    @property
    def mean_gpus(self) -> float:
        total = self.total_hours
        return sum(self.gpu_hours) / total if total > 0 else 0.0

    @property
    def pool(self) -> str | None:
        """The pool most of the GPU-hours were on."""
        if not self.gpu_hours_by_pool:
            return None
        return max(sorted(self.gpu_hours_by_pool), key=lambda p: self.gpu_hours_by_pool[p])


def _hour_pieces(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[int, float]]:
    """(local hour of day, hours) of the pieces of ``[start, end)`` cut at local hours."""
    out = []
    a = start
    while a < end:
        local = a.astimezone(tz)
        into = timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
        b = min(end, a + timedelta(hours=1) - into)
        if b <= a:  # cannot happen with real zones; never loop forever
            b = end
        out.append((local.hour, (b - a).total_seconds() / 3600.0))
        a = b
    return out


def observe(
    usage: Usage,
    end: datetime,
    gpus: float,
    replicas: int,
    pool: str | None,
    tz: ZoneInfo,
) -> Usage:
    """Add ``[usage.last_time, end)`` held at ``gpus`` on ``replicas`` (sampled at ``end``).

    The first call only starts the clock. An ``end`` not after the last one is
    ignored, so a replayed tick never counts twice.
    """
    start = usage.last_time
    if start is None or end <= start:
        if start is not None:
            return usage
        return replace(usage, last_time=end, first_time=usage.first_time or end)
    observed, held, reps = (
        list(usage.observed_hours),
        list(usage.gpu_hours),
        list(usage.replica_hours),
    )
    total = 0.0
    for hour, hours in _hour_pieces(start, end, tz):
        observed[hour] += hours
        held[hour] += gpus * hours
        reps[hour] += replicas * hours
        total += hours
    by_pool = dict(usage.gpu_hours_by_pool)
    if pool is not None and gpus > 0:
        by_pool[pool] = by_pool.get(pool, 0.0) + gpus * total
    per_replica = gpus / replicas if replicas > 0 else 0.0
    return Usage(
        tuple(observed),
        tuple(held),
        tuple(reps),
        max(usage.peak_replicas, replicas),
        max(usage.gpus_per_replica, per_replica),
        by_pool,
        end,
        usage.first_time or start,
    )


def _price(pool: NodePool) -> float | None:
    if pool.hourly_price_usd is None or not pool.gpus_per_node:
        return None
    return pool.gpu_hourly_price_usd


def _money(usd: float) -> str:
    return f"${usd:,.2f}"


def _fewer_replicas(
    spec: AIWorkloadSpec, usage: Usage, price: float, util: float, t: Thresholds
) -> Recommendation | None:
    if spec.type == WorkloadType.TRAINING or usage.gpus_per_replica <= 0:
        return None  # fewer Job workers make a run slower, not cheaper
    peak = usage.peak_replicas
    if peak < 2 or util >= t.low_utilization_percent:
        return None
    needed = max(1, ceil(peak * util / t.target_utilization_percent))
    if needed >= peak:
        return None
    mean_replicas = usage.mean_gpus / usage.gpus_per_replica
    saving = max(0.0, mean_replicas - needed) * usage.gpus_per_replica * price * HOURS_PER_MONTH
    where = f"GPU utilisation peaked at {util:.0f}% with up to {peak} replicas"
    if spec.inference is not None:
        if spec.inference.min_replicas > needed:
            how = f"lower minReplicas from {spec.inference.min_replicas} to {needed}"
        else:
            how = "raise targetQueueDepthPerReplica or capacityPerReplica so fewer run"
    else:
        how = f"run {needed} replica{'s' if needed > 1 else ''}"
    message = f"{where}; {needed} would stay under {t.target_utilization_percent:.0f}%: {how}"
    return Recommendation(Kind.FEWER_REPLICAS, message, saving)


def _smaller_gpu(
    usage: Usage, pool: NodePool, price: float, pools: Sequence[NodePool], util: float,
    t: Thresholds,
) -> Recommendation | None:  # fmt: skip
    if util >= t.smaller_gpu_utilization_percent or pool.gpu_type is None:
        return None
    cheaper = [
        (p_price, p)
        for p in pools
        if p.gpu_type is not None
        and p.gpu_type != pool.gpu_type
        and p.capacity_type == pool.capacity_type
        and (p_price := _price(p)) is not None
        and p_price < price
    ]
    if not cheaper:
        return None
    # The next step down, not the cheapest: the smallest change likely to fit the model.
    new_price, new = max(cheaper, key=lambda c: (c[0], c[1].name))
    saving = usage.mean_gpus * (price - new_price) * HOURS_PER_MONTH
    message = (
        f"GPU utilisation peaked at {util:.0f}% on {pool.gpu_type}: {new.gpu_type} "
        f"(pool {new.name}) costs {_money(new_price)} instead of {_money(price)} per GPU-hour, "
        "if the model fits in its memory"
    )
    return Recommendation(Kind.SMALLER_GPU, message, saving)


def _use_spot(
    spec: AIWorkloadSpec, usage: Usage, pool: NodePool, price: float, pools: Sequence[NodePool],
    t: Thresholds,
) -> Recommendation | None:  # fmt: skip
    if pool.capacity_type != CapacityType.ON_DEMAND:
        return None
    if spec.type == WorkloadType.TRAINING:
        training = spec.training
        if training is None or training.spot.enabled:
            return None  # spot allowed already: on-demand is the placement's own fallback
        checkpoint = training.checkpoint
        if checkpoint is None or checkpoint.interval_seconds <= 0:
            return None  # without checkpoints an interruption loses the whole run
        lost_hours = checkpoint.interval_seconds / 2 / 3600.0
        how = "set spec.training.spot.enabled: true"
    elif spec.type == WorkloadType.EXPERIMENT:
        lost_hours = t.experiment_lost_hours
        how = "add the spot pool to spec.nodePools"
    else:
        return None  # serving traffic is not interruption-tolerant
    same = pool.gpu_type or pool.instance_type
    twins = [
        (p_price, p)
        for p in pools
        if p.capacity_type == CapacityType.SPOT
        and (p.gpu_type or p.instance_type) == same
        and (p_price := _price(p)) is not None
        and p_price < price
    ]
    if not twins:
        return None
    spot_price, spot = min(twins, key=lambda c: (c[0], c[1].name))
    gpu_hours = usage.mean_gpus * HOURS_PER_MONTH
    # Interruptions per node-hour times the work each loses, redone at the spot price.
    rework = (spot.interruption_rate_per_month or 0.0) / HOURS_PER_MONTH * lost_hours
    saving = gpu_hours * price - gpu_hours * (1 + rework) * spot_price
    message = (
        f"{spec.type} work on on-demand {same} at {_money(price)} per GPU-hour; spot pool "
        f"{spot.name} costs {_money(spot_price)}, interruptions included: {how}"
    )
    return Recommendation(Kind.USE_SPOT, message, saving)


def _quiet_stretch(quiet: Sequence[bool]) -> tuple[int, int]:
    """(first hour, length) of the longest run of quiet hours, wrapping past midnight."""
    n = len(quiet)
    if all(quiet):
        return 0, n
    best = (0, 0)
    for first in range(n):
        if quiet[first] and not quiet[first - 1]:
            length = 0
            while length < n and quiet[(first + length) % n]:
                length += 1
            if length > best[1]:
                best = (first, length)
    return best


def _add_schedule(
    spec: AIWorkloadSpec, usage: Usage, price: float, t: Thresholds, tz_name: str
) -> Recommendation | None:
    inference = spec.inference
    if inference is None or inference.schedules or inference.min_replicas < 2:
        return None
    if min(usage.observed_hours) < t.min_hours_per_hour_of_day:
        return None
    replicas = [r / h for r, h in zip(usage.replica_hours, usage.observed_hours, strict=True)]
    busiest = max(replicas)
    floor_ = inference.min_replicas
    quiet = [
        r <= t.quiet_share * busiest and r <= floor_ + t.floor_slack_replicas for r in replicas
    ]
    first, length = _quiet_stretch(quiet)
    if length < t.min_quiet_hours or length == HOURS_PER_DAY:
        return None  # no daytime peak to schedule for
    new_floor = 1
    saving = (floor_ - new_floor) * usage.gpus_per_replica * price * length * DAYS_PER_MONTH
    busy_start = (first + length) % HOURS_PER_DAY
    message = (
        f"held at its floor of {floor_} replicas from {first:02d}:00 for {length} h a day "
        f"({tz_name}) while the busiest hour averaged {busiest:.1f}: set minReplicas: "
        f"{new_floor} and a schedule cron '0 {busy_start} * * *', durationSeconds "
        f"{(HOURS_PER_DAY - length) * 3600}, minReplicas: {floor_}"
    )
    return Recommendation(Kind.ADD_SCHEDULE, message, saving)


def recommend(
    spec: AIWorkloadSpec,
    usage: Usage,
    pools: Sequence[NodePool],
    peak_utilization_percent: float | None,
    tz_name: str = "UTC",
    thresholds: Thresholds | None = None,
) -> list[Recommendation] | None:
    """Recommendations by saving, largest first; None when the data is insufficient.

    None and ``[]`` differ: ``[]`` means enough was observed and nothing is worth
    changing, None that nothing can be said yet (a caller keeps what it had).
    ``peak_utilization_percent`` is the highest utilisation of any of the
    workload's GPUs over the observed time, None when unknown; the rules that
    need it are then skipped.
    """
    t = thresholds or Thresholds()
    if usage.total_hours < t.min_observed_hours or usage.mean_gpus <= 0:
        return None
    pool = next((p for p in pools if p.name == usage.pool), None)
    price = _price(pool) if pool is not None else None
    if pool is None or price is None:
        return None  # off every priced pool: no saving can be computed
    found: list[Recommendation | None] = [
        _use_spot(spec, usage, pool, price, pools, t),
        _add_schedule(spec, usage, price, t, tz_name),
    ]
    if peak_utilization_percent is not None:
        util = max(0.0, peak_utilization_percent)
        found += [
            _fewer_replicas(spec, usage, price, util, t),
            _smaller_gpu(usage, pool, price, pools, util, t),
        ]
    out = [
        replace(r, estimated_monthly_saving_usd=round(r.estimated_monthly_saving_usd, 2))
        for r in found
        if r is not None and r.estimated_monthly_saving_usd >= t.min_saving_usd
    ]
    out.sort(key=lambda r: (-r.estimated_monthly_saving_usd, r.kind))
    return out[:MAX_RECOMMENDATIONS]
