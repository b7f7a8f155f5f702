"""One Inference workload's autoscaling loop, without Kopf.

Each tick reads the Deployment (from a watch-fed index), the signals (from
Prometheus, off the event loop), asks the pure core for a decision, applies
it through /scale unless the workload is in Recommend mode, and reports: a
status patch when something changed, an Event on each transition, metrics.
The Kopf daemon in ``autoscaling.py`` only drives this class.
"""

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.scale_targets import TargetUnavailable, TargetView
from gpufinops.adapters.status import conditions_patch, memory_patch, read_conditions, read_memory
from gpufinops.api.spec import AIWorkloadSpec, Mode
from gpufinops.api.status import Condition, ConditionStatus, ConditionType
from gpufinops.controllers.effects import EventPoster, StatusConflict, StatusWriter
from gpufinops.core.conditions import find_condition, set_condition
from gpufinops.core.cost.budget import recorded_enforcement, replica_ceiling
from gpufinops.core.forecast.cycle import ForecastCycle
from gpufinops.core.forecast.model import DemandForecaster, ForecastSettings
from gpufinops.core.forecast.report import ForecastPoint, ForecastReport
from gpufinops.core.forecast.series import DemandSeries
from gpufinops.core.scaling.behavior import Sample
from gpufinops.core.scaling.decide import Decision, Settings, Tick, decide
from gpufinops.core.scaling.observation import Observation
from gpufinops.core.scaling.plan import plan_scale

log = logging.getLogger(__name__)

CONFLICTING_AUTOSCALER = "ConflictingAutoscaler"
MEMORY_PERSIST_SECONDS = 300.0
"""Autoscaler memory alone is written at most this often (it is also written with every
other status change, e.g. of replicas). What a restart loses meanwhile is harmless: the
stabilisation history is seeded with the replicas running at restart, the capacity
estimate and the headroom histogram move slowly, and a later lastActiveTime only delays
a scale to zero. At 2,000 workloads these writes were most of the API server's load."""

_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def same_words(a: str, b: str) -> bool:
    """Whether two texts differ at most in their numbers ("demand 19/s" and "demand 19.5/s")."""
    return _NUMBER.sub("#", a) == _NUMBER.sub("#", b)


class SignalSource(Protocol):
    """Where a workload's signals come from (Prometheus in production)."""

    def observe(self) -> Observation: ...

    def demand_history(self, now: float) -> DemandSeries | None: ...


T = TypeVar("T")


class Reads(Protocol):
    """Runs a blocking read off the event loop and waits for its answer."""

    def __call__(self, call: Callable[[], T], /) -> Awaitable[T]: ...


async def _in_thread(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)


def _read_metrics(labels: tuple[str, str], observation: Observation, decision: Decision) -> None:
    """What the tick read and learned, per workload; an unknown value has no sample."""
    demand = observation.arrival_rate
    if demand is None:
        demand = observation.throughput
    capacity = decision.state.capacity_per_replica
    for gauge, value in (
        (metrics.QUEUE_DEPTH, observation.queue_depth),
        (metrics.DEMAND, demand),
        (metrics.CAPACITY_PER_REPLICA, capacity),
    ):
        if value is None:
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        else:
            gauge.labels(*labels).set(value)
    metrics.FALLBACK_ACTIVE.labels(*labels).set(1 if decision.fallback_active else 0)


PAUSED_ANNOTATION = "gpufinops.dev/paused"
"""``"true"`` pauses the workload's autoscaling (KEDA's ``autoscaling.keda.sh/paused``)."""


def is_paused(annotations: Mapping[str, str] | None) -> bool:
    return str((annotations or {}).get(PAUSED_ANNOTATION, "")).strip().lower() == "true"


@dataclass
class Effects:
    """Everything the loop does to the outside world, injected so tests can watch it."""

    scale: Callable[[int], None]
    write_status: StatusWriter
    post_event: EventPoster


@dataclass
class TickResult:
    decision: Decision | None
    skipped: str | None = None
    status_patch: dict[str, Any] = field(default_factory=dict)


