"""What the autoscaler reads of its target (any kind with a ``/scale`` subresource).

``adapters.scale_targets`` fills these from the API server (a Deployment from its
watch-fed index); the core plans a tick from them alone, in the operator and in
the simulator.
"""

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class TargetView:
    """The parts of a scaled object the autoscaler reads."""

    replicas: int
    ready: int
    selector: str | None
    generation: int


class TargetProblem(StrEnum):
    """Why a target cannot be scaled (the Ready reason and the Event reason)."""

    NOT_SCALABLE = "TargetNotScalable"
    FORBIDDEN = "TargetForbidden"


@dataclass(frozen=True)
class TargetUnavailable:
    """The target exists (or may) but cannot be read or scaled; the reason says why."""

    reason: TargetProblem
    message: str
