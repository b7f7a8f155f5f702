"""How the autoscaler's status write is put: conditions tested, fields set whole."""

from typing import Any

from gpufinops.adapters.status import without_nulls
from gpufinops.handlers.status_writes import ConditionalStatus

READY = {"type": "Ready", "status": "True", "reason": "Scaling", "message": "m"}


def writer(whole_fields: bool, status: dict[str, Any] | None) -> ConditionalStatus:
    write = ConditionalStatus(None, "ns", "w", whole_fields=whole_fields)  # type: ignore[arg-type]
    body: dict[str, Any] = {"metadata": {"resourceVersion": "42"}}
    if status is not None:
        body["status"] = status
    write.seen(body)
    return write


def test_nulls_are_left_out_at_every_depth_as_a_merge_patch_deletes_them() -> None:
    value = {"a": None, "b": {"c": None, "d": 1}, "e": [{"f": None, "g": 2}], "h": 0}
    assert without_nulls(value) == {"b": {"d": 1}, "e": [{"g": 2}], "h": 0}


def test_whole_fields_test_the_conditions_seen_then_set_each_field() -> None:
    status = {"conditions": [READY], "cost": {"todayUSD": 1.0}}
    write = writer(True, status)
    ops = write.operations({"conditions": [READY], "replicas": {"current": 2, "recommended": None}})
    assert ops == [
        {"op": "test", "path": "/status/conditions", "value": [READY]},
        {"op": "add", "path": "/status/conditions", "value": [READY]},
        {"op": "add", "path": "/status/replicas", "value": {"current": 2}},
    ]
    # What is tested is a copy: a later change of the live body does not move it.
    status["conditions"].append({"type": "Other"})
    assert ops[0]["value"] == [READY]


def test_a_merge_patch_on_the_version_when_there_is_nothing_to_test_or_fields_merge() -> None:
    assert writer(True, None).operations({"replicas": {"current": 1}}) is None
    assert writer(True, {"phase": "x"}).operations({"replicas": {"current": 1}}) is None
    assert writer(False, {"conditions": [READY]}).operations({"replicas": {}}) is None
    # A top-level member to delete may not exist: only a merge patch deletes it safely.
    assert writer(True, {"conditions": [READY]}).operations({"forecast": None}) is None
    assert writer(True, {"conditions": [READY]}).version == "42"
