"""The loop runner every daemon shares: start-to-start periods, contained failures, and
the spec validated once per generation, not per tick."""

import asyncio
import logging
from typing import Any

import pytest

from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.clock import Reading
from gpufinops.core.tenancy import TEAM_LABEL, NamespaceView
from gpufinops.handlers import loop as autoscaling
from gpufinops.handlers.loop import run_loop

SPEC = {
    "type": "Inference",
    "costAllocation": {"team": "t"},
    "inference": {"targetRef": {"name": "llm"}, "maxReplicas": 4},
}


def body(generation: int | None, spec: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "w"}
    if generation is not None:
        meta["generation"] = generation
    return {"metadata": meta, "spec": spec}


NS = NamespaceView("ns")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    real = autoscaling.check_spec

    def counting(raw: Any, config: OperatorConfig, namespace: Any = None) -> Any:
        seen.append(raw)
        return real(raw, config, namespace)

    monkeypatch.setattr(autoscaling, "check_spec", counting)
    return seen


def test_the_spec_is_validated_once_per_generation(calls: list[Any]) -> None:
    checks = autoscaling.SpecChecks(OperatorConfig())
    first = checks.of(body(1, SPEC), NS)
    assert first.spec is not None and first.spec.inference is not None
    assert checks.of(body(1, SPEC), NS) is first
    assert len(calls) == 1
    bigger = {**SPEC, "inference": {**SPEC["inference"], "maxReplicas": 8}}
    second = checks.of(body(2, bigger), NS)
    assert second.spec is not None and second.spec.inference is not None
    assert second.spec.inference.max_replicas == 8
    assert len(calls) == 2


def test_a_namespace_relabelled_is_checked_again(calls: list[Any]) -> None:
    checks = autoscaling.SpecChecks(OperatorConfig())
    team = SPEC["costAllocation"]["team"]
    assert checks.of(body(1, SPEC), NamespaceView("ns", {TEAM_LABEL: team})).valid
    moved = checks.of(body(1, SPEC), NamespaceView("ns", {TEAM_LABEL: "other"}))
    assert not moved.valid and "spec.costAllocation.team" in moved.summary()
    assert len(calls) == 2


def test_without_a_generation_every_tick_validates(calls: list[Any]) -> None:
    checks = autoscaling.SpecChecks(OperatorConfig())
    checks.of(body(None, SPEC), NS)
    checks.of(body(None, SPEC), NS)
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("took", "wait"),
    [(0.0, 15.0), (0.4, 14.6), (13.0, 2.0), (14.0, 1.5), (60.0, 1.5)],
)
def test_periods_run_start_to_start_with_a_floor(took: float, wait: float) -> None:
    # A tick slowed by the API server does not shift every later tick by its length
    # (the period is not 15 s plus the tick), yet an overrunning workload still pauses.
    assert autoscaling.next_wait(15.0, took) == pytest.approx(wait)


class FakeStopped:
    """Stops after ``ticks`` waits, recording each wait asked for."""

    def __init__(self, ticks: int) -> None:
        self.left, self.waits = ticks, []  # type: ignore[var-annotated]

    def __bool__(self) -> bool:
        return self.left <= 0

    async def wait(self, timeout: float | None = None) -> None:
        self.waits.append(timeout)
        self.left -= 1


def test_a_failing_tick_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    async def tick(_: Reading) -> None:
        seen.append(len(seen))
        if len(seen) == 1:
            raise RuntimeError("API server away")

    stopped = FakeStopped(3)
    log = logging.getLogger("test-loop")
    with caplog.at_level(logging.WARNING, "test-loop"):
        asyncio.run(run_loop(tick, lambda: 15.0, what="a tick", logger=log, stopped=stopped))
    assert seen == [0, 1, 2]
    assert [r.getMessage() for r in caplog.records] == [
        "a tick failed, retrying next period: API server away"
    ]


def test_the_wait_counts_from_the_start_of_the_tick() -> None:
    clock = iter([100.0, 104.0, 200.0, 200.5])  # two ticks: 4 s, then 0.5 s

    async def tick(_: Reading) -> None:
        return None

    stopped = FakeStopped(2)
    log = logging.getLogger("test-loop")
    asyncio.run(
        run_loop(tick, lambda: 15.0, what="t", logger=log, stopped=stopped,
                 monotonic=lambda: next(clock))
    )  # fmt: skip
    assert stopped.waits == [pytest.approx(11.0), pytest.approx(14.5)]


def test_a_tick_returning_false_ends_the_loop() -> None:
    calls: list[float] = []

    async def tick(reading: Reading) -> bool:
        calls.append(reading.now)
        return len(calls) < 2

    stopped = FakeStopped(10)
    asyncio.run(run_loop(tick, lambda: 1.0, what="t", logger=logging.getLogger("t"),
                         stopped=stopped))  # fmt: skip
    assert len(calls) == 2 and len(stopped.waits) == 1


def test_cancellation_is_not_contained() -> None:
    async def tick(_: Reading) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run_loop(tick, lambda: 1.0, what="t", logger=logging.getLogger("t"),
                             stopped=FakeStopped(3)))  # fmt: skip


def test_a_skipped_tick_carries_its_clock_step_to_the_next() -> None:
    wall = iter([1000.0, 1010.0 + 3600.0, 1020.0 + 3600.0])  # an hour's step before tick 2
    mono = iter([0.0, 10.0, 20.0])
    from gpufinops.controllers.clock import ClockSteps
    from gpufinops.handlers.loop import SKIPPED

    seen: list[float] = []

    async def tick(reading: Reading) -> str | None:
        seen.append(reading.stepped)
        return SKIPPED if len(seen) == 2 else None  # the tick that saw the step did not act

    clock = ClockSteps(wall=lambda: next(wall), monotonic=lambda: next(mono))
    asyncio.run(run_loop(tick, lambda: 1.0, what="t", logger=logging.getLogger("t"),
                         stopped=FakeStopped(3), clock=clock))  # fmt: skip
    assert seen == [0.0, pytest.approx(3600.0), pytest.approx(3600.0)]
