"""Policy semantics: the shipped core behind gpufinops, KEDA's and HPA's defaults."""

import math
from typing import Any

import numpy as np
import pytest

from gpufinops.api.inference import Inference
from gpufinops.core.forecast import ForecastSettings
from gpufinops.core.scaling import decide as core_decide
from gpufinops.core.scaling import tick as scaling_tick
from gpufinops.core.scaling.decide import Decision, ScalingSettings, ScalingState, Tick
from gpufinops.core.scaling.observation import Observation
from gpufinops.core.scaling.plan import plan_scale
from gpufinops.sim import policies
from gpufinops.sim.history import CompletionHistory, MinuteHistory
from gpufinops.sim.policies import (
    CorePolicy,
    HpaUtilization,
    Keda,
    average_value_replicas,
    default_spec,
    keda_target,
    utilization_replicas,
)
from gpufinops.sim.run import build_policy, run_policy
from gpufinops.sim.service import ServiceModel, View
from gpufinops.sim.traces import Trace

T0 = 1_700_000_000.0
MODEL = ServiceModel(capacity_per_replica=2.0, max_replicas=100, peak_replicas=10)


def view(t: float, current: int, ready: int | None = None, **signals: Any) -> View:
    base: dict[str, Any] = {
        "queue_depth": 0.0,
        "running": 0.0,
        "arrival_rate": 0.0,
        "throughput": 0.0,
        "utilization": 0.0,
    }
    base.update(signals)
    return View(T0 + t, int(t), current, current if ready is None else ready, **base)


def flat_trace(seconds: int, rate: float = 10.0) -> Trace:
    values = np.full(seconds, rate)
    return Trace("flat", T0, values, values.copy(), "binned", 10.0)


# --- gpufinops and reactive: the operator's core -------------------------------------


def test_core_policies_call_the_shipped_decide_with_the_default_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[ScalingSettings, Any]] = []
    shipped = core_decide.decide

    def spy(settings: ScalingSettings, state: Any, tick: Any) -> Any:
        calls.append((settings, tick))
        return shipped(settings, state, tick)

    monkeypatch.setattr(scaling_tick, "decide", spy)  # what plan_inference calls
    for name, forecast in (("reactive", False), ("gpufinops", True)):
        calls.clear()
        policy = build_policy(name, flat_trace(3600), MODEL)
        assert isinstance(policy, CorePolicy)
        expected = ScalingSettings.from_spec(
            Inference.model_validate(
                {
                    "targetRef": {"name": "model"},
                    "maxReplicas": MODEL.max_replicas,
                    "forecast": {"enabled": forecast},
                }
            )
        )
        assert policy.settings == expected
        assert policy.settings.spec.target_queue_depth_per_replica == 5
        assert policy.settings.spec.capacity_per_replica is None
        run_policy(name, flat_trace(600), MODEL)
        assert calls, "the policy must go through the shipped decide()"
        settings, tick = calls[-1]
        assert settings.spec == expected.spec
        assert tick.observation.arrival_rate == pytest.approx(10.0)
        assert tick.forecast_peak is None  # ten minutes: nothing to forecast from


def _spy_on_decide(monkeypatch: pytest.MonkeyPatch) -> list[Tick]:
    """Every tick the policy hands to the shipped ``decide``, in order."""
    ticks: list[Tick] = []
    shipped = core_decide.decide

    def spy(settings: ScalingSettings, state: ScalingState, tick: Tick) -> Decision:
        ticks.append(tick)
        return shipped(settings, state, tick)

    monkeypatch.setattr(scaling_tick, "decide", spy)  # what plan_inference calls
    return ticks


