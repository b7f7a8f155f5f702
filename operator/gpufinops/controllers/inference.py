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
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.spot_children import PoolPlacement, SpotReading, SpotWriteForbidden
from gpufinops.adapters.status import conditions_patch, memory_patch, read_conditions, read_memory
from gpufinops.api.spec import AIWorkloadSpec, Mode
from gpufinops.controllers.effects import EventPoster, StatusConflict, StatusWriter
from gpufinops.controllers.spot import SpotPort, SpotReplicas
from gpufinops.core.cost.budget import recorded_enforcement
from gpufinops.core.events import EventReason, PostEvent
from gpufinops.core.forecast.cycle import ForecastCycle
from gpufinops.core.forecast.model import DemandForecaster, ForecastSettings
from gpufinops.core.forecast.report import ForecastPoint, ForecastReport
from gpufinops.core.forecast.series import DemandSeries
from gpufinops.core.scaling.behavior import Sample
from gpufinops.core.scaling.decide import Decision
from gpufinops.core.scaling.observation import Observation
from gpufinops.core.scaling.target import TargetUnavailable, TargetView
from gpufinops.core.scaling.tick import (
    PAUSED_ANNOTATION,
    InferencePlan,
    InferenceTick,
    Said,
    Scale,
    needs_signals,
    plan_inference,
)

log = logging.getLogger(__name__)

MEMORY_PERSIST_SECONDS = 300.0
"""Autoscaler memory alone is written at most this often (it is also written with every
other status change, e.g. of replicas). What a restart loses meanwhile is harmless: the
stabilisation history is seeded with the replicas running at restart, the capacity
estimate and the headroom histogram move slowly, and a later lastActiveTime only delays
a scale to zero. At 2,000 workloads these writes were most of the API server's load."""


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


def is_paused(annotations: Mapping[str, str] | None) -> bool:
    return str((annotations or {}).get(PAUSED_ANNOTATION, "")).strip().lower() == "true"


@dataclass
class Effects:
    """Everything the loop does to the outside world, injected so tests can watch it."""

    scale: Callable[[int], None]
    write_status: StatusWriter
    post_event: EventPoster


@dataclass
class SpotWiring:
    """How a workload with ``spec.inference.spot`` reaches its children."""

    port: SpotPort
    placements: Callable[[Sequence[str]], Mapping[str, PoolPlacement]]
    """The placement of each named spot pool (from the operator config)."""


_UNSET: Any = object()


