"""One Experiment sandbox's loop, without Kopf: observe, let the core decide, scale to
zero or suspend, report. The Kopf daemon in ``sandboxes.py`` only drives it."""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpufinops.api.experiment import Experiment
from gpufinops.api.spec import AIWorkloadSpec, Mode
from gpufinops.api.status import SandboxStatus
from gpufinops.controllers.effects import EventPoster, StatusConflict, StatusWriter
from gpufinops.core.cost.budget import Action as BudgetAction
from gpufinops.core.cost.budget import recorded_enforcement
from gpufinops.core.events import EventReason
from gpufinops.core.experiment import (
    Action,
    ExperimentObservation,
    ExperimentState,
    Reason,
    decide_experiment,
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
        target = f"{experiment.target_ref.kind}/{experiment.target_ref.name}"
        if self._stale_below is not None:
            if target_generation <= self._stale_below:
                return self._state
            self._stale_below = None
        budget = recorded_enforcement(latest_status)
        decision = decide_experiment(
            experiment,
            self._state,
            obs,
            now,
            budget_suspend=budget == BudgetAction.SUSPEND,
            stepped=stepped,
        )
        recommend = spec.mode == Mode.RECOMMEND
        last = None
        if decision.action == Action.SHUT_DOWN:
            verb = "suspend" if experiment.target_ref.kind == "Job" else "scale to zero"
            if recommend:
                if self._recommended != decision.reason:
                    self._recommended = decision.reason
                    self.effects.post_event(
                        "Normal",
                        EventReason.RECOMMENDATION,
                        f"would {verb} {target}: {decision.message}",
                    )
                return self._state  # nothing changed; ask again next tick
            self.effects.shut_down()
            self._stale_below = target_generation
            self.effects.post_event(
                "Normal", EventReason.SANDBOX_SHUT_DOWN,
                f"{target} {'suspended' if verb == 'suspend' else 'scaled to zero'}: "
                f"{decision.message}; set its replicas again to wake it",
            )  # fmt: skip
            last = {"time": _time(now), "action": "ShutDown", "reason": decision.message}
        elif decision.action == Action.WOKEN:
            self.effects.post_event(
                "Normal", EventReason.SANDBOX_WOKEN, f"{target} {decision.message}"
            )
            last = {"time": _time(now), "action": "Woken", "reason": decision.message}
        self._state = decision.state
        patch: dict[str, Any] = {"sandbox": state_patch(decision.state)}
        if last is not None:
            patch["lastDecision"] = last
        if patch != self._written:
            try:
                self.effects.write_status(patch)
                self._written = patch
            except StatusConflict:
                log.debug("%s/%s changed meanwhile; rewriting next tick", self.namespace, self.name)
        return decision.state
