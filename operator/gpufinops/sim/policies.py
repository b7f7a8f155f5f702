"""The scaling policies compared on the service model.

``gpufinops`` and ``reactive`` run the operator's own decision core with the
default spec; the baselines re-implement what users deploy instead, with the
defaults those projects ship, so the comparison is with a real setup and not a
straw man: an HPA on GPU utilisation, and KEDA's Prometheus scaler on in-flight
requests driving its generated HPA.
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from gpufinops.api.inference import Forecast, Inference, InferenceTargetRef, ScaleToZero
from gpufinops.api.spec import AIWorkloadSpec, CostAllocation, WorkloadType
from gpufinops.api.status import Condition
from gpufinops.core.forecast import DemandForecaster, ForecastSettings
from gpufinops.core.forecast.cycle import ForecastCycle
from gpufinops.core.forecast.report import ForecastPoint, ForecastReport
from gpufinops.core.forecast.series import FloatArray
from gpufinops.core.scaling.behavior import (
    TOLERANCE,
    ResolvedBehavior,
    Sample,
    resolve_behavior,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)
from gpufinops.core.scaling.decide import ScalingSettings, ScalingState
from gpufinops.core.scaling.observation import Observation
from gpufinops.core.scaling.target import TargetView
from gpufinops.core.scaling.tick import InferenceTick, Said, plan_inference
from gpufinops.core.search import smallest
from gpufinops.sim.history import CompletionHistory, MinuteHistory
from gpufinops.sim.service import IntArray, ServiceModel, View

KEDA_COOLDOWN_SECONDS = 300
"""KEDA's ``cooldownPeriod`` default: idle time before scaling 1 -> 0."""
KEDA_POLLING_SECONDS = 30
"""KEDA's ``pollingInterval`` default: how often it checks activation (0 <-> 1)."""


def default_spec(model: ServiceModel, *, forecast: bool) -> Inference:
    """The spec a user gets by naming only the Deployment and the bounds, with
    ``forecast.leadTimeSeconds`` set to the model's start-up time as the docs instruct
    (the default, 180 s, is the default start-up)."""
    zero = (
        ScaleToZero(enabled=True, idle_seconds=model.idle_seconds)
        if model.min_replicas == 0
        else None
    )
    return Inference(
        target_ref=InferenceTargetRef(name="model"),
        min_replicas=model.min_replicas,
        max_replicas=model.max_replicas,
        forecast=Forecast(
            enabled=forecast, lead_time_seconds=min(max(model.startup_seconds, 0), 3600)
        ),
        scale_to_zero=zero,
    )


class CorePolicy:
    """The operator's decision core, tick for tick.

    With a forecaster, it is refitted every ``refit_interval_seconds`` of
    simulated time on the demand history seen so far (a fresh instance, as the
    operator builds one per refit), scored with ``observe`` every tick, and its
    peak is used only while its report says it is ready.
    """

    def __init__(
        self,
        name: str,
        spec: Inference,
        history: MinuteHistory | CompletionHistory | None = None,
        settings: ForecastSettings | None = None,
        signal: str = "completions",
        coverage: float | None = None,
    ) -> None:
        """``signal``: what is read as demand (``ServiceModel.demand_signal``); the
        history must be of the same (``CompletionHistory`` for completions).
        ``coverage``: the calibrated headroom's target share of demand covered, the
        knob the benchmark sweeps (None: the shipped default)."""
        self.name = name
        self.signal = signal
        self.settings = ScalingSettings.from_spec(spec)
        self.coverage = coverage
        if coverage is not None:
            self.settings = replace(self.settings, coverage=coverage)
        self.workload = AIWorkloadSpec(
            type=WorkloadType.INFERENCE, cost_allocation=CostAllocation(team="replay"),
            inference=spec,
        )  # fmt: skip
        self.state = ScalingState()
        self.disrupted = False
        """Set by a spot layer whose last plan was replacing preempted replicas."""
        self.said = Said()
        self.conditions: list[Condition] = []
        self.history = history
        self.forecast_settings = settings or ForecastSettings.from_spec(spec.forecast)
        self.cycle = ForecastCycle()
        self.fits = 0
        self.fit_seconds = 0.0
        self.forecasts: list[float] = []
        self.capacity: list[float] = []
        self.headroom: list[float] = []
        """Planning headroom each tick (capacity / planned demand), calibrated or fixed."""

    def decide(self, view: View) -> int:
        point, report = self._forecast(view) if self.history is not None else (None, None)
        peak = None if point is None else point.peak
        if view.current == 0:
            # No replica, no engine series: what the operator then reads is the
            # gateway's demand (demandQuery) and an absent queue.
            observation = Observation(
                arrival_rate=view.arrival_rate,
                error="query returned no series",
                queue_absent=True,
            )
        else:
            # The engines' presets have no arrival counter: demand is what was served.
            demand = view.arrival_rate if self.signal == "arrivals" else view.throughput
            observation = Observation(
                queue_depth=view.queue_depth,
                running=view.running,
                arrival_rate=demand,
                throughput=view.throughput,
            )
        # The operator's own tick: the same function plans the replicas, the budget
        # ceiling and a person's count (none in a replay), conditions and Events.
        target = TargetView(view.current, view.ready, None, 0)
        tick = InferenceTick(
            spec=self.workload, namespace="sim", generation=None, target=target, conflicts=(),
            now=view.now, conditions=self.conditions, observation=observation, forecast=point,
            report=report, headroom_coverage=self.coverage, disrupted=self.disrupted,
        )  # fmt: skip
        plan = plan_inference(tick, self.state, self.said)
        self.state, self.said, self.conditions = plan.state, plan.said, plan.conditions
        assert plan.desired is not None
        self.forecasts.append(math.nan if peak is None else peak)
        learned = self.state.capacity_per_replica
        self.capacity.append(math.nan if learned is None else learned)
        self.headroom.append(1.0 / self.settings.planned_utilization(self.state))
        return plan.desired

    def _forecast(self, view: View) -> tuple[ForecastPoint | None, ForecastReport | None]:
        assert self.history is not None
        now = view.now
        series = self.history.seen_at(view)
        if series is None:
            return None, None
        cycle = self.cycle
        cycle.use(self.forecast_settings)
        # The operator fits in the background and swaps the model in when done: this
        # tick still uses the one in use, so it is scored and asked first.
        point, report = cycle.step(series, now)
        due = cycle.refit_due(now)
        if due is not None:
            fresh = DemandForecaster(due)
            started = time.process_time()
            fresh.fit(series, now)
            self.fit_seconds += time.process_time() - started
            self.fits += 1
            cycle.swap(fresh, due)
        return point, report


