"""One autoscaling tick for an Inference workload: observations in, replicas out.

Order of reasoning (each step documented in docs/scaling.md):
1. no queue signal → hold (or, after ``failureThreshold`` ticks, the fallback);
2. reactive need from demand, learned capacity and excess queue, with HPA tolerance;
   demand fills ``utilization`` of capacity, or less when the headroom calibrated
   on the workload's own recent lead windows asks for more (``headroom.py``);
3. predictive need from the forecast peak over the lead window, with the same headroom;
4. recommendation = max(reactive, predictive) within [floor, maxReplicas], where the
   floor rises inside scheduled windows;
5. HPA stabilisation windows and step policies; scale-to-zero steps N→1 through
   them and then 1→0.
"""

import math
from dataclasses import dataclass, field, replace

from gpufinops.api.inference import FallbackBehavior, Inference
from gpufinops.core.scaling.behavior import (
    TOLERANCE,
    ResolvedBehavior,
    Sample,
    resolve_behavior,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)
from gpufinops.core.scaling.capacity import SETTLE_SECONDS, is_saturated, update_capacity
from gpufinops.core.scaling.headroom import COVERAGE, Calibration, margin
from gpufinops.core.scaling.headroom import observe as calibrate
from gpufinops.core.scaling.observation import Observation
from gpufinops.core.scaling.schedule import schedule_floor

DRAIN_SECONDS = 60.0
"""A queue beyond the target is provisioned to drain within this time."""

TARGET_UTILIZATION = 0.9
"""Share of a replica's capacity that demand is planned to fill.

The demand a tick sees is a one-minute mean from a scrape ago, and replicas
ordered now serve minutes later; inside that minute and until then, demand
runs above the mean about as often as below. A queue fed at 100 % of capacity
never drains, so the surplus seconds pile up into waits of many seconds. The
spare tenth absorbs them: on a week of Azure LLM conversation traffic the
share of requests queued under 2 s goes from 0.938 at 100 % to 0.988 at 95 %
and 0.9975 at 90 %, for 10 % more GPU-hours than at 100 % (docs/benchmarks.md).
"""


@dataclass(frozen=True)
class ScalingState:
    """What the autoscaler remembers between ticks (persisted in status)."""

    recommendations: tuple[Sample, ...] = ()
    scale_ups: tuple[Sample, ...] = ()
    scale_downs: tuple[Sample, ...] = ()
    capacity_per_replica: float | None = None
    consecutive_failures: int = 0
    last_active_time: float | None = None
    ready_replicas: int | None = None
    """Ready replicas at the last tick, and since when (``ready_since``) they have
    been that many: throughput per replica is only trusted once they settle."""
    ready_since: float | None = None
    saturated_since: float | None = None
    """Start of the current run of saturated ticks (``None`` when not saturated)."""
    headroom: Calibration = field(default_factory=Calibration)
    """The headroom each recent moment would have needed, from which the
    calibrated margin is read (``headroom.py``)."""


@dataclass(frozen=True)
class Tick:
    """Inputs of one decision; ``now`` is epoch seconds."""

    now: float
    current: int
    ready: int
    observation: Observation
    forecast_peak: float | None = None
    disrupted: bool = False
    """Ready capacity is short because replicas were preempted and are being replaced
    (``core.scaling.spot``): not a sizing miss, so the calibration does not score it
    (it would buy headroom for the whole service against what over-provisioning and
    stand-ins cover)."""


@dataclass(frozen=True)
class Decision:
    desired: int
    recommended: int | None
    reactive: int | None
    predictive: int | None
    action: str
    reason: str
    metrics_available: bool
    fallback_active: bool
    state: ScalingState


@dataclass(frozen=True)
class ScalingSettings:
    """An Inference spec reduced to what the tick needs."""

    spec: Inference
    behavior: ResolvedBehavior
    capacity_per_replica: float | None = None
    target_utilization: float = TARGET_UTILIZATION
    """Applies to the *learned* capacity, which is saturated throughput. A
    ``capacityPerReplica`` from the user's load tests is the rate a replica
    sustains at their latency target, and is planned for as given."""
    coverage: float | None = COVERAGE
    """Share of demand that should arrive while the ready replicas cover it
    (with the excess queue drained), calibrated on the workload's own recent
    history (``core/scaling/headroom.py``); the calibrated headroom replaces
    the fixed one (1 / ``utilization``) when it is larger. ``None``: the fixed
    headroom only."""

    @classmethod
    def from_spec(cls, spec: Inference) -> "ScalingSettings":
        return cls(spec, resolve_behavior(spec.behavior), spec.capacity_per_replica)

    @property
    def utilization(self) -> float:
        """Share of the capacity estimate that demand is planned to fill."""
        return 1.0 if self.capacity_per_replica else self.target_utilization

    @property
    def lead_seconds(self) -> float:
        """How long a replica ordered now takes to serve (the forecast's lead time)."""
        return float(self.spec.forecast.lead_time_seconds)

    def planned_utilization(self, state: "ScalingState") -> float:
        """:attr:`utilization`, lowered when the calibrated margin asks for more room."""
        if self.coverage is None:
            return self.utilization
        factor = margin(state.headroom, self.coverage)
        if factor is None:
            return self.utilization
        return min(self.utilization, 1.0 / factor)


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)


