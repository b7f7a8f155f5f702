"""The wiring of spec.inference.spot: pods and nodes read into pool observations, the
child Deployment made from the target, the order of writes, the fold-back, the
status round trip, and the spec checks (the plan itself: test_spot_inference_plan)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from gpufinops.adapters.prometheus.presets import service_pods_regex
from gpufinops.adapters.spot_children import (
    DELETION_COST_ANNOTATION,
    NOTICED_DELETION_COST,
    POOL_LABEL,
    Owner,
    PoolPlacement,
    SpotReading,
    child_manifest,
    notice_of,
    observe_pods,
)
from gpufinops.api.inference import SpotInference
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.inference import Effects, InferenceController, SpotWiring
from gpufinops.controllers.spot import SpotReplicas, read_spot_status
from gpufinops.core.scaling.observation import Observation
from gpufinops.core.scaling.spot import PoolObservation
from gpufinops.core.scaling.target import TargetView
from gpufinops.core.tenancy import NamespaceView, spot_problems

NOW = 1_800_000_000.0
TARGET: dict[str, Any] = {
    "metadata": {"name": "llm", "namespace": "ns", "resourceVersion": "7"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "llm"}},
        "strategy": {"type": "RollingUpdate"},
        "template": {
            "metadata": {"labels": {"app": "llm"}},
            "spec": {
                "nodeSelector": {"pool": "on-demand"},
                "tolerations": [{"key": "gpu", "operator": "Exists"}],
                "containers": [{"name": "vllm", "image": "vllm:1"}],
            },
        },
    },
    "status": {"readyReplicas": 1},
}


def pod(name: str, pool: str, node: str | None, ready: bool = True, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {POOL_LABEL: pool},
                     "creationTimestamp": "2027-01-15T08:00:00Z", **meta},
        "spec": {"nodeName": node} if node else {},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }  # fmt: skip


def test_pods_are_counted_per_pool_and_those_on_noticed_or_lost_nodes_apart() -> None:
    cost: dict[str, Any] = {"annotations": {DELETION_COST_ANNOTATION: NOTICED_DELETION_COST}}
    pods = [
        pod("a1", "a", "n1"),
        pod("a2", "a", "n1", ready=False),
        pod("a3", "a", None),
        pod("a4", "a", "n2", **cost),
        pod("b1", "b", "gone"),
        pod("b2", "b", "n3", deletionTimestamp="2027-01-15T08:01:00Z"),
    ]
    pools, marked = observe_pods(pods, {"n2": "SpotInterruptionNotice"}, ["n1", "n2", "n3"])
    a = pools["a"]
    assert (a.ready, a.starting, a.pending, a.noticed) == (1, 1, 1, ("a4",))
    assert a.pending_since is not None and a.notice_reason == "SpotInterruptionNotice"
    assert pools["b"].noticed == ("b1",) and pools["b"].notice_reason == "NodeGone"
    assert marked == {"a4"}


def test_each_interruption_taint_is_a_notice() -> None:
    for key in ("aws-node-termination-handler/spot-itn", "karpenter.sh/disrupted",
                "cloud.google.com/impending-node-termination"):  # fmt: skip
        assert notice_of({"spec": {"taints": [{"key": key, "effect": "NoSchedule"}]}})
    assert notice_of({"spec": {"taints": [{"key": "node.kubernetes.io/unschedulable"}]}}) is None


def test_a_child_copies_the_template_pinned_to_its_pool_with_selectors_apart() -> None:
    placement = PoolPlacement(
        "spot-a", {"pool": "spot-a"}, ({"key": "spot", "operator": "Exists"},)
    )
    child = child_manifest(TARGET, placement, Owner("llm", "uid-1"), 3)
    assert child["metadata"]["name"] == "llm-spot-spot-a"
    assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec = child["spec"]
    assert spec["replicas"] == 3 and spec["strategy"] == {"type": "RollingUpdate"}
    labels = spec["selector"]["matchLabels"]
    assert labels["app"] == "llm" and labels[POOL_LABEL] == "spot-a"
    assert labels.items() <= spec["template"]["metadata"]["labels"].items()
    pod_spec = spec["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"pool": "spot-a"}
    assert pod_spec["tolerations"] == [{"key": "gpu", "operator": "Exists"},
                                       {"key": "spot", "operator": "Exists"}]  # fmt: skip
    assert TARGET["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "on-demand"}
    changed = {**TARGET, "spec": {**TARGET["spec"], "template": {"metadata": {}, "spec": {}}}}
    again = child_manifest(changed, placement, Owner("llm", "uid-1"), 3)
    hash_key = "gpufinops.dev/template-hash"
    assert again["metadata"]["annotations"][hash_key] != child["metadata"]["annotations"][hash_key]


class FakePort:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def read(self) -> SpotReading | None:
        raise AssertionError("not read here")

    def scale_target(self, reading: SpotReading, replicas: int) -> None:
        self.calls.append(("target", replicas))

    def put_child(self, reading: SpotReading, placement: PoolPlacement, replicas: int) -> None:
        self.calls.append(("child", placement.name, replicas))

    def mark_noticed(self, pods: Sequence[str]) -> None:
        if pods:
            self.calls.append(("mark", tuple(pods)))

    def evict(self, pods: Sequence[str]) -> None:
        if pods:
            self.calls.append(("evict", tuple(pods)))

    def delete_child(self, reading: SpotReading, pool: str) -> None:
        self.calls.append(("delete", pool))


SPEC = SpotInference.model_validate({
    "pools": ["a", "b"], "onDemandBaseReplicas": 1, "unavailableSeconds": 60,
    "overprovision": {"byPreemptionRate": False},
})  # fmt: skip
PLACES = {p: PoolPlacement(p, {"pool": p}) for p in ("a", "b", "old")}


def child(pool: str, replicas: int) -> dict[str, Any]:
    return {"metadata": {"name": f"llm-spot-{pool}"}, "spec": {"replicas": replicas}}


def test_a_notice_marks_the_pods_and_every_increase_comes_before_a_decrease() -> None:
    reading = SpotReading(
        target=TARGET,
        children={"a": child("a", 2), "b": child("b", 2)},
        pools={"a": PoolObservation(ready=1, noticed=("a-1",), notice_reason="X"),
               "b": PoolObservation(ready=2)},
    )  # fmt: skip
    port = FakePort()
    spot = SpotReplicas(None)
    plan, status = spot.carry_out(port, reading, 5, SPEC, PLACES, 180, NOW)
    assert port.calls[0] == ("mark", ("a-1",))
    # a keeps its healthy replica (it serves; it goes first on a scale-down) and the
    # noticed one, which serves until its replacement is ready: b takes the rest.
    assert plan.spot == {"a": 2, "b": 3}
    assert ("child", "b", 3) in port.calls
    assert not [c for c in port.calls if c[0] == "evict"]
    assert status["pools"][0]["preemptions"] == 1 and status["pools"][0]["reason"] == "Interrupted"
    assert next(e.reason for e in plan.events) == "SpotInterrupted"
    # Its replacements are ready and it is still there: a is scaled down (the noticed
    # pod goes first) and, marked a tick ago, it is evicted.
    port = FakePort()
    reading.pools = {"a": PoolObservation(ready=1, noticed=("a-1",), notice_reason="X"),
                     "b": PoolObservation(ready=4)}  # fmt: skip
    reading.children = {"a": child("a", 2), "b": child("b", 4)}
    reading.marked = frozenset({"a-1"})
    plan, _ = spot.carry_out(port, reading, 5, SPEC, PLACES, 180, NOW + 1)
    assert plan.spot["a"] == 0 and ("child", "a", 0) in port.calls
    assert ("evict", ("a-1",)) in port.calls


def test_a_restart_reads_the_records_back_from_status() -> None:
    reading = SpotReading(target=TARGET, children={"a": child("a", 2)},
                          pools={"a": PoolObservation(noticed=("a-1",))})  # fmt: skip
    spot = SpotReplicas(None)
    _, status = spot.carry_out(FakePort(), reading, 5, SPEC, PLACES, 180, NOW)
    records, desired = read_spot_status({"spot": status})
    assert desired == 5 and records == spot.records
    again = SpotReplicas({"spot": status})
    assert again.present and again.desired == 5


def test_an_unlisted_pool_is_deleted_only_once_the_rest_is_ready_for_the_count() -> None:
    children = {"a": child("a", 2), "b": child("b", 2), "old": child("old", 2)}

    def deleted(ready_in_b: int) -> list[tuple[Any, ...]]:
        pools = {"a": PoolObservation(ready=2), "b": PoolObservation(ready=ready_in_b)}
        port = FakePort()
        reading = SpotReading(target=TARGET, children=children, pools=pools)
        SpotReplicas(None).carry_out(port, reading, 5, SPEC, PLACES, 180, NOW)
        return [c for c in port.calls if c[0] == "delete"]

    assert deleted(ready_in_b=1) == []
    assert deleted(ready_in_b=2) == [("delete", "old")]


def test_removing_spot_scales_the_target_first_and_deletes_the_children_when_it_is_ready() -> None:
    children = {"a": child("a", 2), "b": child("b", 2)}
    spot = SpotReplicas({"spot": {"desiredReplicas": 5}})
    port = FakePort()
    assert not spot.fold(port, SpotReading(target=TARGET, children=children), 5)
    assert port.calls == [("target", 5)]
    ready = {**TARGET, "spec": {**TARGET["spec"], "replicas": 5}, "status": {"readyReplicas": 5}}
    port = FakePort()
    assert spot.fold(port, SpotReading(target=ready, children=children), 5)
    assert port.calls == [("delete", "a"), ("delete", "b")]
    assert not spot.present


def test_the_service_signal_selects_the_childrens_pods_too() -> None:
    pattern = re.compile(service_pods_regex("Deployment", "llm", ["spot-a"]))
    assert pattern.fullmatch("llm-7d9f8c6b5-x2x4z")
    assert pattern.fullmatch("llm-spot-spot-a-7d9f8c6b5-x2x4z")
    assert not pattern.fullmatch("llm-spot-spot-b-7d9f8c6b5-x2x4z")
    assert not pattern.fullmatch("llm-large-7d9f8c6b5-x2x4z")


CONFIG = OperatorConfig.model_validate({
    "nodePools": [
        {"name": "od", "selector": {"p": "od"}, "instanceType": "g6", "capacityType": "on-demand"},
        {"name": "sa", "selector": {"p": "sa"}, "instanceType": "g6", "capacityType": "spot"},
        {"name": "sb", "selector": {"p": "sb"}, "instanceType": "g6", "capacityType": "spot",
         "namespaceSelector": {"matchLabels": {"tier": "gold"}}},
    ],
})  # fmt: skip


def spec(pools: list[str], kind: str = "Deployment") -> AIWorkloadSpec:
    return AIWorkloadSpec.model_validate({
        "type": "Inference", "costAllocation": {"team": "t"},
        "inference": {"targetRef": {"name": "llm", "kind": kind}, "maxReplicas": 4,
                      "spot": {"pools": pools}},
    })  # fmt: skip


def test_spot_needs_a_deployment_and_spot_pools_open_to_the_namespace() -> None:
    ns = NamespaceView("team-a")
    assert spot_problems(spec(["sa"]), ns, CONFIG) == []
    found = dict(spot_problems(spec(["sa", "od", "nope", "sb"], "StatefulSet"), ns, CONFIG))
    assert "Deployment" in found["spec.inference.spot"]
    assert "capacityType on-demand" in found["spec.inference.spot.pools[1]"]
    assert "not defined" in found["spec.inference.spot.pools[2]"]
    assert "not open to namespace team-a" in found["spec.inference.spot.pools[3]"]
    assert spot_problems(spec(["sb"]), NamespaceView("g", {"tier": "gold"}), CONFIG) == []


# ------------------------------------------------------------- the Inference loop


class ReadingPort(FakePort):
    """A port whose read answers ``reading`` (an exception is raised)."""

    def __init__(self, reading: SpotReading | Exception | None) -> None:
        super().__init__()
        self.reading = reading

    def read(self) -> SpotReading | None:
        if isinstance(self.reading, Exception):
            raise self.reading
        return self.reading


class Signals:
    def observe(self) -> Observation:
        return Observation(queue_depth=0, arrival_rate=55)

    def demand_history(self, now: float) -> None:
        return None


def loop(port: ReadingPort, scaled: list[int], events: list[str]) -> InferenceController:
    effects = Effects(scale=scaled.append, write_status=lambda patch: None,
                      post_event=lambda t, r, m: events.append(r))  # fmt: skip
    c = InferenceController("ns", "w", Signals(), effects, None, NOW, 2)
    c.use_spot(SpotWiring(port=port, placements=lambda pools: {p: PLACES[p] for p in pools}))
    return c


SPOT_SPEC = AIWorkloadSpec.model_validate({
    "type": "Inference", "costAllocation": {"team": "t"},
    "inference": {"targetRef": {"name": "llm"}, "maxReplicas": 10, "capacityPerReplica": 10,
                  "forecast": {"enabled": False},
                  "spot": {"pools": ["a", "b"], "overprovision": {"byPreemptionRate": False}}},
})  # fmt: skip
VIEW = TargetView(replicas=2, ready=2, selector="app=llm", generation=1)


def test_the_loop_splits_its_decision_over_the_classes_instead_of_scaling_the_target() -> None:
    port, scaled, events = ReadingPort(SpotReading(target=TARGET)), list[int](), list[str]()
    asyncio.run(loop(port, scaled, events).tick(SPOT_SPEC, 1, VIEW, [], NOW))
    assert scaled == []  # never the plain scale of the target
    # The service runs the target's 1 replica; 6 are needed, a scale-up step allows 5:
    # the on-demand base of 1 and 4 spot, 2 per pool. Until they start nothing stands
    # in (an on-demand replica would start no sooner), so the target stays as it is.
    assert port.calls == [("child", "a", 2), ("child", "b", 2)]
    assert "ScaledUp" in events


def test_a_failed_or_empty_read_decides_nothing() -> None:
    for answer in (RuntimeError("API server away"), None):
        port, scaled, events = ReadingPort(answer), list[int](), list[str]()
        c = loop(port, scaled, events)
        try:
            result = asyncio.run(c.tick(SPOT_SPEC, 1, VIEW, [], NOW))
        except RuntimeError:
            result = None
        assert result is None or result.decision is None
        assert scaled == [] and port.calls == [] and events == []


def test_writes_the_operator_may_not_make_are_said_on_the_workload() -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from gpufinops.adapters.spot_children import SpotChildren, SpotWriteForbidden

    class Refusing:
        def create_namespaced_deployment(self, *args: Any, **kwargs: Any) -> None:
            raise ApiException(status=403, reason="Forbidden")

    children = SpotChildren(client.ApiClient(), "ns", "llm", Owner("llm", "uid-1"))
    children.apps = Refusing()  # type: ignore[assignment]
    try:
        children.put_child(SpotReading(target=TARGET), PLACES["a"], 2)
    except SpotWriteForbidden as refused:
        assert "rbac.spotInference=true" in str(refused)
    else:
        raise AssertionError("a 403 must be said as SpotWriteForbidden")

    class ForbiddenPort(ReadingPort):
        def put_child(self, reading: SpotReading, placement: PoolPlacement, replicas: int) -> None:
            raise SpotWriteForbidden("the operator may not create or update Deployments")

    port, scaled, events = ForbiddenPort(SpotReading(target=TARGET)), list[int](), list[str]()
    asyncio.run(loop(port, scaled, events).tick(SPOT_SPEC, 1, VIEW, [], NOW))
    assert "TargetForbidden" in events and scaled == []
