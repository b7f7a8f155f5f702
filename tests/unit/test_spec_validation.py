"""The operator rejects what the API server rejects, and accepts the examples."""

from pathlib import Path

import pytest
from tests.conftest import example_workloads, invalid_manifests

from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config import load_config
from gpufinops.core.validation import check_spec

CONFIG = load_config(None)

INVALID = invalid_manifests()


def test_there_are_at_least_25_invalid_manifests() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize(("path", "doc", "expect"), INVALID, ids=[p.stem for p, _, _ in INVALID])
def test_operator_rejects_invalid_manifest(path: Path, doc: dict, expect: str) -> None:
    check = check_spec(doc["spec"], CONFIG)
    assert not check.valid
    assert check.problems
    assert all(p.path.startswith("spec") for p in check.problems)


EXAMPLES = example_workloads()


def test_every_type_has_an_example() -> None:
    assert {doc["spec"]["type"] for _, doc in EXAMPLES} == {"Inference", "Training", "Experiment"}


@pytest.mark.parametrize(
    ("path", "doc"), EXAMPLES, ids=[d["metadata"]["name"] for _, d in EXAMPLES]
)
def test_examples_are_valid(path: Path, doc: dict) -> None:
    check = check_spec(doc["spec"], CONFIG)
    assert check.valid, check.summary()


def test_defaults_follow_the_documented_values() -> None:
    spec = AIWorkloadSpec.model_validate(
        {
            "type": "Inference",
            "costAllocation": {"team": "a"},
            "inference": {"targetRef": {"name": "x"}, "maxReplicas": 3},
        }
    )
    assert spec.mode == "Active"
    assert spec.inference is not None
    assert spec.inference.min_replicas == 1
    assert spec.inference.metrics.server == "vllm"
    f = spec.inference.forecast
    assert (f.enabled, f.lead_time_seconds, f.history_days, f.quantile) == (True, 180, 7, 0.9)


def test_unknown_node_pool_names_the_field_and_the_known_pools() -> None:
    check = check_spec(
        {
            "type": "Experiment",
            "costAllocation": {"team": "a"},
            "nodePools": ["l4-spot", "h100-spot"],
            "experiment": {"targetRef": {"kind": "Job", "name": "j"}},
        },
        CONFIG,
    )
    assert not check.valid
    [problem] = check.problems
    assert problem.path == "spec.nodePools[1]"
    assert "'h100-spot' is not defined" in problem.message
    assert "l4-spot" in problem.message


def test_errors_name_the_nested_field() -> None:
    check = check_spec(
        {
            "type": "Inference",
            "costAllocation": {"team": "a"},
            "inference": {
                "targetRef": {"name": "x"},
                "maxReplicas": 3,
                "forecast": {"quantile": 2},
            },
        },
        CONFIG,
    )
    assert [p.path for p in check.problems] == ["spec.inference.forecast.quantile"]
    assert "0.99" in check.problems[0].message


def test_wire_form_round_trips() -> None:
    for _, doc in EXAMPLES:
        spec = AIWorkloadSpec.model_validate(doc["spec"])
        again = AIWorkloadSpec.model_validate(spec.to_wire())
        assert again == spec
