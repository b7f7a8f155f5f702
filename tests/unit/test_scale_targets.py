"""Any scalable target: its resource from discovery, its Scale read as a view, its pods'
names in queries, and the targetRef the API accepts."""

import re

import pytest
from pydantic import ValidationError

from gpufinops.adapters.prometheus.presets import pods_regex, queries_for
from gpufinops.adapters.scale_targets import (
    NotScalable,
    ScalableResource,
    pod_is_ready,
    resource_for,
    view_of_scale,
)
from gpufinops.api.inference import InferenceMetrics, InferenceTargetRef

APPS = {
    "resources": [
        {"name": "deployments", "kind": "Deployment", "namespaced": True},
        {"name": "deployments/scale", "kind": "Scale", "namespaced": True},
        {"name": "statefulsets", "kind": "StatefulSet", "namespaced": True},
        {"name": "statefulsets/scale", "kind": "Scale", "namespaced": True},
        {"name": "controllerrevisions", "kind": "ControllerRevision", "namespaced": True},
    ]
}


def test_the_resource_of_a_scalable_kind_comes_from_discovery() -> None:
    found = resource_for("apps/v1", "StatefulSet", APPS)
    assert found == ScalableResource("apps/v1", "StatefulSet", "statefulsets")
    assert (found.group, found.version) == ("apps", "v1")


@pytest.mark.parametrize(
    ("api_version", "kind", "listing", "says"),
    [
        ("apps/v1", "ControllerRevision", APPS, "has no scale subresource"),
        ("apps/v1", "Rollout", APPS, "apps/v1 serves no kind Rollout"),
        ("x.io/v2", "Model", {}, "x.io/v2 serves no kind Model"),
        ("x.io/v1", "Pool", {"resources": [
            {"name": "pools", "kind": "Pool", "namespaced": False},
            {"name": "pools/scale", "kind": "Scale", "namespaced": False}]}, "cluster-scoped"),
    ],
)  # fmt: skip
def test_what_cannot_be_scaled_is_said_with_the_fix(
    api_version: str, kind: str, listing: dict, says: str
) -> None:
    with pytest.raises(NotScalable, match=says):
        resource_for(api_version, kind, listing)


def test_a_scale_at_zero_and_without_a_selector_is_read_as_kubernetes_writes_it() -> None:
    # spec.replicas is omitted at zero.
    assert view_of_scale({"spec": {}, "status": {"replicas": 0}}, None).replicas == 0
    # No labelSelectorPath: the pods cannot be found, status.replicas stands in.
    view = view_of_scale({"spec": {"replicas": 3}, "status": {"replicas": 2}}, None)
    assert (view.replicas, view.ready, view.selector) == (3, 2, None)
    view = view_of_scale(
        {"spec": {"replicas": 3}, "status": {"replicas": 3, "selector": "app=llm"}}, 1
    )
    assert (view.replicas, view.ready, view.selector) == (3, 1, "app=llm")


def test_a_terminating_or_unready_pod_is_not_ready() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert pod_is_ready(ready)
    assert not pod_is_ready({**ready, "metadata": {"deletionTimestamp": "2026-12-07T00:00:00Z"}})
    assert not pod_is_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert not pod_is_ready({"status": {}})


@pytest.mark.parametrize(
    ("kind", "mine", "not_mine"),
    [
        ("Deployment", ["llm-7d9f8c6b5-x2x4z"], ["llm-0", "llm-large-7d9f8c6b5-x2x4z"]),
        ("Rollout", ["llm-7d9f8c6b5-x2x4z"], ["llm-0"]),
        ("StatefulSet", ["llm-0", "llm-12"], ["llm-large-0", "llm-0-1", "llm-7d9f8c6b5-x2x4z"]),
        ("LeaderWorkerSet", ["llm-0", "llm-3-1"], ["llm-large-0", "llm-0-1-2"]),
        ("Job", ["llm-x2x4z"], ["llm-0"]),
        ("ModelServer", ["llm-0", "llm-abc-1"], ["llmx-0", "llm"]),
    ],
)  # fmt: skip
def test_each_kind_selects_its_own_pods_names(kind: str, mine: list, not_mine: list) -> None:
    pattern = re.compile(pods_regex(kind, "llm"))
    assert all(pattern.fullmatch(p) for p in mine)
    assert not any(pattern.fullmatch(p) for p in not_mine)


def test_preset_queries_select_the_targets_pods() -> None:
    queries = queries_for(InferenceMetrics(), "ml", "llm", kind="StatefulSet")
    assert 'pod=~"llm-[0-9]+"' in queries.queue


def test_target_ref_defaults_and_needs_an_api_version_for_other_kinds() -> None:
    assert InferenceTargetRef(name="llm").resolved_api_version == "apps/v1"
    assert InferenceTargetRef(name="llm").is_deployment
    lws = InferenceTargetRef(kind="LeaderWorkerSet", name="llm")
    assert lws.resolved_api_version == "leaderworkerset.x-k8s.io/v1" and not lws.is_deployment
    custom = InferenceTargetRef.model_validate(
        {"apiVersion": "serving.example.com/v1", "kind": "ModelServer", "name": "llm"}
    )
    assert custom.resolved_api_version == "serving.example.com/v1"
    with pytest.raises(ValidationError, match="apiVersion is required for kind ModelServer"):
        InferenceTargetRef(kind="ModelServer", name="llm")
    with pytest.raises(ValidationError, match="apiVersion"):
        InferenceTargetRef.model_validate({"apiVersion": "v1", "kind": "Pod", "name": "p"})
