"""Status conditions with Kubernetes semantics.

``lastTransitionTime`` changes only when ``status`` changes, so a condition
re-asserted on every reconcile does not look like a fresh event to users or
alerting rules.
"""

from collections.abc import Sequence
from datetime import datetime

from gpufinops.api.status import Condition, ConditionStatus


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Return ``conditions`` with ``type`` set; other conditions keep their order."""
    previous = find_condition(conditions, type)
    if (
        previous is not None
        and (previous.status, previous.reason, previous.message) == (status, reason, message)
        and previous.observed_generation == generation
    ):
        return list(conditions)  # re-asserted as it is: nothing to rebuild
    changed = previous is None or previous.status != status
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now if changed or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    out = [c for c in conditions if c.type != type]
    index = next((i for i, c in enumerate(conditions) if c.type == type), len(out))
    out.insert(index, updated)
    return out


def find_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    return next((c for c in conditions if c.type == type), None)