def kv_cache_need(obs: Observation, ready: int, target: float | None) -> int | None:
    """Replicas that bring the mean KV-cache usage of the ready ones down to ``target``.

    As the HPA's utilisation rule: ``ceil(ready x usage / target)``. None without a
    target, a reading, or a ready replica to read it from; it only ever adds to the
    queue's need (the larger wins), so an unknown usage never scales down.
    """
    usage = obs.kv_cache_usage
    if target is None or usage is None or ready <= 0 or not math.isfinite(usage):
        return None
    return _ceil(ready * max(usage, 0.0) / target)


def reactive_need(
    obs: Observation,
    current: int,
    ready: int,
    capacity: float | None,
    target_queue: float,
    utilization: float = TARGET_UTILIZATION,
) -> tuple[int, str]:
    """Replicas the observed load needs, with the reason in words.

    HPA's tolerance only holds a *lower* need here: a need above the current
    count means demand exceeds what is planned for (``utilization`` of capacity),
    and holding it would let the queue grow for minutes before the excess-queue
    term reacts, by then too late for a seconds-scale wait.
    """
    queue = obs.queue_depth or 0.0
    demand = obs.arrival_rate if obs.arrival_rate is not None else obs.throughput
    if capacity is None or capacity <= 0 or demand is None:
        # Capacity not known yet: KEDA-like scaling on waiting requests per replica.
        if queue <= target_queue * max(ready, 1):
            return current, f"queue {queue:g} within target; capacity not learned yet"
        need = _ceil(queue / target_queue)
        return max(need, current), f"queue {queue:g} above {target_queue:g} per replica"
    excess = max(0.0, queue - target_queue * current)
    raw = demand / (capacity * utilization) + excess / (capacity * DRAIN_SECONDS)
    if current > 0 and (1 - TOLERANCE) * current <= raw <= current:
        return current, f"demand {demand:.3g}/s within tolerance of {current} replicas"
    reason = f"demand {demand:.3g}/s at {capacity:.3g}/s per replica"
    if excess > 0:
        reason += f", queue {queue:g} above target"
    return _ceil(raw), reason


def _fallback(spec: Inference, current: int, floor: int) -> int:
    fb = spec.fallback
    assert fb is not None
    if fb.behavior == FallbackBehavior.STATIC:
        value = fb.replicas
    elif fb.behavior == FallbackBehavior.CURRENT_REPLICAS:
        value = current
    elif fb.behavior == FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER:
        value = max(current, fb.replicas)
    else:
        value = min(current, fb.replicas)
    # A failing signal never drives a workload to zero, nor below its floor.
    return min(max(value, floor, 1), spec.max_replicas)


def _trim(samples: tuple[Sample, ...], now: float, keep: float) -> tuple[Sample, ...]:
    return tuple(s for s in samples if s.time > now - keep)