@dataclass
class Hpa:
    """The HorizontalPodAutoscaler's replica arithmetic after the metric:
    stabilisation windows and step policies with their defaults (the operator's
    core follows the same algorithm; it is reused so both sides share it)."""

    min_replicas: int
    max_replicas: int
    behavior: ResolvedBehavior = field(default_factory=lambda: resolve_behavior(None))
    recommendations: list[Sample] = field(default_factory=list)
    ups: list[Sample] = field(default_factory=list)
    downs: list[Sample] = field(default_factory=list)

    def apply(self, raw: int, current: int, now: float) -> int:
        keep = now - self.behavior.history_seconds
        for samples in (self.recommendations, self.ups, self.downs):
            while samples and samples[0].time <= keep:
                samples.pop(0)
        recommended = min(max(raw, self.min_replicas), self.max_replicas)
        desired = stabilize(recommended, current, self.recommendations, self.behavior, now)
        if desired > current:
            limit = scale_up_limit(current, self.ups, self.behavior.up, now)
            desired = min(desired, limit)
        elif desired < current:
            limit = scale_down_limit(current, self.downs, self.behavior.down, now)
            desired = max(desired, limit)
        desired = min(max(desired, self.min_replicas), self.max_replicas)
        self.recommendations.append(Sample(now, recommended))
        if desired > current:
            self.ups.append(Sample(now, desired - current))
        elif desired < current:
            self.downs.append(Sample(now, current - desired))
        return desired


def average_value_replicas(metric: float, target: float, current: int) -> int:
    """HPA on an external metric with an ``AverageValue`` target (what KEDA generates)."""
    if current > 0 and abs(metric / (target * current) - 1.0) <= TOLERANCE:
        return current
    return math.ceil(metric / target - 1e-9)


def utilization_replicas(utilization: float, target: float, ready: int, current: int) -> int:
    """HPA on a per-pod metric averaged over ready pods (``calcPlainMetricReplicas``).

    While scaling up, pods not ready yet count as idle, so replicas that are
    starting damp the next step; scaling down only counts ready pods.
    """
    if ready <= 0:
        return current
    ratio = utilization / target
    unready = max(0, current - ready)
    if not (unready > 0 and ratio > 1.0):
        if abs(1.0 - ratio) <= TOLERANCE:
            return current
        return math.ceil(ratio * ready - 1e-9)
    new_ratio = utilization * ready / (target * current)
    if abs(1.0 - new_ratio) <= TOLERANCE or new_ratio < 1.0:
        return current
    return max(current, math.ceil(new_ratio * current - 1e-9))


