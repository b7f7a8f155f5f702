"""The autoscaling daemon validates a workload's spec once per generation, not per tick."""

from typing import Any

import pytest

from gpufinops.config.model import OperatorConfig
from gpufinops.core.tenancy import TEAM_LABEL, NamespaceView
from gpufinops.handlers import autoscaling

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
