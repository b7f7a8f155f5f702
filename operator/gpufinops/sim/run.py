"""Running a named policy over a trace and summarising what it cost and how it served."""

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from gpufinops.core.forecast import ForecastSettings
from gpufinops.sim.history import CompletionHistory, MinuteHistory
from gpufinops.sim.policies import (
    CorePolicy,
    HpaUtilization,
    Keda,
    Planned,
    Static,
    default_spec,
    keda_target,
    oracle_plan,
)
from gpufinops.sim.service import Outcome, Policy, Progress, ServiceModel, simulate
from gpufinops.sim.threads import single_thread
from gpufinops.sim.traces import Trace, peak_rate

POLICIES = ("gpufinops", "reactive", "keda", "hpa", "static", "oracle")
SWEPT = ("keda", "hpa")
DEFAULT_TARGET = 0.7
"""Utilisation-like target of a single keda or hpa run (the benchmark sweeps it)."""


@dataclass(frozen=True)
class PolicyRun:
    """One policy's numbers on one trace (the ``--json`` object)."""

    policy: str
    gpu_hours: float
    slo_attainment: float
    p95_wait_seconds: float
    p99_wait_seconds: float
    scale_events: int
    mean_replicas: float
    max_replicas: int
    cpu_seconds: float
    target: float | None = None
    """The swept knob: keda's in-flight target as a fraction of a saturated
    replica's, hpa's utilisation target; ``None`` for the others."""
    oracle_gpu_hours: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("p95_wait_seconds", "p99_wait_seconds"):
            if not math.isfinite(out[key]):
                out[key] = None  # JSON has no infinity: no ready replica at all
        return out


def summarise(outcome: Outcome, target: float | None = None, **details: Any) -> PolicyRun:
    attained, p95, p99 = outcome.wait_stats()
    return PolicyRun(
        policy=outcome.policy,
        gpu_hours=round(outcome.gpu_hours, 3),
        slo_attainment=round(attained, 5),
        p95_wait_seconds=round(p95, 3),
        p99_wait_seconds=round(p99, 3),
        scale_events=outcome.scale_events,
        mean_replicas=round(float(outcome.billed.mean()), 3),
        max_replicas=int(outcome.billed.max()),
        cpu_seconds=round(outcome.cpu_seconds, 2),
        target=target,
        details=details,
    )


def build_policy(
    name: str,
    trace: Trace,
    model: ServiceModel,
    target: float | None = None,
    refit_seconds: float | None = None,
) -> Policy:
    if name in ("gpufinops", "reactive"):
        forecast = name == "gpufinops"
        spec = default_spec(model, forecast=forecast)
        signal = model.demand_signal
        if not forecast:
            return CorePolicy(name, spec, signal=signal, coverage=target)
        settings = ForecastSettings.from_spec(spec.forecast)
        if refit_seconds is not None:
            retry = min(settings.retry_interval_seconds, refit_seconds)
            settings = replace(
                settings, refit_interval_seconds=refit_seconds, retry_interval_seconds=retry
            )
        history = (
            MinuteHistory(trace, model.lag_seconds)
            if signal == "arrivals"
            else CompletionHistory(trace)
        )
        return CorePolicy(name, spec, history, settings, signal, target)
    if name == "keda":
        fraction = DEFAULT_TARGET if target is None else target
        return Keda(keda_target(fraction, model), model, cooldown_seconds=model.idle_seconds)
    if name == "hpa":
        return HpaUtilization(DEFAULT_TARGET if target is None else target, model)
    if name == "static":
        return Static(model.peak_replicas or model.replicas_for(peak_rate(trace.work, 60)))
    raise ValueError(f"unknown policy {name!r} (one of {', '.join(POLICIES)})")


def run_policy(
    name: str,
    trace: Trace,
    model: ServiceModel,
    *,
    target: float | None = None,
    refit_seconds: float | None = None,
    progress: Progress | None = None,
) -> tuple[Outcome, PolicyRun]:
    """Simulate one policy; ``target`` is keda's and hpa's knob, and the gpufinops
    policies' headroom coverage (None: each one's default)."""
    if name == "oracle":
        started = time.process_time()
        plan = oracle_plan(trace.work, model)
        instant = replace(model, startup_seconds=0, lag_seconds=0)
        planned = Planned(plan, model.sync_seconds)
        outcome = simulate(trace, instant, planned, initial=int(plan[0]), progress=progress)
        outcome.cpu_seconds = time.process_time() - started
        outcome.model = model  # waits are judged on the same SLO
        return outcome, summarise(outcome)
    if name in SWEPT and target is None:
        target = DEFAULT_TARGET
    elif name not in (*SWEPT, "gpufinops", "reactive"):
        target = None
    policy = build_policy(name, trace, model, target, refit_seconds)
    with single_thread():
        outcome = simulate(trace, model, policy, progress=progress)
    details: dict[str, Any] = {}
    if isinstance(policy, CorePolicy):
        learned = np.asarray(policy.capacity, dtype=np.float64)
        if np.isfinite(learned).any():
            median = float(np.nanmedian(learned)) / model.capacity_per_replica
            details["learned_capacity_ratio"] = round(median, 3)
        headroom = np.asarray(policy.headroom, dtype=np.float64)
        if headroom.size:
            fixed = 1.0 / policy.settings.utilization
            details["calibrated_headroom_share"] = round(float((headroom > fixed).mean()), 4)
            details["headroom_p50_p90_max"] = [
                round(float(v), 3) for v in np.percentile(headroom, [50, 90, 100])
            ]
        if policy.history is not None:
            forecasts = np.asarray(policy.forecasts, dtype=np.float64)
            outcome.forecast = forecasts
            details["forecast_fits"] = policy.fits
            details["forecast_fit_cpu_seconds"] = round(policy.fit_seconds, 2)
            details["forecast_used_share"] = round(float(np.isfinite(forecasts).mean()), 4)
    if model.min_replicas == 0:
        details.update(outcome.cold_starts())
    return outcome, summarise(outcome, target, **details)
