"""What every per-workload loop does to the outside world, and the one way a status
write fails: the interfaces the controllers share, so that none imports another."""

from typing import Any, Protocol

from gpufinops.core.events import EventReason


class StatusConflict(Exception):
    """The object changed since the loop last saw it; the write was not applied.

    Conditions are a list, and a merge patch replaces lists whole: writing over a
    newer object would drop conditions another handler set in between (the spec
    handler's InvalidSpec, say). The writer therefore sends the resourceVersion it
    saw, and the loop rewrites on its next tick from the fresher object.
    """


class StatusWriter(Protocol):
    def __call__(self, patch: dict[str, Any]) -> None:
        """Apply ``patch`` to status; raise StatusConflict when the object moved on."""


class EventPoster(Protocol):
    def __call__(self, type: str, reason: EventReason, message: str) -> None: ...