def decide(settings: ScalingSettings, state: ScalingState, tick: Tick) -> Decision:
    """Decide the replica count for one tick (pure)."""
    spec, obs, now, current = settings.spec, tick.observation, tick.now, tick.current
    if current == 0 and obs.queue_absent:
        # An engine's series leave with its last pod: at zero that is no queue, not a
        # failed read (fallback would wake a workload nobody calls, then flap).
        obs = replace(obs, queue_depth=0.0, error=None, queue_absent=False)
    sched_floor, window = schedule_floor(spec.schedules, now)
    floor = max(spec.min_replicas, sched_floor, 1)

    if not obs.available:
        failures = state.consecutive_failures + 1
        held = replace(state, consecutive_failures=failures)
        why = obs.error or "queue signal unknown"
        if spec.fallback is not None and failures >= spec.fallback.failure_threshold:
            desired = _fallback(spec, current, floor)
            return Decision(
                desired, None, None, None, "Fallback",
                f"{why}; fallback {spec.fallback.behavior} after {failures} failed reads "
                f"gives {desired} replicas",
                False, True, held,
            )  # fmt: skip
        return Decision(
            current, None, None, None, "Hold",
            f"{why}; holding {current} replicas (missing data never scales down)",
            False, False, held,
        )  # fmt: skip

    ready_since = state.ready_since
    if ready_since is None or state.ready_replicas != tick.ready:
        ready_since = now
    saturated_since = None
    if is_saturated(obs, tick.ready):
        saturated_since = state.saturated_since if state.saturated_since is not None else now
    # A saturated sample is capacity only if the queue lasted through the whole rate window.
    settled = now - ready_since >= SETTLE_SECONDS and (
        saturated_since is None or now - saturated_since >= SETTLE_SECONDS
    )
    capacity = settings.capacity_per_replica or update_capacity(
        state.capacity_per_replica, obs, tick.ready, settled
    )
    queue = obs.queue_depth or 0.0
    demand = obs.arrival_rate if obs.arrival_rate is not None else obs.throughput
    active = queue > 0 or (demand or 0) > 0 or (obs.running or 0) > 0
    last_active = now if active or state.last_active_time is None else state.last_active_time
    utilization = settings.planned_utilization(state)
    headroom = state.headroom
    if settings.coverage is not None:
        served = capacity * tick.ready if capacity else None
        excess = max(0.0, queue - spec.target_queue_depth_per_replica * tick.ready)
        drain = excess / DRAIN_SECONDS
        scored = None if tick.disrupted else demand
        headroom = calibrate(
            headroom, now, scored, served, 1.0 / utilization, settings.lead_seconds, backlog=drain
        )
    state = replace(
        state,
        capacity_per_replica=capacity,
        consecutive_failures=0,
        last_active_time=last_active,
        ready_replicas=tick.ready,
        ready_since=ready_since,
        saturated_since=saturated_since,
        headroom=headroom,
    )
    behavior = settings.behavior
    keep = behavior.history_seconds

    stz = spec.scale_to_zero
    idle_seconds = stz.idle_seconds if stz is not None and stz.enabled else None
    idle = idle_seconds is not None and now - last_active >= idle_seconds
    if current == 0:
        threshold = stz.activation_threshold if stz is not None else 0.0
        woken = queue > 0 or (demand or 0) > threshold or (obs.running or 0) > 0
        if not woken:
            why = "no demand" if not active else f"demand {demand:g}/s not above {threshold:g}/s"
            return Decision(
                0, 0, 0, None, "Hold", f"scaled to zero; {why}", True, False, state
            )  # fmt: skip
        need, why = reactive_need(
            obs, 1, 0, capacity, spec.target_queue_depth_per_replica, utilization
        )
        desired = min(max(need, floor), spec.max_replicas)
        state = replace(
            state,
            scale_ups=_trim((*state.scale_ups, Sample(now, desired)), now, keep),
            recommendations=_trim((*state.recommendations, Sample(now, desired)), now, keep),
        )
        return Decision(
            desired, desired, need, None, "Wake", f"demand at zero replicas: {why}",
            True, False, state,
        )  # fmt: skip

    reactive, why = reactive_need(
        obs,
        current,
        tick.ready,
        capacity,
        spec.target_queue_depth_per_replica,
        utilization,
    )
    if utilization < settings.utilization:
        why += f" (headroom {1 / utilization - 1:.0%} calibrated on recent demand)"
    predictive = None
    if tick.forecast_peak is not None and capacity:
        predictive = _ceil(tick.forecast_peak / (capacity * utilization))
    raw = max(reactive, predictive or 0)
    if predictive is not None and predictive > reactive:
        why = f"forecast peak {tick.forecast_peak:.3g}/s needs {predictive} replicas"
    kv = kv_cache_need(obs, tick.ready, spec.kv_cache_target_usage)
    if kv is not None and kv > raw:
        raw = kv
        why = (
            f"KV cache {obs.kv_cache_usage:.0%} used on {tick.ready} ready replicas "
            f"(target {spec.kv_cache_target_usage:.0%}) needs {kv}"
        )
    if idle:
        if current <= 1:
            state = replace(
                state,
                scale_downs=_trim((*state.scale_downs, Sample(now, current)), now, keep),
                recommendations=(),
            )
            return Decision(
                0, 0, reactive, predictive, "ScaleToZero",
                f"no demand for {now - last_active:.0f}s (idleSeconds {idle_seconds})",
                True, False, state,
            )  # fmt: skip
        raw, floor, why = 1, 1, f"idle for {now - last_active:.0f}s: stepping down to 1"
    recommended = min(max(raw, floor), spec.max_replicas)
    history = state.recommendations
    stabilized = stabilize(recommended, current, history, behavior, now)
    desired = stabilized
    if stabilized > current:
        limit = scale_up_limit(current, state.scale_ups, behavior.up, now)
        desired = min(stabilized, limit, spec.max_replicas)
    elif stabilized < current:
        limit = scale_down_limit(current, state.scale_downs, behavior.down, now)
        desired = max(stabilized, limit)
    # Floors (minReplicas, open schedules) and maxReplicas bypass step policies, as in HPA.
    desired = min(max(desired, floor), spec.max_replicas)
    ups, downs = state.scale_ups, state.scale_downs
    if desired > current:
        ups = (*ups, Sample(now, desired - current))
        action = "ScaleUp"
    elif desired < current:
        downs = (*downs, Sample(now, current - desired))
        action = "ScaleDown"
    else:
        action = "Hold"
    if window and floor == sched_floor and desired == floor:
        why += f"; schedule {window} floor {floor}"
    if desired != recommended and action != "Hold":
        why += f" (recommended {recommended}, limited by behavior to {desired})"
    elif desired != recommended:
        why += f" (recommended {recommended}, held by stabilization)"
    state = replace(
        state,
        recommendations=_trim((*history, Sample(now, recommended)), now, keep),
        scale_ups=_trim(ups, now, keep),
        scale_downs=_trim(downs, now, keep),
    )
    return Decision(desired, recommended, reactive, predictive, action, why, True, False, state)
