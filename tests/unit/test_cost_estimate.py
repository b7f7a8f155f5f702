"""Pre-deployment estimates: pods, GPUs, pool and hours per workload type."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.config import load_config
from gpufinops.config.model import GpuResourceConfig
from gpufinops.core.cost.estimate import estimate, schedule_open_fraction
from gpufinops.core.cost.manifests import EstimateError, Manifest, pod_gpus

CONFIG = load_config(None)
PRICE = {p.name: p.gpu_hourly_price_usd for p in CONFIG.node_pools}


def aiw(spec: dict[str, Any], name: str = "w") -> Manifest:
    doc = {"kind": "AIWorkload", "metadata": {"name": name}, "spec": spec}
    return Manifest("w.yaml", doc)


def target(
    kind: str, name: str, gpus: Any, count: int = 1, resource: str = "nvidia.com/gpu"
) -> Manifest:
    key = "parallelism" if kind == "Job" else "replicas"
    container = {"name": "c", "resources": {"requests": {resource: gpus}}}
    spec = {key: count, "template": {"spec": {"containers": [container]}}}
    return Manifest("t.yaml", {"kind": kind, "metadata": {"name": name}, "spec": spec})


def experiment(**extra: Any) -> dict[str, Any]:
    return {
        "type": "Experiment",
        "costAllocation": {"team": "a"},
        "experiment": {"targetRef": {"kind": "StatefulSet", "name": "nb"}, **extra},
    }


def test_experiment_without_pools_uses_the_cheapest_gpu_pool_and_its_lifetime() -> None:
    [e] = estimate(
        [aiw(experiment(maxLifetimeSeconds=36000)), target("StatefulSet", "nb", 2)], CONFIG
    )
    assert e.pool == "l4-spot"
    assert e.expected_monthly_usd == pytest.approx(2 * PRICE["l4-spot"] * 10)
    assert e.worst_case_monthly_usd == pytest.approx(2 * PRICE["l4-spot"] * 730)


def test_experiment_without_lifetime_runs_all_month_with_a_note() -> None:
    [e] = estimate([aiw(experiment()), target("StatefulSet", "nb", "0.5", count=3)], CONFIG)
    assert e.gpus_per_pod == 0.5
    assert e.expected_monthly_usd == pytest.approx(e.worst_case_monthly_usd)
    assert any("maxLifetimeSeconds" in n for n in e.notes)


def training(spot: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "Training",
        "costAllocation": {"team": "a"},
        "nodePools": ["l4-spot", "l4-on-demand"],
        "training": {"jobRef": {"name": "train"}, "spot": spot, **extra},
    }


def test_training_without_spot_uses_the_first_on_demand_pool() -> None:
    spec = training({"enabled": False}, expectedDurationSeconds=7200)
    [e] = estimate([aiw(spec), target("Job", "train", 4, count=2)], CONFIG)
    assert e.pool == "l4-on-demand"
    assert e.expected_monthly_usd == pytest.approx(2 * 4 * PRICE["l4-on-demand"] * 2)


def test_spot_training_pays_for_work_lost_to_interruptions() -> None:
    checkpointed = training({}, expectedDurationSeconds=72000, checkpoint={"intervalSeconds": 1800})
    bare = training({}, expectedDurationSeconds=72000)
    [a] = estimate([aiw(checkpointed), target("Job", "train", 4)], CONFIG)
    [b] = estimate([aiw(bare), target("Job", "train", 4)], CONFIG)
    assert 20 < a.expected_hours < b.expected_hours
    assert a.pool == "l4-spot"
    assert a.worst_case_monthly_usd == pytest.approx(4 * PRICE["l4-on-demand"] * 730)


def test_training_without_duration_is_expected_to_run_all_month() -> None:
    [e] = estimate([aiw(training({}))], CONFIG)
    assert e.expected_hours == 730
    assert any("expectedDurationSeconds" in n for n in e.notes)
    assert any("Job train not among the files" in n for n in e.notes)


def test_pod_gpus_takes_limits_and_the_largest_init_container() -> None:
    pod = {
        "containers": [
            {"resources": {"limits": {"nvidia.com/gpu": 2}, "requests": {"nvidia.com/gpu": 9}}},
            {"resources": {"requests": {"nvidia.com/gpu": "1"}}},
            {"name": "sidecar"},
        ],
        "initContainers": [{"resources": {"limits": {"nvidia.com/gpu": 4}}}],
    }
    assert pod_gpus(pod, "f", "spec") == 4
    pod["initContainers"] = []
    assert pod_gpus(pod, "f", "spec") == 3


def inference(max_replicas: int = 2) -> dict[str, Any]:
    return {
        "type": "Inference",
        "costAllocation": {"team": "a"},
        "inference": {"targetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": max_replicas},
    }


def test_a_mig_deployment_is_priced_by_the_compute_share_of_its_slices() -> None:
    mig = target("Deployment", "llm", 2, count=1, resource="nvidia.com/mig-1g.10gb")
    [e] = estimate([aiw(inference(max_replicas=3)), mig], CONFIG)
    assert e.gpus_per_pod == pytest.approx(2 / 7)
    assert e.worst_case_monthly_usd == pytest.approx(3 * 2 / 7 * PRICE[e.pool] * 730)
    assert e.expected_monthly_usd == pytest.approx(2 / 7 * PRICE[e.pool] * 730)
    bad = target("Deployment", "llm", "lots", resource="nvidia.com/mig-3g.40gb")
    field = r"t.yaml: spec.template.spec.containers\[0\].resources.requests: 'lots'"
    with pytest.raises(EstimateError, match=field):
        estimate([aiw(inference()), bad], CONFIG)


def test_pod_gpus_counts_every_gpu_resource_by_its_worth() -> None:
    pod = {
        "containers": [
            {"resources": {"limits": {"nvidia.com/mig-3g.40gb": 1, "cpu": "500m"}}},
            {"resources": {"requests": {"amd.com/gpu": "2", "nvidia.com/gpumem": "4Gi"}}},
            {"resources": {"limits": {"nvidia.com/gpu.shared": 2}}},
        ],
    }
    # No node is known: a time-sliced replica counts as a whole GPU; companions count 0
    # and are not read.
    assert pod_gpus(pod, "f", "spec") == pytest.approx(3 / 7 + 2 + 2)


def test_configured_gpu_resources_price_the_estimate() -> None:
    rule = GpuResourceConfig.model_validate({"pattern": "*.shared", "gpusPerUnit": 0.25})
    config = CONFIG.model_copy(update={"gpu_resources": [rule]})
    shared = target("Deployment", "llm", 2, resource="nvidia.com/gpu.shared")
    [e] = estimate([aiw(inference()), shared], config)
    assert e.gpus_per_pod == 0.5


def test_negative_gpus_name_the_field() -> None:
    with pytest.raises(EstimateError, match=r"t.yaml: spec.template.spec.containers\[0\]"):
        estimate([aiw(experiment()), target("StatefulSet", "nb", -1)], CONFIG)


def test_schedule_fraction_of_weekday_business_hours() -> None:
    assert schedule_open_fraction("0 8 * * 1-5", "Europe/Paris", 36000) == pytest.approx(50 / 168)
    assert schedule_open_fraction("@hourly", "UTC", 7200) == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=1, max_value=40),
    st.sampled_from([0.5, 1, 2, 8]),
)
def test_expected_never_exceeds_worst_case(low: int, high: int, gpus: float) -> None:
    spec = {
        "type": "Inference",
        "costAllocation": {"team": "a"},
        "inference": {
            "targetRef": {"name": "d"},
            "minReplicas": min(low, high),
            "maxReplicas": high,
            "schedules": [
                {"name": "peak", "cron": "0 9 * * *", "durationSeconds": 28800, "minReplicas": high}
            ],
        },
    }
    [e] = estimate([aiw(spec), target("Deployment", "d", gpus)], CONFIG)
    assert 0 < e.expected_monthly_usd <= e.worst_case_monthly_usd + 1e-9


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "spec",
                    "template",
                    "containers",
                    "resources",
                    "limits",
                    "nvidia.com/gpu",
                    "replicas",
                    "name",
                    "metadata",
                    "parallelism",
                    "type",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(json_values, json_values, st.sampled_from(["AIWorkload", "Deployment", "StatefulSet"]))
def test_arbitrary_documents_fail_only_with_a_named_field(
    metadata: Any, spec: Any, kind: str
) -> None:
    docs = [
        Manifest("x.yaml", {"kind": kind, "metadata": metadata, "spec": spec}),
        aiw(experiment()),
        Manifest("t.yaml", {"kind": "StatefulSet", "metadata": {"name": "nb"}, "spec": spec}),
    ]
    try:
        estimate(docs, CONFIG)
    except EstimateError as exc:
        assert exc.source in ("x.yaml", "t.yaml") and exc.path
