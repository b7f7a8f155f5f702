"""What the operator reports for a valid and an invalid spec."""

from datetime import UTC, datetime, timedelta

from gpufinops.config import load_config
from gpufinops.core.conditions import find_condition
from gpufinops.core.spec_review import review_spec
from gpufinops.core.validation import check_spec

CONFIG = load_config(None)
NOW = datetime(2026, 3, 1, tzinfo=UTC)
VALID = {
    "type": "Inference",
    "costAllocation": {"team": "search"},
    "inference": {"targetRef": {"name": "llm"}, "maxReplicas": 4},
}


def test_valid_inference_spec_waits_for_the_autoscaler_to_say_ready() -> None:
    result = review_spec(check_spec(VALID, CONFIG), [], generation=3, now=NOW)
    ready = find_condition(result.conditions, "Ready")
    invalid = find_condition(result.conditions, "InvalidSpec")
    assert ready is not None and ready.status == "Unknown" and ready.observed_generation == 3
    assert ready.reason == "Starting"
    assert invalid is not None and invalid.status == "False"
    assert result.target == "Deployment/llm"
    assert (result.event_type, result.event_reason) == ("Normal", "Accepted")


def test_invalid_spec_says_which_field_and_keeps_ready_false() -> None:
    bad = {**VALID, "inference": {**VALID["inference"], "minReplicas": 9}}
    result = review_spec(check_spec(bad, CONFIG), [], generation=4, now=NOW)
    ready = find_condition(result.conditions, "Ready")
    invalid = find_condition(result.conditions, "InvalidSpec")
    assert ready is not None and ready.status == "False" and ready.reason == "InvalidSpec"
    assert invalid is not None and invalid.status == "True"
    assert "spec.inference" in invalid.message
    assert "minReplicas must be less than or equal to maxReplicas" in invalid.message
    assert result.event_type == "Warning"


def test_fixing_the_spec_flips_conditions_with_new_transition_times() -> None:
    bad = {**VALID, "type": "Training"}
    first = review_spec(check_spec(bad, CONFIG), [], generation=1, now=NOW)
    later = NOW + timedelta(minutes=5)
    second = review_spec(check_spec(VALID, CONFIG), first.conditions, generation=2, now=later)
    ready = find_condition(second.conditions, "Ready")
    assert ready is not None and ready.status == "Unknown" and ready.last_transition_time == later
    # re-asserting the same state keeps the transition time
    third = review_spec(
        check_spec(VALID, CONFIG),
        second.conditions,
        generation=2,
        now=later + timedelta(minutes=1),
    )
    again = find_condition(third.conditions, "Ready")
    assert again is not None and again.last_transition_time == later


def test_valid_experiment_is_ready_at_once() -> None:
    spec = {
        "type": "Experiment",
        "costAllocation": {"team": "a"},
        "experiment": {"targetRef": {"kind": "Job", "name": "j"}},
    }
    result = review_spec(check_spec(spec, CONFIG), [], generation=1, now=NOW)
    ready = find_condition(result.conditions, "Ready")
    assert ready is not None and (ready.status, ready.reason) == ("True", "Accepted")


def test_spec_change_keeps_the_autoscalers_ready_verdict() -> None:
    from gpufinops.core.conditions import set_condition

    held = set_condition(
        [], type="Ready", status="False", reason="MetricsUnavailable", message="m", now=NOW,
        generation=1,
    )  # fmt: skip
    result = review_spec(check_spec(VALID, CONFIG), held, generation=2, now=NOW)
    ready = find_condition(result.conditions, "Ready")
    assert ready is not None and ready.reason == "MetricsUnavailable"