def test_core_policy_passes_signals_through_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay is only evidence about the operator if the core sees the scrape as the
    operator would: any signal renamed, rescaled or dropped on the way would go unseen
    by the results, so the tick is compared field by field and the answer with the
    core's own on the same inputs."""
    ticks = _spy_on_decide(monkeypatch)
    policy = CorePolicy("reactive", default_spec(MODEL, forecast=False), signal="arrivals")
    v = view(60, 4, 3, queue_depth=12.0, running=8.0, arrival_rate=7.5, throughput=6.0)
    desired = policy.decide(v)

    observation = Observation(queue_depth=12.0, running=8.0, arrival_rate=7.5, throughput=6.0)
    assert ticks == [Tick(T0 + 60, 4, 3, observation, None)]
    direct = core_decide.decide(policy.settings, ScalingState(), ticks[0])
    assert desired == plan_scale(direct).desired
    assert policy.state == direct.state
    assert policy.state.capacity_per_replica == pytest.approx(6.0 / 3)  # per ready replica

    # A different scrape must reach the core as a different tick (nothing is cached).
    later = view(75, desired, desired, queue_depth=0.0, running=2.0, arrival_rate=1.0,
                 throughput=1.5)  # fmt: skip
    again = policy.decide(later)
    quiet = Observation(queue_depth=0.0, running=2.0, arrival_rate=1.0, throughput=1.5)
    assert ticks[1] == Tick(T0 + 75, desired, desired, quiet, None)
    assert again == plan_scale(core_decide.decide(policy.settings, direct.state, ticks[1])).desired


def test_core_policy_at_zero_replicas_reads_demand_and_an_absent_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At zero replicas the engine's queue series is gone: the operator then reads an
    absent queue and the gateway's demand, and the replay must show the core that, not a
    queue of zero (which the core treats differently from an absent one)."""
    ticks = _spy_on_decide(monkeypatch)
    model = ServiceModel(capacity_per_replica=2.0, min_replicas=0, max_replicas=10)
    policy = CorePolicy("reactive", default_spec(model, forecast=False))
    desired = policy.decide(view(30, 0, queue_depth=9.0, running=3.0, arrival_rate=4.0))

    absent = Observation(arrival_rate=4.0, error="query returned no series", queue_absent=True)
    assert ticks == [Tick(T0 + 30, 0, 0, absent, None)]
    direct = core_decide.decide(policy.settings, ScalingState(), ticks[0])
    assert desired == plan_scale(direct).desired
    assert desired >= 1  # demand at zero replicas wakes the service


def test_core_policy_reads_the_completions_its_default_preset_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vLLM exports no arrival counter: a default AIWorkload's demand is the completion
    rate, so the replayed core must not see the trace's true arrivals."""
    ticks = _spy_on_decide(monkeypatch)
    policy = CorePolicy("reactive", default_spec(MODEL, forecast=False))
    policy.decide(view(60, 4, 3, queue_depth=12.0, running=8.0, arrival_rate=7.5,
                       throughput=6.0))  # fmt: skip
    assert ticks[0].observation.arrival_rate == 6.0
    assert ticks[0].observation.throughput == 6.0
    assert build_policy("reactive", flat_trace(600), MODEL).signal == "completions"
    arrivals = ServiceModel(capacity_per_replica=2.0, max_replicas=100, demand_signal="arrivals")
    gpufinops = build_policy("gpufinops", flat_trace(600), arrivals)
    assert isinstance(gpufinops, CorePolicy) and isinstance(gpufinops.history, MinuteHistory)
    assert isinstance(build_policy("gpufinops", flat_trace(600), MODEL).history,
                      CompletionHistory)  # fmt: skip


def test_completion_history_is_the_served_work_per_minute_up_to_the_scrape() -> None:
    t = Trace("flat", 90.0, np.ones(600), np.ones(600), "binned", 1.0)  # minutes from 120
    served = np.concatenate(([0.0], np.cumsum(np.arange(600, dtype=np.float64))))
    history = CompletionHistory(t)

    def at(scraped: int) -> Any:
        v = View(90.0 + scraped + 15, scraped + 15, 1, 1, 0.0, 0.0, 1.0, 1.0, 0.5, served,
                 scraped)  # fmt: skip
        return history.seen_at(v)

    assert at(89) is None  # the first minute [120, 180) is seconds [30, 90)
    first = at(90)
    assert first is not None and first.start == 120 and len(first) == 1
    assert first.values[0] == pytest.approx(np.mean(np.arange(30, 90)))
    later = at(400)
    assert later is not None and len(later) == 6  # [30, 390): 6 minutes; 390-400 is not one
    assert later.values[-1] == pytest.approx(np.mean(np.arange(330, 390)))
    with pytest.raises(ValueError, match="served"):
        history.seen_at(view(60, 1))


