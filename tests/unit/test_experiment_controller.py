"""The sandbox loop: shuts down once, is not fooled by a view that predates its own
change, notices the user waking it, and only recommends in Recommend mode."""

from typing import Any

from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.controllers.experiment import ExperimentController, ExperimentEffects
from gpufinops.core.experiment import ExperimentObservation

T0 = 1_790_000_000.0


def spec(mode: str = "Active") -> AIWorkloadSpec:
    return AIWorkloadSpec.model_validate(
        {
            "type": "Experiment",
            "mode": mode,
            "costAllocation": {"team": "lab"},
            "experiment": {"targetRef": {"kind": "Deployment", "name": "nb"},
                           "maxLifetimeSeconds": 600},
        }
    )  # fmt: skip


class Recorder:
    def __init__(self) -> None:
        self.shutdowns = 0
        self.status: dict[str, Any] = {}
        self.events: list[str] = []

    def effects(self) -> ExperimentEffects:
        def shut_down() -> None:
            self.shutdowns += 1

        def write(patch: dict[str, Any]) -> None:
            self.status.update(patch)

        return ExperimentEffects(shut_down, write, lambda t, r, m: self.events.append(r))


RUNNING = ExperimentObservation(running=True, replicas=2, gpu_pods=2, peak_utilization=None)
ASLEEP = ExperimentObservation(running=False, replicas=0, gpu_pods=0, peak_utilization=None)


def test_shuts_down_once_and_ignores_the_stale_view_then_notices_the_wake() -> None:
    rec = Recorder()
    c = ExperimentController("ns", "exp", T0, rec.effects())
    c.tick(spec(), RUNNING, None, T0 + 599, 3)
    assert rec.shutdowns == 0
    c.tick(spec(), RUNNING, None, T0 + 600, 3)
    assert rec.shutdowns == 1
    assert rec.status["sandbox"]["shutdownReason"] == "MaxLifetime"
    assert rec.status["sandbox"]["replicasBefore"] == 2
    assert rec.status["lastDecision"]["action"] == "ShutDown"
    # The Deployment index has not seen our scale yet: still running, same generation.
    c.tick(spec(), RUNNING, None, T0 + 601, 3)
    assert "SandboxWoken" not in rec.events
    c.tick(spec(), ASLEEP, None, T0 + 602, 4)
    assert rec.shutdowns == 1
    # The user sets replicas again: a newer generation, running.
    c.tick(spec(), RUNNING, None, T0 + 700, 5)
    assert rec.events.count("SandboxWoken") == 1
    assert rec.status["sandbox"]["shutDownAt"] is None
    # A fresh lifetime from the wake.
    c.tick(spec(), RUNNING, None, T0 + 1299, 5)
    assert rec.shutdowns == 1
    c.tick(spec(), RUNNING, None, T0 + 1300, 5)
    assert rec.shutdowns == 2


def test_restart_reads_the_timers_from_status() -> None:
    rec = Recorder()
    ExperimentController("ns", "exp", T0, rec.effects()).tick(spec(), RUNNING, None, T0 + 600, 3)
    fresh = ExperimentController("ns", "exp", T0, rec.effects())
    fresh.tick(spec(), ASLEEP, rec.status, T0 + 900, 4)
    assert rec.shutdowns == 1
    assert rec.status["sandbox"]["shutdownReason"] == "MaxLifetime"


def test_recommend_mode_changes_nothing() -> None:
    rec = Recorder()
    c = ExperimentController("ns", "exp", T0, rec.effects())
    c.tick(spec("Recommend"), RUNNING, None, T0 + 600, 3)
    c.tick(spec("Recommend"), RUNNING, None, T0 + 615, 3)
    assert rec.shutdowns == 0
    assert rec.events == ["Recommendation"]