class HpaUtilization:
    """An HPA on GPU utilisation (DCGM duty cycle through an adapter), target ``U``.

    It cannot tell a saturated replica with a long queue from one just busy:
    utilisation stops at 100 %, so it grows by at most 1/U per period under load.
    """

    def __init__(self, target: float, model: ServiceModel, name: str = "hpa") -> None:
        if not 0 < target <= 1:
            raise ValueError("utilisation target must be in (0, 1]")
        self.name = name
        self.target = target
        self.hpa = Hpa(model.min_replicas, model.max_replicas)

    def decide(self, view: View) -> int:
        if view.utilization is None:
            return view.current
        raw = utilization_replicas(view.utilization, self.target, view.ready, view.current)
        return self.hpa.apply(raw, view.current, view.now)


class Keda:
    """KEDA's Prometheus scaler on in-flight requests (waiting + running) with
    an ``AverageValue`` target, driving the HPA it generates (HPA defaults).

    KEDA itself only decides 0 <-> 1: with ``minReplicaCount`` 0 it deactivates
    after ``cooldownPeriod`` without activity and reactivates at the next poll
    that sees some; everything between 1 and max is the HPA's.
    """

    def __init__(
        self,
        target: float,
        model: ServiceModel,
        name: str = "keda",
        cooldown_seconds: int = KEDA_COOLDOWN_SECONDS,
        polling_seconds: int = KEDA_POLLING_SECONDS,
        activation_threshold: float = 0.0,
    ) -> None:
        if target <= 0:
            raise ValueError("KEDA target must be positive")
        self.name = name
        self.target = target
        self.min_replicas = model.min_replicas
        self.cooldown = cooldown_seconds
        self.polling = polling_seconds
        self.activation = activation_threshold
        self.hpa = Hpa(max(1, model.min_replicas), model.max_replicas)
        self.last_active: float | None = None
        self.last_poll: float | None = None

    def decide(self, view: View) -> int:
        metric = view.in_flight
        if metric > self.activation or self.last_active is None:
            self.last_active = view.now
        if self.min_replicas == 0:
            polled = self.last_poll is None or view.now - self.last_poll >= self.polling
            if polled:
                self.last_poll = view.now
            if view.current == 0:
                active = metric > self.activation
                return 1 if polled and active else 0
            if polled and view.now - self.last_active >= self.cooldown:
                return 0
        raw = average_value_replicas(metric, self.target, view.current)
        return self.hpa.apply(raw, view.current, view.now)


class Static:
    """A fixed count: what one buys without autoscaling."""

    def __init__(self, replicas: int, name: str = "static") -> None:
        self.name = name
        self.replicas = replicas

    def decide(self, view: View) -> int:
        return self.replicas


class Planned:
    """Replays a replica count per decision (the oracle's plan)."""

    def __init__(self, plan: IntArray, sync_seconds: int, name: str = "oracle") -> None:
        self.name = name
        self.plan = plan
        self.sync = sync_seconds

    def decide(self, view: View) -> int:
        return int(self.plan[min(view.second // self.sync, len(self.plan) - 1)])


def oracle_plan(work: Sequence[float] | np.ndarray, model: ServiceModel) -> IntArray:
    """Fewest replicas in each decision period that keep every wait within the SLO,
    knowing all arrivals and with replicas that start instantly.

    Chosen greedily period after period from the backlog the previous choice
    left. Feasibility is monotone in the replica count, so each minimum is found
    by galloping from the previous period's count and then bisecting.
    """
    values = np.asarray(work, dtype=np.float64)
    n = values.shape[0]
    sync, mu, slo = model.sync_seconds, model.capacity_per_replica, model.slo_wait_seconds
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    steps = np.arange(1, sync + 1, dtype=np.float64)
    floor, ceiling = max(1, model.min_replicas), model.max_replicas
    plan = np.zeros(math.ceil(n / sync), dtype=np.int64)
    queue = 0.0
    count = floor
    for i, t in enumerate(range(0, n, sync)):
        end = min(t + sync, n)
        arrived = cumulative[t + 1 : end + 1] - cumulative[t]
        served = steps[: end - t] * mu

        def backlog(replicas: int) -> FloatArray:
            net = arrived - replicas * served  # noqa: B023 (used within this iteration only)
            left: FloatArray = net - np.minimum(np.minimum.accumulate(net), -queue)  # noqa: B023
            return left

        def feasible(replicas: int) -> bool:
            return bool(backlog(replicas).max() <= slo * replicas * mu + 1e-9)

        count = smallest(feasible, count, floor, ceiling)
        plan[i] = count
        queue = float(backlog(count)[-1])
    return plan


def keda_target(fraction: float, model: ServiceModel) -> float:
    """In-flight requests per replica for a target given as a fraction of what a
    saturated replica holds (mu x service time), so grids compare across traces."""
    return fraction * model.capacity_per_replica * model.service_seconds