def test_the_forecaster_learns_what_was_served_not_what_arrived(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a burst the replicas cannot serve, the history the forecaster is fitted on
    is capped by their capacity: what Prometheus would hold of vLLM's success counter."""
    seen: list[Any] = []
    shipped = CompletionHistory.seen_at

    def spy(self: CompletionHistory, v: View) -> Any:
        series = shipped(self, v)
        if series is not None:
            seen.append(series)
        return series

    monkeypatch.setattr(CompletionHistory, "seen_at", spy)
    values = np.concatenate((np.full(600, 2.0), np.full(600, 50.0)))
    t = Trace("burst", T0, values, values.copy(), "binned", 1.0)
    model = ServiceModel(capacity_per_replica=2.0, max_replicas=3, startup_seconds=60)
    run_policy("gpufinops", t, model)
    assert seen, "the forecaster's history must come from the completions"
    assert float(seen[-1].values.max()) <= 3 * 2.0 + 1e-9  # 3 replicas x 2/s, not 50/s
    assert float(seen[-1].values[0]) == pytest.approx(2.0)


def test_history_shows_only_minutes_finished_and_scraped() -> None:
    values = np.arange(600, dtype=np.float64)
    t = Trace("ramp", 120.0, values, values.copy(), "binned", 1.0)
    history = MinuteHistory(t, lag_seconds=15)
    assert history.seen(120 + 74) is None  # first minute [120, 180) visible from 195
    first = history.seen(120 + 75)
    assert first is not None and len(first) == 1 and first.start == 120
    assert first.values[0] == pytest.approx(np.mean(values[:60]))
    later = history.seen(120 + 300)
    assert later is not None and later.end <= 120 + 300 - 15


def test_forecaster_is_refitted_on_the_past_and_used_when_ready() -> None:
    days = 2.0
    n = int(days * 86400)
    seconds = np.arange(n)
    rng = np.random.default_rng(3)
    daily = 20 + 15 * np.sin(2 * np.pi * seconds / 86400)
    # minute-to-minute noise: yesterday is then a worse guess than a learnt model
    noise = np.repeat(rng.normal(0.0, 1.5, size=n // 60 + 1), 60)[:n]
    rate = np.maximum(daily + noise, 0.0)
    t = Trace("daily", 0.0, rate, rate.copy(), "binned", 1.0)
    model = ServiceModel.normalised(t, 40)
    fits: list[tuple[float, float]] = []
    modelled: list[float] = []
    original = policies.DemandForecaster.fit

    def record(self: Any, history: Any, now: float) -> Any:
        fits.append((history.end, now))
        report = original(self, history, now)
        if report.backtest_ratio is not None:
            modelled.append(now)
        return report

    policy = build_policy("gpufinops", t, model, refit_seconds=6 * 3600)
    assert isinstance(policy, CorePolicy)
    policies.DemandForecaster.fit = record  # type: ignore[method-assign]
    try:
        from gpufinops.sim.service import simulate

        outcome = simulate(t, model, policy)
    finally:
        policies.DemandForecaster.fit = original  # type: ignore[method-assign]
    assert all(end <= now - model.lag_seconds for end, now in fits)  # no lookahead
    gaps = np.diff([now for _, now in fits])
    assert gaps.min() >= ForecastSettings().retry_interval_seconds  # no model yet: hourly
    assert len(modelled) >= 2 and np.diff(modelled).min() >= 6 * 3600  # then every 6 h
    used = np.isfinite(np.asarray(policy.forecasts))
    assert used.any(), "the forecaster must become ready on two days of daily traffic"
    assert not used[: int(1.5 * 86400 / model.sync_seconds)].any()  # not before enough history
    assert outcome.gpu_hours > 0


# --- KEDA ------------------------------------------------------------------------------


def test_keda_average_value_target_with_hpa_tolerance() -> None:
    assert average_value_replicas(105.0, 10.0, 10) == 10  # 5 % off: tolerated
    assert average_value_replicas(120.0, 10.0, 10) == 12
    assert average_value_replicas(50.0, 10.0, 10) == 5
    assert keda_target(0.5, MODEL) == pytest.approx(0.5 * 2.0 * 5)


def test_keda_scale_up_is_limited_by_hpa_default_policies() -> None:
    keda = Keda(10.0, MODEL)
    assert keda.decide(view(0, 1, queue_depth=1000.0)) == 5  # max(+4 pods, +100 %)
    assert keda.decide(view(15, 5, queue_depth=1000.0)) == 10
    assert keda.decide(view(30, 10, queue_depth=1000.0)) == 20


def test_keda_scale_down_waits_for_the_stabilization_window() -> None:
    keda = Keda(10.0, MODEL)
    assert keda.decide(view(0, 10, queue_depth=100.0)) == 10
    desired = [keda.decide(view(15 * i, 10, queue_depth=20.0)) for i in range(1, 22)]
    # the recommendation of 10 at t=0 holds for 300 s (HPA scale-down stabilisation)
    assert desired[:19] == [10] * 19
    assert desired[19] == 2


def test_keda_cooldown_scales_to_zero_only_after_300_s_idle_and_polls_activation() -> None:
    model = ServiceModel(capacity_per_replica=2.0, min_replicas=0, max_replicas=100)
    keda = Keda(10.0, model)
    assert keda.decide(view(0, 1, queue_depth=3.0)) == 1
    current, t = 1, 0
    while current > 0:
        t += 15
        current = keda.decide(view(t, current))
    assert 300 <= t < 330  # cooldownPeriod 300 s, checked at each 30 s poll
    # activation waits for the next poll (30 s), then 0 -> 1 and the HPA takes over
    assert keda.decide(view(t + 15, 0, queue_depth=50.0)) == 0
    assert keda.decide(view(t + 30, 0, queue_depth=50.0)) == 1
    assert keda.decide(view(t + 45, 1, queue_depth=50.0)) == 5


def test_keda_with_min_one_never_goes_to_zero() -> None:
    keda = Keda(10.0, MODEL)
    current = 3
    for i in range(100):
        current = keda.decide(view(15 * i, current))
    assert current == 1


# --- HPA on GPU utilisation ------------------------------------------------------------


def test_hpa_utilization_formula_and_unready_pods() -> None:
    assert utilization_replicas(0.9, 0.5, ready=4, current=4) == 8
    assert utilization_replicas(0.52, 0.5, ready=4, current=4) == 4  # within tolerance
    assert utilization_replicas(0.25, 0.5, ready=4, current=4) == 2
    # 4 ready at 100 %, 4 more starting (counted idle): ratio 1.0 -> hold
    assert utilization_replicas(1.0, 0.5, ready=4, current=8) == 8
    # scaling down only counts ready pods
    assert utilization_replicas(0.2, 0.5, ready=4, current=6) == 2


def test_hpa_is_blind_to_the_queue_once_saturated() -> None:
    hpa = HpaUtilization(0.8, MODEL)
    calm = hpa.decide(view(0, 10, utilization=1.0, queue_depth=0.0))
    hpa2 = HpaUtilization(0.8, MODEL)
    flooded = hpa2.decide(view(0, 10, utilization=1.0, queue_depth=1e6))
    assert calm == flooded == math.ceil(10 / 0.8)


def test_hpa_holds_without_a_utilization_signal() -> None:
    hpa = HpaUtilization(0.7, MODEL)
    assert hpa.decide(view(0, 7, utilization=None)) == 7


def test_scale_to_zero_in_the_simulator_reports_its_cold_start_waits() -> None:
    # An hour of traffic, an idle hour, then traffic again: one cold start.
    rate = np.concatenate([np.full(3600, 1.0), np.zeros(3600), np.full(1800, 1.0)])
    trace = Trace("gaps", T0, rate, rate.copy(), "binned", 1.0)
    model = ServiceModel(
        capacity_per_replica=2.0, max_replicas=10, min_replicas=0, idle_seconds=300,
        startup_seconds=180, lag_seconds=15, sync_seconds=15,
    )  # fmt: skip
    spec = default_spec(model, forecast=False)
    assert spec.scale_to_zero is not None and spec.scale_to_zero.idle_seconds == 300
    outcome, result = run_policy("reactive", trace, model)
    assert (outcome.billed[3600 + 600 : 7200] == 0).all()  # scaled to zero while idle
    cold = outcome.cold_starts()
    assert cold["cold_starts"] == 1
    assert result.details["cold_start_requests"] == cold["cold_start_requests"] > 0
    # The first request after the gap waits for a decision and a replica's start.
    p50 = cold["cold_start_p50_wait_seconds"]
    assert isinstance(p50, float) and p50 >= model.startup_seconds
    worst = cold["cold_start_max_wait_seconds"]
    assert isinstance(worst, float)
    # ... and at most the start-up plus the queue that built meanwhile (1/s drained at 2/s).
    start = model.startup_seconds + model.lag_seconds + 2 * model.sync_seconds
    assert worst <= start * (1 + 1.0 / model.capacity_per_replica) + model.sync_seconds