def budget_ceiling(
    status: Mapping[str, Any] | None, min_replicas: int, current: int, *, has_budget: bool
) -> tuple[int, str] | None:
    """The replica ceiling of the enforcement the cost loop recorded in status
    (``replica_ceiling``); a manual spec.replicas is capped too."""
    return replica_ceiling(recorded_enforcement(status), has_budget, min_replicas, current)


class InferenceController:
    """The autoscaling loop of one Inference AIWorkload."""

    def __init__(
        self,
        namespace: str,
        name: str,
        signals: SignalSource,
        effects: Effects,
        status: Mapping[str, Any] | None,
        now: float,
        current_replicas: int | None,
        writes: Executor | None = None,
        reads: Reads | None = None,
    ) -> None:
        """``writes`` runs the blocking effects (scale, status); None: asyncio's default
        executor. A separate one keeps signal reads from queueing behind API writes.
        ``reads`` runs the blocking signal reads (a tenant's custom queries go to a
        pool of their own); None: asyncio's default executor."""
        self.namespace, self.name = namespace, name
        self.writes = writes
        self.signals = signals
        self.reads: Reads = reads or _in_thread
        self.effects = effects
        self.conditions: list[Condition] = read_conditions(status)
        state = read_memory(status)
        if current_replicas is not None:
            # After a restart the stabilization history may be stale or lost: seed it
            # with the replicas running now, so nothing scales down before a full window.
            state = replace(
                state, recommendations=(*state.recommendations, Sample(now, current_replicas))
            )
        self.state = state
        self.forecasts = ForecastCycle()
        self._fitting: asyncio.Task[None] | None = None
        self._last_written: dict[str, Any] = {}
        self._last_memory_write = 0.0
        self._last_action: tuple[str, int] | None = None
        self._fallback_on = False
        self._said: tuple[tuple[object, ...], str] | None = None
        """The decision last explained (action and replica counts) and its reason."""

    def use_signals(self, signals: SignalSource, reads: Reads | None = None) -> None:
        """Read from ``signals`` from the next tick on (the spec's queries were edited).

        The decision state stays (stabilisation, cooldowns); the forecaster is
        dropped, since its model learnt the demand of the old query.
        """
        self.signals = signals
        self.reads = reads or _in_thread
        self.forecasts.reset()

    async def _blocking(self, call: Callable[[Any], None], argument: Any) -> None:
        """Run a blocking effect in a worker thread: other workloads' ticks go on meanwhile."""
        await asyncio.get_running_loop().run_in_executor(self.writes, call, argument)

    # -------------------------------------------------------------- forecasting

    async def _refit(self, settings: ForecastSettings, history: DemandSeries, now: float) -> None:
        """Fit a fresh model in a worker thread and swap it in: ticks never wait on it."""
        fresh = DemandForecaster(settings)
        await asyncio.to_thread(fresh.fit, history, now)
        self.forecasts.swap(fresh, settings)

    def _forecast(
        self, spec: AIWorkloadSpec, history: DemandSeries | None, now: float
    ) -> tuple[ForecastPoint | None, ForecastReport | None]:
        assert spec.inference is not None
        forecast = spec.inference.forecast
        self.forecasts.use(ForecastSettings.from_spec(forecast) if forecast.enabled else None)
        busy = self._fitting is not None and not self._fitting.done()
        due = self.forecasts.refit_due(now) if history is not None and len(history) else None
        if due is not None and not busy:
            assert history is not None
            self._fitting = asyncio.ensure_future(self._refit(due, history, now))
        return self.forecasts.step(history, now)

    # ------------------------------------------------------------------- ticks

    def _condition(
        self, ctype: str, status: ConditionStatus, reason: str, message: str, now: datetime,
        generation: int | None,
    ) -> bool:  # fmt: skip
        """Set a condition; True when its status changed (worth an Event)."""
        before = find_condition(self.conditions, ctype)
        self.conditions = set_condition(
            self.conditions, type=ctype, status=status, reason=reason, message=message,
            now=now, generation=generation,
        )  # fmt: skip
        return before is None or before.status != status

    async def tick(
        self,
        spec: AIWorkloadSpec,
        generation: int | None,
        deployment: TargetView | TargetUnavailable | None,
        conflicts: list[str],
        now: float,
        latest_status: Mapping[str, Any] | None = None,
        paused: bool = False,
    ) -> TickResult:
        """One decision; ``now`` is epoch seconds (the daemon passes the clock in)."""
        assert spec.inference is not None
        inference = spec.inference
        stamp = datetime.fromtimestamp(now, tz=UTC)
        if latest_status is not None:
            # Other handlers (spec validation) write conditions too: start from theirs.
            self.conditions = read_conditions(latest_status)
        labels = (self.namespace, self.name)
        target = f"{inference.target_ref.kind}/{inference.target_ref.name}"

        if deployment is None:
            changed = self._condition(
                ConditionType.READY, ConditionStatus.FALSE, "TargetNotFound",
                f"{target} not found in namespace {self.namespace}", stamp, generation,
            )  # fmt: skip
            if changed:
                self.effects.post_event(
                    "Warning", "TargetNotFound", f"{target} not found; nothing to scale"
                )
            metrics.TICKS.labels(*labels, "target_not_found").inc()
            return await self._report(None, "target not found", generation, None, None, None)
        if isinstance(deployment, TargetUnavailable):
            unavailable = deployment
            # Not scalable (no /scale), or the operator may not read it: nothing is decided
            # from a count it cannot see, and the message says what to fix.
            changed = self._condition(
                ConditionType.READY, ConditionStatus.FALSE, unavailable.reason,
                f"{target}: {unavailable.message}", stamp, generation,
            )  # fmt: skip
            if changed:
                self.effects.post_event(
                    "Warning", unavailable.reason, f"{target}: {unavailable.message}"
                )
            metrics.TICKS.labels(*labels, "target_unavailable").inc()
            return await self._report(None, "target unavailable", generation, None, None, None)

        if conflicts:
            changed = self._condition(
                CONFLICTING_AUTOSCALER, ConditionStatus.TRUE, "AnotherAutoscalerTargetsDeployment",
                f"{', '.join(conflicts)} also scales {target}; gpufinops will not act "
                "until it is removed", stamp, generation,
            )  # fmt: skip
            self._condition(
                ConditionType.READY, ConditionStatus.FALSE, CONFLICTING_AUTOSCALER,
                f"{', '.join(conflicts)} also scales {target}", stamp, generation,
            )  # fmt: skip
            if changed:
                self.effects.post_event(
                    "Warning", CONFLICTING_AUTOSCALER,
                    f"{', '.join(conflicts)} also scales {target}: not acting, to avoid a fight",
                )  # fmt: skip
            metrics.TICKS.labels(*labels, "conflicting_autoscaler").inc()
            return await self._report(
                None, "conflicting autoscaler", generation, deployment, None, None
            )
        if find_condition(self.conditions, CONFLICTING_AUTOSCALER) is not None:
            self._condition(
                CONFLICTING_AUTOSCALER, ConditionStatus.FALSE, "NoOtherAutoscaler",
                f"no other autoscaler targets {target}", stamp, generation,
            )  # fmt: skip

        started = time.perf_counter()
        signals = self.signals
        observation = await self.reads(signals.observe)
        history = None
        if inference.forecast.enabled:
            history = await self.reads(partial(signals.demand_history, now))
        point, report = self._forecast(spec, history, now)
        settings = Settings.from_spec(inference)
        decision = decide(
            settings,
            self.state,
            Tick(now, deployment.replicas, deployment.ready, observation,
                 point.peak if point is not None else None),
        )  # fmt: skip
        metrics.DECISION_SECONDS.labels(*labels).observe(time.perf_counter() - started)
        self.state = decision.state
        # A budget binds a person's count too: `kubectl scale aiw` is open to whoever may
        # edit the workload, the budget is an admin's (docs/security.md).
        ceiling = budget_ceiling(
            latest_status, inference.min_replicas, deployment.replicas,
            has_budget=spec.budget is not None,
        )  # fmt: skip
        plan = plan_scale(decision, manual_replicas=spec.replicas, ceiling=ceiling)
        desired, action, reason = plan.desired, plan.action, plan.reason

        reason = self._settled(
            (action, desired, decision.recommended, deployment.replicas, deployment.ready), reason
        )
        self._signal_conditions(decision, report, stamp, generation)
        self._pause_condition(paused, target, stamp, generation)
        # Paused (annotation gpufinops.dev/paused) decides and says so, as Recommend does.
        recommend_only = spec.mode == Mode.RECOMMEND or paused
        if desired != deployment.replicas and not recommend_only:
            await self._blocking(self.effects.scale, desired)
            self.effects.post_event(
                "Normal", plan.event_reason,
                f"{target} {deployment.replicas} → {desired}: {reason}",
            )  # fmt: skip
        elif desired != deployment.replicas and (action, desired) != self._last_action:
            self.effects.post_event(
                "Normal", "Recommendation",
                f"would scale {target} {deployment.replicas} → {desired}: {reason}",
            )  # fmt: skip
        self._last_action = (action, desired)
        if decision.metrics_available or decision.fallback_active:
            self._condition(
                ConditionType.READY, ConditionStatus.TRUE,
                "Paused" if paused else "Recommending" if recommend_only else "Scaling",
                f"{'recommending' if recommend_only else 'scaling'} {target}: {reason}",
                stamp, generation,
            )  # fmt: skip
        else:
            self._condition(
                ConditionType.READY, ConditionStatus.FALSE, "MetricsUnavailable",
                f"holding {target} at {deployment.replicas} replicas: {reason}",
                stamp, generation,
            )  # fmt: skip
        metrics.DESIRED_REPLICAS.labels(*labels).set(desired)
        _read_metrics(labels, observation, decision)
        if point is not None:
            metrics.FORECAST_DEMAND.labels(*labels).set(point.peak)
        if report is not None and report.backtest_ratio is not None:
            metrics.FORECAST_ERROR.labels(*labels).set(report.online_ratio or report.backtest_ratio)
        if not decision.metrics_available:
            metrics.METRIC_FAILURES.labels(*labels).inc()
        metrics.TICKS.labels(*labels, "decided").inc()
        return await self._report(decision, None, generation, deployment, point, report,
                            desired=desired, action=action, reason=reason, now=now)  # fmt: skip

    def _pause_condition(
        self, paused: bool, target: str, stamp: datetime, generation: int | None
    ) -> None:
        """``Paused`` as KEDA names it; an Event when it turns on or off."""
        before = find_condition(self.conditions, ConditionType.PAUSED)
        if paused:
            if self._condition(
                ConditionType.PAUSED, ConditionStatus.TRUE, "PausedByAnnotation",
                f"annotation {PAUSED_ANNOTATION}=true: {target} is not scaled (decisions "
                f"are still made and shown); set it to false or remove it to resume",
                stamp, generation,
            ):  # fmt: skip
                self.effects.post_event(
                    "Normal", "AutoscalingPaused", f"{PAUSED_ANNOTATION}=true: not scaling"
                )
        elif before is not None and before.status == ConditionStatus.TRUE:
            self._condition(
                ConditionType.PAUSED, ConditionStatus.FALSE, "Resumed",
                f"{PAUSED_ANNOTATION} is not true: scaling {target}", stamp, generation,
            )  # fmt: skip
            self.effects.post_event("Normal", "AutoscalingResumed", f"scaling {target} again")

    def _settled(self, decision: tuple[object, ...], reason: str) -> str:
        """The reason as last said when only its measured numbers moved.

        The same decision (action, desired, recommended, current and ready replicas)
        explained with a demand of 19.5/s instead of 19/s is not news: rewriting the
        reason would rewrite ``lastDecision`` and the Ready condition, a status write
        (and a watch event for every watcher) on nearly every tick under real load.
        The numbers in status.replicas stay exact; the reason keeps the figures of
        the tick that made the decision (``lastDecision.time``).
        """
        if (
            self._said is not None
            and self._said[0] == decision
            and same_words(self._said[1], reason)
        ):
            return self._said[1]
        self._said = (decision, reason)
        return reason

    def _signal_conditions(
        self, decision: Decision, report: ForecastReport | None, stamp: datetime,
        generation: int | None,
    ) -> None:  # fmt: skip
        before = find_condition(self.conditions, ConditionType.METRICS_AVAILABLE)
        if decision.metrics_available:
            self._condition(
                ConditionType.METRICS_AVAILABLE, ConditionStatus.TRUE, "QueueSignalRead",
                "queue and demand signals are being read", stamp, generation,
            )  # fmt: skip
            if before is not None and before.status == ConditionStatus.FALSE:
                self.effects.post_event("Normal", "MetricsAvailable", "signals are read again")
        else:
            if self._condition(
                ConditionType.METRICS_AVAILABLE, ConditionStatus.FALSE, "MetricsUnavailable",
                decision.reason, stamp, generation,
            ):  # fmt: skip
                self.effects.post_event("Warning", "MetricsUnavailable", decision.reason)
        if decision.fallback_active:
            self._condition(
                ConditionType.FALLBACK, ConditionStatus.TRUE, "FallbackActive",
                decision.reason, stamp, generation,
            )  # fmt: skip
        elif find_condition(self.conditions, ConditionType.FALLBACK) is not None:
            self._condition(
                ConditionType.FALLBACK, ConditionStatus.FALSE, "NoFallback",
                "replicas come from the signals", stamp, generation,
            )  # fmt: skip
        if decision.fallback_active and not self._fallback_on:
            self.effects.post_event("Warning", "FallbackActivated", decision.reason)
        self._fallback_on = decision.fallback_active
        if report is None:
            return
        status = ConditionStatus.TRUE if report.ready else ConditionStatus.FALSE
        if self._condition(
            ConditionType.PREDICTION_READY, status, report.reason, report.message, stamp,
            generation,
        ):  # fmt: skip
            self.effects.post_event(
                "Normal" if report.ready else "Warning",
                "PredictionReady" if report.ready else "PredictionNotReady",
                report.message,
            )

    async def _report(
        self,
        decision: Decision | None,
        skipped: str | None,
        generation: int | None,
        deployment: TargetView | None,
        point: ForecastPoint | None,
        report: ForecastReport | None,
        *,
        desired: int | None = None,
        action: str | None = None,
        reason: str | None = None,
        now: float | None = None,
    ) -> TickResult:
        """Write status when it changed (and memory at least every 5 minutes)."""
        patch: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": conditions_patch(self.conditions),
        }
        if deployment is not None:
            patch["replicas"] = {
                "current": deployment.replicas,
                "ready": deployment.ready,
                "desired": desired if desired is not None else deployment.replicas,
                "recommended": decision.recommended if decision else None,
            }
            if deployment.selector:
                patch["selector"] = deployment.selector
        if report is not None:
            patch["forecast"] = {
                "predictedPeak": round(point.peak, 4) if point else None,
                "leadTimeSeconds": int(point.horizon_seconds) if point else None,
                "backtestError": report.online_ratio or report.backtest_ratio,
                "lastFitTime": (
                    datetime.fromtimestamp(report.fitted_at, tz=UTC).isoformat()
                    if report.fitted_at
                    else None
                ),
            }
        if decision is not None and action is not None and now is not None:
            last = self._last_written.get("lastDecision")
            if last is None or (last.get("action"), last.get("reason")) != (action, reason):
                patch["lastDecision"] = {
                    "time": datetime.fromtimestamp(now, tz=UTC).isoformat(),
                    "action": action,
                    "reason": reason,
                }
            else:
                patch["lastDecision"] = last
        comparable = {k: v for k, v in patch.items() if k != "autoscaler"}
        changed = comparable != self._last_written
        memory_due = now is not None and now - self._last_memory_write >= MEMORY_PERSIST_SECONDS
        if decision is not None and (changed or memory_due):
            patch["autoscaler"] = memory_patch(self.state)
            if now is not None:
                self._last_memory_write = now
        if changed or "autoscaler" in patch:
            try:
                await self._blocking(self.effects.write_status, patch)
            except StatusConflict:
                log.debug(
                    "status of %s/%s moved on; rewriting next tick", self.namespace, self.name
                )
                self._last_memory_write = 0.0
                return TickResult(decision, skipped, patch)
            self._last_written = comparable
        return TickResult(decision, skipped, patch)
