"""One Experiment sandbox's loop, without Kopf: observe, carry out the core's plan
(``core.experiment.plan_experiment``: scale to zero or suspend, report), write status.
The Kopf daemon in ``handlers.experiment`` only drives it."""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpufinops.api.experiment import Experiment
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.api.status import SandboxStatus
from gpufinops.controllers.effects import EventPoster, StatusConflict, StatusWriter
from gpufinops.core.cost.budget import recorded_enforcement
from gpufinops.core.experiment import (
    ExperimentObservation,
    ExperimentState,
    Reason,
    ShutDownTarget,
    plan_experiment,
)

log = logging.getLogger(__name__)


@dataclass
class ExperimentEffects:
    shut_down: Callable[[], None]
    """Scale the target to zero (Deployment, StatefulSet) or suspend it (Job)."""
    write_status: StatusWriter
    post_event: EventPoster


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _time(value: float | None) -> str | None:
    return datetime.fromtimestamp(value, tz=UTC).isoformat() if value is not None else None


def read_state(status: Mapping[str, Any] | None, created_at: float) -> ExperimentState:
    raw = (status or {}).get("sandbox")
    if not raw:
        return ExperimentState(active_since=created_at)
    s = SandboxStatus.model_validate(raw)
    return ExperimentState(
        active_since=_epoch(s.active_since) or created_at,
        idle_since=_epoch(s.idle_since),
        shut_down_at=_epoch(s.shut_down_at),
        reason=Reason(s.shutdown_reason) if s.shutdown_reason else None,
        replicas_before=s.replicas_before,
    )


def state_patch(state: ExperimentState) -> dict[str, Any]:
    return {
        "activeSince": _time(state.active_since),
        "idleSince": _time(state.idle_since),
        "shutDownAt": _time(state.shut_down_at),
        "shutdownReason": str(state.reason) if state.reason else None,
        "replicasBefore": state.replicas_before,
    }


class ExperimentController:
    """Shuts one sandbox down when idle or too old; notices when the user wakes it."""

    def __init__(
        self, namespace: str, name: str, created_at: float, effects: ExperimentEffects
    ) -> None:
        self.namespace, self.name = namespace, name
        self.created_at = created_at
        self.effects = effects
        # The only writer of status.sandbox while it lives: its own copy is authoritative.
        self._state: ExperimentState | None = None
        self._written: dict[str, Any] | None = None
        self._stale_below: int | None = None
        self._recommended: Reason | None = None

    def tick(
        self,
        spec: AIWorkloadSpec,
        obs: ExperimentObservation,
        latest_status: Mapping[str, Any] | None,
        now: float,
        target_generation: int,
        stepped: float = 0.0,
    ) -> ExperimentState:
        """``target_generation`` is the target's metadata.generation as the view shows it:
        a view no newer than the one we shut down from predates our change (watch lag)
        and must not be mistaken for the user waking the sandbox. ``stepped``: how far
        the wall clock jumped since the previous tick (see ``controllers.clock``)."""
        experiment: Experiment | None = spec.experiment
        assert experiment is not None
        if self._state is None:
            self._state = read_state(latest_status, self.created_at)
        if self._stale_below is not None:
            if target_generation <= self._stale_below:
                return self._state
            self._stale_below = None
        plan = plan_experiment(
            spec, self._state, obs, now, budget=recorded_enforcement(latest_status),
            recommended=self._recommended, stepped=stepped,
        )  # fmt: skip
        self._recommended = plan.recommended
        for step in plan.steps:
            if isinstance(step, ShutDownTarget):
                self.effects.shut_down()
                self._stale_below = target_generation
            else:
                self.effects.post_event(step.type, step.reason, step.message)
        if not plan.record:
            return self._state
        self._state = plan.state
        patch: dict[str, Any] = {"sandbox": state_patch(plan.state)}
        if plan.last_decision is not None:
            action, reason = plan.last_decision
            patch["lastDecision"] = {"time": _time(now), "action": action, "reason": reason}
        if patch != self._written:
            try:
                self.effects.write_status(patch)
                self._written = patch
            except StatusConflict:
                log.debug("%s/%s changed meanwhile; rewriting next tick", self.namespace, self.name)
        return plan.state
