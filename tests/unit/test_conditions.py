"""Conditions keep Kubernetes semantics whatever sequence of updates they see."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gpufinops.api.status import ConditionStatus
from gpufinops.core.conditions import find_condition, set_condition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TYPES = st.sampled_from(["Ready", "InvalidSpec", "MetricsAvailable"])
STATUSES = st.sampled_from(list(ConditionStatus))
UPDATES = st.lists(st.tuples(TYPES, STATUSES, st.text(max_size=5)), max_size=30)


@given(UPDATES)
def test_transition_time_moves_only_when_status_changes(updates) -> None:
    conditions = []
    last_status: dict[str, ConditionStatus] = {}
    last_change: dict[str, datetime] = {}
    for step, (ctype, status, reason) in enumerate(updates):
        now = T0 + timedelta(seconds=step)
        conditions = set_condition(
            conditions,
            type=ctype,
            status=status,
            reason=reason or "R",
            message="m",
            now=now,
            generation=step,
        )
        if last_status.get(ctype) != status:
            last_change[ctype] = now
        last_status[ctype] = status
        found = find_condition(conditions, ctype)
        assert found is not None
        assert found.status == status
        assert found.last_transition_time == last_change[ctype]
        assert found.observed_generation == step
    # one entry per type, in first-set order
    assert [c.type for c in conditions] == list(dict.fromkeys(u[0] for u in updates))
