"""The autoscaling loop: acts in Active mode, only reports in Recommend mode,
refuses to fight another autoscaler, holds on missing data, reports transitions."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from gpufinops.adapters.scale_targets import TargetView
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.controllers.effects import StatusConflict
from gpufinops.controllers.inference import Effects, InferenceController
from gpufinops.core.forecast.series import DemandSeries
from gpufinops.core.scaling.observation import Observation

NOW = 1_780_000_000.0


@dataclass
class FakeSignals:
    observation: Observation

    def observe(self) -> Observation:
        return self.observation

    def demand_history(self, now: float) -> DemandSeries | None:
        return None


@dataclass
class Recorder:
    scaled: list[int] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def effects(self) -> Effects:
        return Effects(
            scale=self.scaled.append,
            write_status=self.statuses.append,
            post_event=lambda t, r, m: self.events.append((t, r, m)),
        )

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.events]


def spec(**extra: Any) -> AIWorkloadSpec:
    inference = {
        "targetRef": {"name": "llm"},
        "maxReplicas": 10,
        "capacityPerReplica": 10,
        "forecast": {"enabled": False},
        **extra.pop("inference", {}),
    }
    return AIWorkloadSpec.model_validate(
        {"type": "Inference", "costAllocation": {"team": "t"}, "inference": inference, **extra}
    )


def controller(obs: Observation, rec: Recorder) -> InferenceController:
    return InferenceController("ns", "w", FakeSignals(obs), rec.effects(), None, NOW, 2)


def run(c: InferenceController, s: AIWorkloadSpec, dep: TargetView, conflicts=(), now=NOW):
    return asyncio.run(c.tick(s, 1, dep, list(conflicts), now))


DEP = TargetView(replicas=2, ready=2, selector="app=llm", generation=1)


def test_active_mode_scales_and_reports() -> None:
    rec = Recorder()
    c = controller(Observation(queue_depth=0, arrival_rate=55), rec)
    result = run(c, spec(), DEP)
    assert rec.scaled == [6]
    assert "ScaledUp" in rec.reasons()
    status = rec.statuses[-1]
    assert status["replicas"] == {"current": 2, "ready": 2, "desired": 6, "recommended": 6}
    assert status["lastDecision"]["action"] == "ScaleUp"
    assert status["selector"] == "app=llm"
    assert "autoscaler" in status
    assert result.decision is not None and result.decision.desired == 6


def test_recommend_mode_changes_nothing_but_says_what_it_would_do() -> None:
    rec = Recorder()
    c = controller(Observation(queue_depth=0, arrival_rate=55), rec)
    run(c, spec(mode="Recommend"), DEP)
    assert rec.scaled == []
    assert rec.events[-1][:2] == ("Normal", "Recommendation")
    assert "would scale Deployment/llm 2 → 6" in rec.events[-1][2]
    assert rec.statuses[-1]["replicas"]["desired"] == 6
    ready = {c["type"]: c for c in rec.statuses[-1]["conditions"]}["Ready"]
    assert ready["reason"] == "Recommending"


def test_conflicting_autoscaler_blocks_action() -> None:
    rec = Recorder()
    c = controller(Observation(queue_depth=500, arrival_rate=90), rec)
    run(c, spec(), DEP, conflicts=["HorizontalPodAutoscaler/llm"])
    assert rec.scaled == []
    assert rec.events[0][:2] == ("Warning", "ConflictingAutoscaler")
    conditions = {c["type"]: c for c in rec.statuses[-1]["conditions"]}
    assert conditions["ConflictingAutoscaler"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False"
    # the same conflict on the next tick: no second Event
    run(c, spec(), DEP, conflicts=["HorizontalPodAutoscaler/llm"], now=NOW + 15)
    assert rec.reasons().count("ConflictingAutoscaler") == 1


def test_missing_metrics_hold_and_raise_the_condition_once() -> None:
    rec = Recorder()
    c = controller(Observation(error="query returned no series"), rec)
    run(c, spec(), DEP)
    run(c, spec(), DEP, now=NOW + 15)
    assert rec.scaled == []
    assert rec.reasons().count("MetricsUnavailable") == 1
    conditions = {c["type"]: c for c in rec.statuses[-1]["conditions"]}
    assert conditions["MetricsAvailable"]["status"] == "False"
    assert "query returned no series" in conditions["MetricsAvailable"]["message"]


def test_fallback_event_once_and_recovery() -> None:
    rec = Recorder()
    s = spec(inference={"fallback": {"failureThreshold": 2, "replicas": 5}})
    signals = FakeSignals(Observation(error="Prometheus unreachable"))
    c = InferenceController("ns", "w", signals, rec.effects(), None, NOW, 2)
    for i in range(4):
        run(c, s, DEP, now=NOW + 15 * i)
    assert rec.reasons().count("FallbackActivated") == 1
    assert rec.scaled == [5, 5, 5]  # the Deployment stays at 2 in this test
    signals.observation = Observation(queue_depth=0, arrival_rate=15)
    run(c, s, DEP, now=NOW + 60)
    assert "MetricsAvailable" in rec.reasons()


def test_missing_target_is_reported() -> None:
    rec = Recorder()
    c = controller(Observation(queue_depth=0), rec)
    result = run(c, spec(), None)
    assert result.skipped == "target not found"
    assert rec.events[0][1] == "TargetNotFound"


def test_manual_override_holds_the_count() -> None:
    rec = Recorder()
    c = controller(Observation(queue_depth=0, arrival_rate=90), rec)
    run(c, spec(replicas=3), DEP)
    assert rec.scaled == [3]
    assert rec.statuses[-1]["lastDecision"]["action"] == "ManualOverride"


def test_manual_override_cannot_pass_a_budget_throttle_or_suspend() -> None:
    rec = Recorder()
    c = controller(Observation(queue_depth=0, arrival_rate=90), rec)
    throttled = {"budget": {"enforcement": "Throttle"}}
    asyncio.run(c.tick(spec(replicas=10), 1, DEP, [], NOW, latest_status=throttled))
    assert rec.scaled == [] and rec.statuses[-1]["lastDecision"]["action"] == "BudgetThrottle"
    suspended = {"budget": {"enforcement": "Suspend"}}
    asyncio.run(c.tick(spec(replicas=10), 1, DEP, [], NOW + 15, latest_status=suspended))
    assert rec.scaled == [0]
    # below the ceiling a person's count still holds
    asyncio.run(c.tick(spec(replicas=1), 1, DEP, [], NOW + 30, latest_status=throttled))
    assert rec.scaled == [0, 1]


def test_unchanged_ticks_do_not_rewrite_status() -> None:
    rec = Recorder()
    c = controller(Observation(queue_depth=0, arrival_rate=20), rec)
    run(c, spec(), DEP)
    writes = len(rec.statuses)
    run(c, spec(), DEP, now=NOW + 15)
    run(c, spec(), DEP, now=NOW + 30)
    assert len(rec.statuses) == writes


def test_a_conflicting_status_write_is_retried_from_the_newer_object() -> None:
    """The spec handler wrote InvalidSpec between our read and our write: the
    writer refuses (409), and the next tick rewrites on top of the newer status."""
    rec = Recorder()
    refused: list[dict[str, Any]] = []

    def write(patch: dict[str, Any]) -> None:
        if not refused:
            refused.append(patch)
            raise StatusConflict("the object has been modified")
        rec.statuses.append(patch)

    effects = Effects(scale=rec.scaled.append, write_status=write, post_event=lambda *a: None)
    c = InferenceController(
        "ns", "w", FakeSignals(Observation(queue_depth=0, arrival_rate=20)), effects,
        None, NOW, 2,
    )  # fmt: skip
    asyncio.run(c.tick(spec(), 1, DEP, [], NOW))
    assert len(refused) == 1 and rec.statuses == []
    newer = {
        "conditions": [
            {"type": "InvalidSpec", "status": "False", "reason": "SpecValid", "message": "ok",
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}
        ]
    }  # fmt: skip
    asyncio.run(c.tick(spec(), 1, DEP, [], NOW + 15, latest_status=newer))
    assert len(rec.statuses) == 1
    types = {cond["type"] for cond in rec.statuses[0]["conditions"]}
    assert {"InvalidSpec", "Ready", "MetricsAvailable"} <= types
    assert "autoscaler" in rec.statuses[0]


def test_restart_seeds_history_so_nothing_scales_down_at_once() -> None:
    rec = Recorder()
    c = InferenceController(
        "ns", "w", FakeSignals(Observation(queue_depth=0, arrival_rate=5)), rec.effects(),
        None, NOW, 8,
    )  # fmt: skip
    run(c, spec(), TargetView(8, 8, None, 1))
    assert rec.scaled == []


def test_status_writes_and_scales_run_off_the_event_loop() -> None:
    """Blocking API calls go to worker threads: the loop keeps running other ticks."""
    import threading

    threads: dict[str, int] = {}
    rec = Recorder()

    def write(patch: dict[str, Any]) -> None:
        threads["write"] = threading.get_ident()
        rec.statuses.append(patch)

    def scale(replicas: int) -> None:
        threads["scale"] = threading.get_ident()
        rec.scaled.append(replicas)

    effects = Effects(scale=scale, write_status=write, post_event=lambda *a: None)
    c = InferenceController(
        "ns", "w", FakeSignals(Observation(queue_depth=0, arrival_rate=55)), effects,
        None, NOW, 2,
    )  # fmt: skip
    asyncio.run(c.tick(spec(), 1, DEP, [], NOW))
    assert rec.scaled == [6] and len(rec.statuses) == 1
    assert threads["write"] != threading.get_ident()
    assert threads["scale"] != threading.get_ident()


def test_blocking_effects_use_the_writes_executor_when_given() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    names: list[str] = []
    rec = Recorder()

    def write(patch: dict[str, Any]) -> None:
        names.append(threading.current_thread().name)
        rec.statuses.append(patch)

    effects = Effects(scale=rec.scaled.append, write_status=write, post_event=lambda *a: None)
    with ThreadPoolExecutor(1, thread_name_prefix="writes") as writes:
        c = InferenceController(
            "ns", "w", FakeSignals(Observation(queue_depth=0, arrival_rate=20)), effects,
            None, NOW, 2, writes=writes,
        )  # fmt: skip
        asyncio.run(c.tick(spec(), 1, DEP, [], NOW))
    assert names and names[0].startswith("writes")


def test_a_reason_whose_numbers_alone_moved_is_not_rewritten() -> None:
    """Under real load the demand figure changes every tick; the decision does not."""
    rec = Recorder()
    signals = FakeSignals(Observation(queue_depth=0, arrival_rate=19))
    c = InferenceController("ns", "w", signals, rec.effects(), None, NOW, 2)
    run(c, spec(), DEP)
    first = rec.statuses[-1]["lastDecision"]
    assert "demand 19/s within tolerance of 2 replicas" in first["reason"]
    writes = len(rec.statuses)
    signals.observation = Observation(queue_depth=0, arrival_rate=19.5)
    run(c, spec(), DEP, now=NOW + 15)
    run(c, spec(), DEP, now=NOW + 30)
    assert len(rec.statuses) == writes
    # A different decision is news, with the figures of its own tick.
    signals.observation = Observation(queue_depth=0, arrival_rate=41)
    run(c, spec(), DEP, now=NOW + 45)
    latest = rec.statuses[-1]
    assert latest["replicas"]["recommended"] == 5
    assert "demand 41/s" in latest["lastDecision"]["reason"]
    ready = {c["type"]: c for c in latest["conditions"]}["Ready"]
    assert "demand 41/s" in ready["message"]


def test_same_words_ignores_numbers_only() -> None:
    from gpufinops.core.scaling.tick import same_words

    assert same_words("demand 19/s at 4.5/s per replica", "demand 19.25/s at 4.52/s per replica")
    assert same_words("no demand for 120s", "no demand for 135s")
    assert not same_words("demand 19/s within tolerance", "demand 19/s at 4.5/s per replica")


def _condition(c: InferenceController, ctype: str) -> tuple[str, str] | None:
    found = next((x for x in c.conditions if x.type == ctype), None)
    return (str(found.status), found.reason) if found is not None else None


def test_the_pause_annotation_decides_without_scaling_and_resumes() -> None:
    from gpufinops.adapters import operator_metrics as metrics
    from gpufinops.controllers.inference import is_paused

    rec = Recorder()
    c = controller(Observation(queue_depth=0, arrival_rate=50.0), rec)
    s = spec()
    assert is_paused({"gpufinops.dev/paused": "true"})
    assert not is_paused({"gpufinops.dev/paused": "false"}) and not is_paused(None)
    result = asyncio.run(c.tick(s, 1, DEP, [], NOW, paused=True))
    assert rec.scaled == []  # 50/s at 10/s per replica wants 5: not applied
    assert result.status_patch["replicas"]["desired"] == 5
    assert _condition(c, "Paused") == ("True", "PausedByAnnotation")
    assert _condition(c, "Ready") == ("True", "Paused")
    assert "AutoscalingPaused" in rec.reasons() and "Recommendation" in rec.reasons()
    asyncio.run(c.tick(s, 1, DEP, [], NOW + 15, paused=True))
    assert rec.reasons().count("AutoscalingPaused") == 1
    asyncio.run(c.tick(s, 1, DEP, [], NOW + 30, paused=False))
    assert rec.scaled == [5]
    assert _condition(c, "Paused") == ("False", "Resumed")
    assert "AutoscalingResumed" in rec.reasons()
    # What the tick read, per workload.
    labels = {"namespace": "ns", "workload": "w"}
    sample = metrics.DEMAND.labels(**labels)._value.get()
    assert sample == 50.0
    assert metrics.QUEUE_DEPTH.labels(**labels)._value.get() == 0.0
    assert metrics.CAPACITY_PER_REPLICA.labels(**labels)._value.get() == 10.0
    assert metrics.FALLBACK_ACTIVE.labels(**labels)._value.get() == 0


def test_the_fallback_condition_follows_the_fallback() -> None:
    rec = Recorder()
    c = controller(Observation(error="Prometheus unreachable"), rec)
    s = spec(inference={"fallback": {"failureThreshold": 1, "replicas": 4}})
    asyncio.run(c.tick(s, 1, DEP, [], NOW))
    assert _condition(c, "Fallback") == ("True", "FallbackActive")
    assert rec.scaled == [4]
    c.signals = FakeSignals(Observation(queue_depth=0, arrival_rate=20.0))
    asyncio.run(c.tick(s, 1, DEP, [], NOW + 15))
    assert _condition(c, "Fallback") == ("False", "NoFallback")