@dataclass
class TickResult:
    decision: Decision | None
    skipped: str | None = None
    status_patch: dict[str, Any] = field(default_factory=dict)


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
        self.conditions = read_conditions(status)
        state = read_memory(status)
        self.spot = SpotReplicas(status)
        if self.spot.desired is not None and current_replicas is not None:
            # With spot children the target holds only the on-demand share: the service
            # runs the count last planned for it.
            current_replicas = self.spot.desired
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
        self.said = Said()
        self.spot_wiring: SpotWiring | None = None
        self._spot_status: Any = _UNSET
        """``status.spot`` to write: a dict, None to delete it, _UNSET to leave it out."""

    def use_spot(self, wiring: SpotWiring | None) -> None:
        """Reach the spot children through ``wiring`` (None: the target is no Deployment)."""
        self.spot_wiring = wiring

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
        if latest_status is not None:
            # Other handlers (spec validation) write conditions too: start from theirs.
            self.conditions = read_conditions(latest_status)
        labels = (self.namespace, self.name)
        reading = await self._read_spot(spec, deployment)
        if reading is None and self._expects_spot(spec, deployment):
            # Listed a moment ago, gone now: nothing is decided from half a service (a
            # plain scale of the target would ignore the children).
            return TickResult(None, "target not found")
        if reading is not None and isinstance(deployment, TargetView):
            # The service is one service: the target and its spot children together.
            deployment = self.spot.service_view(deployment, reading)
        observed = InferenceTick(
            spec=spec, namespace=self.namespace, generation=generation, target=deployment,
            conflicts=conflicts, now=now, conditions=self.conditions,
            enforcement=recorded_enforcement(latest_status), paused=paused,
            disrupted=reading is not None and self.spot.replacing,
        )  # fmt: skip
        point: ForecastPoint | None = None
        report: ForecastReport | None = None
        started = time.perf_counter()
        if needs_signals(observed):
            signals = self.signals
            observation = await self.reads(signals.observe)
            history = None
            if spec.inference.forecast.enabled:
                history = await self.reads(partial(signals.demand_history, now))
            point, report = self._forecast(spec, history, now)
            observed = replace(observed, observation=observation, forecast=point, report=report)
        plan = plan_inference(observed, self.state, self.said)
        self.state, self.said, self.conditions = plan.state, plan.said, plan.conditions
        if reading is None:
            await self._carry_out(plan)
        else:
            await self._carry_out_spot(spec, plan, reading, paused, now)
        current = deployment if isinstance(deployment, TargetView) else None
        decision = plan.decision
        if decision is None:
            metrics.TICKS.labels(*labels, plan.outcome).inc()
            skipped = plan.outcome.replace("_", " ")
            return await self._report(None, skipped, generation, current, None, None)
        metrics.DECISION_SECONDS.labels(*labels).observe(time.perf_counter() - started)
        assert plan.desired is not None and observed.observation is not None
        metrics.DESIRED_REPLICAS.labels(*labels).set(plan.desired)
        _read_metrics(labels, observed.observation, decision)
        if point is not None:
            metrics.FORECAST_DEMAND.labels(*labels).set(point.peak)
        if report is not None and report.backtest_ratio is not None:
            metrics.FORECAST_ERROR.labels(*labels).set(report.online_ratio or report.backtest_ratio)
        if not decision.metrics_available:
            metrics.METRIC_FAILURES.labels(*labels).inc()
        metrics.TICKS.labels(*labels, plan.outcome).inc()
        return await self._report(decision, None, generation, current, point, report,
                                  desired=plan.desired, action=plan.action, reason=plan.reason,
                                  now=now)  # fmt: skip

    async def _read_spot(
        self, spec: AIWorkloadSpec, target: TargetView | TargetUnavailable | None
    ) -> SpotReading | None:
        """The children as they are, when there are (or may be) any; a failed read
        raises, so the tick decides nothing from a partial view."""
        if self.spot_wiring is None or not self._expects_spot(spec, target):
            return None
        return await asyncio.to_thread(self.spot_wiring.port.read)

    def _expects_spot(
        self, spec: AIWorkloadSpec, target: TargetView | TargetUnavailable | None
    ) -> bool:
        """Whether the service has (or may have) spot children: ``spot`` is set, or was
        and its children are not folded back yet."""
        assert spec.inference is not None
        if self.spot_wiring is None or not isinstance(target, TargetView):
            return False
        return spec.inference.spot is not None or self.spot.present

    async def _carry_out_spot(
        self,
        spec: AIWorkloadSpec,
        plan: InferencePlan,
        reading: SpotReading,
        paused: bool,
        now: float,
    ) -> None:
        """The plan with its replica count split over the capacity classes (or, with
        ``spot`` removed, folded back into the target) instead of set on the target."""
        assert spec.inference is not None and self.spot_wiring is not None
        wiring, spot = self.spot_wiring, spec.inference.spot
        acting = plan.desired is not None and spec.mode != Mode.RECOMMEND and not paused
        loop = asyncio.get_running_loop()
        said: list[tuple[str, Any, str]] = []
        if acting:
            assert plan.desired is not None
            try:
                if spot is not None:
                    lead = float(spec.inference.forecast.lead_time_seconds)
                    split, status = await loop.run_in_executor(
                        self.writes, partial(
                            self.spot.carry_out, wiring.port, reading, plan.desired, spot,
                            wiring.placements(spot.pools), lead, now,
                        ),
                    )  # fmt: skip
                    self._spot_status = status
                    said = [(e.type, e.reason, e.message) for e in split.events]
                else:
                    done = await loop.run_in_executor(
                        self.writes, self.spot.fold, wiring.port, reading, plan.desired
                    )
                    self._spot_status = None if done else _UNSET
            except SpotWriteForbidden as refused:
                # Nothing more is written this tick; what runs keeps running.
                said = [("Warning", EventReason.TARGET_FORBIDDEN, str(refused))]
        for step in plan.steps:
            if isinstance(step, PostEvent):
                self.effects.post_event(step.type, step.reason, step.message)
        for type_, reason, message in said:
            self.effects.post_event(type_, reason, message)

    async def _carry_out(self, plan: InferencePlan) -> None:
        """The plan's steps in order: a scale before the Event that reports it."""
        for step in plan.steps:
            if isinstance(step, Scale):
                await self._blocking(self.effects.scale, step.replicas)
            elif isinstance(step, PostEvent):
                self.effects.post_event(step.type, step.reason, step.message)

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
        if self._spot_status is not _UNSET:
            patch["spot"] = self._spot_status
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
            if self._spot_status is None:  # deleted: nothing more to say of it
                self._spot_status = _UNSET
                comparable.pop("spot", None)
            self._last_written = comparable
        return TickResult(decision, skipped, patch)
