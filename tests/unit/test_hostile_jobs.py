"""Malformed Jobs, pods and nodes from the watches: the views degrade, never raise.

The Kopf indexes call ``job_view``/``pod_view`` on every event; an exception there
drops the object from the index and logs a traceback on each event, so the
placement loop would stop seeing the Job. A field the API server would never
store (``nvidia.com/gpu: abc``) reads as absent instead.
"""

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufinops.adapters.jobs import (
    JobView,
    build_job,
    job_gpus,
    job_view,
    parse_quantity,
    pod_template_gpus,
    pod_view,
)
from gpufinops.adapters.nodes import node_snapshot, pod_record, pod_snapshot
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.core.gpus import DEFAULT_GPU_RESOURCES
from gpufinops.core.placement.lifecycle import profile

FAST = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SPEC = AIWorkloadSpec.model_validate(
    {
        "type": "Training",
        "costAllocation": {"team": "t"},
        "training": {
            "jobRef": {"name": "j"},
            "checkpoint": {"intervalSeconds": 600},
            "expectedDurationSeconds": 3600,
            "deadline": "2030-01-01T00:00:00Z",
            "startWindows": [{"cron": "0 20 * * *", "durationSeconds": 3600}],
        },
    }
)

QUANTITIES = ["1", "4", "500m", "1k", "2Ki", "1e3", "abc", "", " ", "-1", "nan", "inf", "1e999"]
QUANTITIES += ["9" * 400, "1e" + "9" * 5000, "0x10", "½", "1.5.2", "1 2"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=15),
    st.sampled_from(QUANTITIES),
)
trees = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A well-formed value, or anything at all in its place."""
    return st.one_of(value, trees)


containers = st.lists(
    maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "name": maybe(st.text(max_size=5)),
                "resources": maybe(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "limits": maybe(st.fixed_dictionaries({"nvidia.com/gpu": scalars})),
                            "requests": maybe(st.fixed_dictionaries({"nvidia.com/gpu": scalars})),
                        },
                    )
                ),
            },
        )
    ),
    max_size=3,
)
conditions = st.lists(
    maybe(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["Complete", "Failed", "PodScheduled", "DisruptionTarget"])},
            optional={"status": maybe(st.sampled_from(["True", "False"])), "reason": scalars},
        )
    ),
    max_size=3,
)
pod_specs = st.fixed_dictionaries(
    {},
    optional={
        "containers": maybe(containers),
        "initContainers": maybe(containers),
        "nodeSelector": maybe(st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
        "tolerations": maybe(st.lists(maybe(st.dictionaries(st.text(max_size=5), scalars)))),
        "nodeName": scalars,
    },
)
metadata = st.fixed_dictionaries(
    {},
    optional={
        "name": scalars,
        "uid": scalars,
        "generation": scalars,
        "deletionTimestamp": scalars,
        "ownerReferences": maybe(
            st.lists(
                maybe(
                    st.fixed_dictionaries(
                        {
                            "kind": st.sampled_from(["AIWorkload", "Job"]),
                            "name": scalars,
                            "controller": scalars,
                        },
                        optional={
                            "uid": scalars,
                            "apiVersion": maybe(
                                st.sampled_from(["gpufinops.dev/v1alpha1", "batch/v1", "v1"])
                            ),
                        },
                    )
                )
            )
        ),
    },
)
jobs = st.fixed_dictionaries(
    {},
    optional={
        "metadata": maybe(metadata),
        "spec": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "suspend": scalars,
                    "parallelism": scalars,
                    "template": maybe(
                        st.fixed_dictionaries({}, optional={"spec": maybe(pod_specs)})
                    ),
                },
            )
        ),
        "status": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "startTime": scalars,
                    "active": scalars,
                    "succeeded": scalars,
                    "failed": scalars,
                    "conditions": maybe(conditions),
                },
            )
        ),
    },
)
pods = st.fixed_dictionaries(
    {},
    optional={
        "metadata": maybe(metadata),
        "spec": maybe(pod_specs),
        "status": maybe(
            st.fixed_dictionaries({}, optional={"phase": scalars, "conditions": maybe(conditions)})
        ),
    },
)


def _sane(job: JobView) -> None:
    for count in (job.generation, job.active, job.succeeded, job.failed, job.parallelism):
        assert isinstance(count, int) and count >= 0
    assert job.gpus_per_pod >= 0 and job.gpus_per_pod != float("inf")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in job.node_selector.items())
    assert all(isinstance(t, dict) for t in job.tolerations)
    assert job.owned_by is None or isinstance(job.owned_by, str)
    assert (job.owned_by is None) == (job.owner_uid is None)


@FAST
@given(body=jobs)
def test_any_job_body_gives_a_view_and_a_placement_profile(body: dict[str, Any]) -> None:
    job = job_view(body)
    _sane(job)
    made = profile(SPEC, job, created_at=1.7e9)
    assert made.gpus == job_gpus(job) >= 0
    assert made.pods >= 1


@FAST
@given(body=trees)
def test_job_bodies_that_are_not_even_objects_inside(body: Any) -> None:
    _sane(job_view({"metadata": body, "spec": body, "status": body}))
    pod_view({"metadata": body, "spec": body, "status": body})
    assert pod_template_gpus({"containers": body}) >= 0


@FAST
@given(body=pods)
def test_any_pod_body_gives_a_view(body: dict[str, Any]) -> None:
    pod = pod_view(body)
    assert pod.node is None or isinstance(pod.node, str)
    assert pod.job_uid is None or (isinstance(pod.job_uid, str) and pod.job_uid)
    assert isinstance(pod.phase, str) and isinstance(pod.unschedulable, bool)


@FAST
@given(value=scalars)
def test_parse_quantity_is_a_finite_non_negative_number_or_none(value: Any) -> None:
    number = parse_quantity(value)
    assert number is None or (0 <= number < float("inf"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", 1.0),
        (4, 4.0),
        ("500m", 0.5),
        ("1k", 1000.0),
        ("2Ki", 2048.0),
        ("1e3", 1000.0),
        ("1E", 1e18),
        ("abc", None),
        ("", None),
        ("-1", None),
        ("nan", None),
        (True, None),
        ("1e" + "9" * 5000, None),
    ],
)
def test_kubernetes_quantities(raw: Any, expected: float | None) -> None:
    assert parse_quantity(raw) == expected


def test_a_non_numeric_gpu_count_reads_as_no_gpus_instead_of_crashing_the_index() -> None:
    body = {
        "metadata": {"name": "j", "generation": "seven", "ownerReferences": ["oops"]},
        "spec": {
            "parallelism": "many",
            "template": {
                "spec": {
                    "containers": [
                        {"resources": {"limits": {"nvidia.com/gpu": "abc"}}},
                        {"resources": {"limits": {"nvidia.com/gpu": "2"}}},
                        "not a container",
                    ],
                    "tolerations": "none",
                }
            },
        },
        "status": {"conditions": [None, {"type": "Complete", "status": "True"}]},
    }
    job = job_view(body)
    assert (job.generation, job.parallelism, job.gpus_per_pod) == (0, 0, 2.0)
    assert job.complete and job.tolerations == ()
    assert profile(SPEC, job, created_at=0.0).gpus == 2.0


def test_the_node_indexes_read_quantities_the_same_way() -> None:
    spec = {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1k"}}}, {}]}
    record = pod_record({"metadata": {}, "spec": spec}, DEFAULT_GPU_RESOURCES)
    assert pod_snapshot(record, [], DEFAULT_GPU_RESOURCES).gpus == 1000.0
    node = node_snapshot({"metadata": {"name": "n"}, "status": {"allocatable": {}}}, "p")
    assert node.gpus == 0.0
    bad = {"metadata": {"name": "n"}, "status": {"allocatable": {"nvidia.com/gpu": "x"}}}
    assert node_snapshot(bad, "p").gpus == 0.0


def test_the_job_the_operator_builds_reads_back() -> None:
    template = {"parallelism": 2, "template": {"spec": {"containers": [{"name": "c"}]}}}
    body, warning = build_job("w", "ns", "uid", template)
    job = job_view(body)
    assert warning is None and job.suspended and job.owned_by == "w"
    assert job.owner_uid == "uid" and body["metadata"]["labels"] == {"gpufinops.dev/workload": "w"}
    assert (job.parallelism, job.gpus_per_pod) == (2, 0.0)
