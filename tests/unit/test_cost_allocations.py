"""Pods → GPU allocations (owners, pools, held time) and the cost pass built on them."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpufinops.adapters.allocations import (
    GpuPod,
    Pools,
    allocations_at,
    gpu_pod,
    gpu_pod_record,
    held_seconds,
    owner_of,
    targets_of,
)
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import parse_config
from gpufinops.controllers.cost import CostAccountant, CostEffects, WorkloadView
from gpufinops.core.cost.accounting import CostLabels
from gpufinops.core.cost.budget import recorded_enforcement, replica_ceiling
from gpufinops.core.cost.unit_economics import ServedRates
from gpufinops.core.gpus import DEFAULT_GPU_RESOURCES

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
CONFIG = parse_config(
    {
        "nodePools": [
            {"name": "l4", "selector": {"pool": "l4"}, "instanceType": "g6.12xlarge",
             "capacityType": "spot", "gpusPerNode": 4, "hourlyPriceUSD": 8.0},
            {"name": "a100", "selector": {"pool": "a100"}, "instanceType": "p4d.24xlarge",
             "capacityType": "on-demand", "gpusPerNode": 8, "hourlyPriceUSD": 32.0},
        ]
    }
)  # fmt: skip
"""l4: $2 per GPU-hour (spot); a100: $4 per GPU-hour (on-demand)."""


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def pod(
    name: str,
    node: str = "l4-0",
    gpus: Any = 1,
    owner: tuple[str, str] | None = ("ReplicaSet", "llm-5d8f"),
    started: datetime | None = T0,
    phase: str = "Running",
    finished: datetime | None = None,
    labels: dict[str, str] | None = None,
    namespace: str = "ml",
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if started is not None and finished is None:
        state = {"running": {"startedAt": _iso(started)}}
    elif started is not None and finished is not None:
        state = {"terminated": {"startedAt": _iso(started), "finishedAt": _iso(finished)}}
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"pod-template-hash": "5d8f", **(labels or {})},
    }
    if owner is not None:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": gpus}}}],
        },
        "status": {"phase": phase, "containerStatuses": [{"state": state}] if state else []},
    }


def node(name: str, gpus: int) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}}}


POOLS = Pools.of(
    [(CONFIG.node_pools[0], node("l4-0", 4)), (CONFIG.node_pools[0], node("l4-1", 4)),
     (CONFIG.node_pools[1], node("a100-0", 8))]
)  # fmt: skip


# ------------------------------------------------------------------ owners and pods


@pytest.mark.parametrize(
    ("meta", "owner"),
    [
        ({"labels": {"pod-template-hash": "5d8f"},
          "ownerReferences": [{"kind": "ReplicaSet", "name": "llm-5d8f", "controller": True}]},
         ("Deployment", "llm")),
        ({"ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": True}]},
         ("ReplicaSet", "rs")),
        ({"ownerReferences": [{"kind": "Job", "name": "train", "controller": True}]},
         ("Job", "train")),
        ({"ownerReferences": [{"kind": "StatefulSet", "name": "nb", "controller": True}]},
         ("StatefulSet", "nb")),
        # Labels anyone creating a pod can copy are not ownership: a bare pod is nobody's.
        ({"labels": {"batch.kubernetes.io/job-name": "j"}}, None),
        ({"labels": {"job-name": "old"}}, None),
        ({"labels": {"batch.kubernetes.io/job-name": "j", "job-name": "j"},
          "ownerReferences": [{"kind": "Job", "name": "j", "controller": False}]}, None),
        ({"ownerReferences": [{"kind": "Node", "name": "n", "controller": False}]}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_owner_comes_from_the_pods_own_metadata(meta, owner) -> None:
    assert owner_of(meta) == owner


def test_only_pods_holding_gpus_on_a_node_are_indexed() -> None:
    assert gpu_pod_record(pod("a", gpus=0)) is None
    assert gpu_pod_record(pod("a", node="")) is None
    assert gpu_pod_record(pod("a", gpus="lots")) is None
    record = gpu_pod_record(pod("a", gpus=2))
    assert record is not None
    assert record["requests"] == {"nvidia.com/gpu": 2} and record["owner"] == ("Deployment", "llm")
    assert record["since"] == T0 and record["until"] is None
    assert gpu_pod(record).gpus == 2


def test_fractional_and_init_container_gpus_follow_the_manifest_rules() -> None:
    body = pod("a", gpus="0.5")
    body["spec"]["initContainers"] = [{"resources": {"limits": {"nvidia.com/gpu": 2}}}]
    assert gpu_pod(gpu_pod_record(body)).gpus == 2  # type: ignore[arg-type]
    assert gpu_pod(gpu_pod_record(pod("b", gpus="0.5"))).gpus == 0.5  # type: ignore[arg-type]


def test_held_time_uses_container_start_then_pod_start_time() -> None:
    body = pod("a", started=None)
    assert gpu_pod_record(body)["since"] is None  # type: ignore[index]
    body["status"]["startTime"] = _iso(T0)
    assert gpu_pod_record(body)["since"] == T0  # type: ignore[index]
    done = gpu_pod(gpu_pod_record(pod("b", phase="Succeeded", finished=T0 + timedelta(minutes=5))))  # type: ignore[arg-type]
    assert done.until == T0 + timedelta(minutes=5)
    assert held_seconds(done, T0 - timedelta(hours=1), T0 + timedelta(hours=1)) == 300
    assert held_seconds(done, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)) == 60
    assert held_seconds(done, T0 + timedelta(minutes=6), T0 + timedelta(minutes=9)) == 0


def _spec(doc: dict[str, Any]) -> AIWorkloadSpec:
    return AIWorkloadSpec.model_validate({"costAllocation": {"team": "t"}, **doc})


def test_targets_of_each_workload_type() -> None:
    inference = _spec({"type": "Inference",
                       "inference": {"targetRef": {"name": "llm"}, "maxReplicas": 2}})  # fmt: skip
    assert targets_of("w", inference) == [("Deployment", "llm")]
    ref = _spec({"type": "Training", "training": {"jobRef": {"name": "job"}}})
    assert targets_of("w", ref) == [("Job", "job")]
    template = _spec({"type": "Training", "training": {"jobTemplate": {"template": {}}}})
    assert targets_of("w", template) == [("Job", "w")]
    exp = _spec({"type": "Experiment",
                 "experiment": {"targetRef": {"kind": "StatefulSet", "name": "nb"}}})  # fmt: skip
    assert targets_of("w", exp) == [("StatefulSet", "nb")]


@pytest.mark.parametrize(
    ("ref", "owners"),
    [
        ({"kind": "StatefulSet", "name": "llm"}, [("StatefulSet", "llm")]),
        # A Rollout's ReplicaSets are named as a Deployment's: owner_of reports them so.
        ({"kind": "Rollout", "name": "llm"}, [("Deployment", "llm")]),
        ({"kind": "LeaderWorkerSet", "name": "llm"}, [("StatefulSet", "llm")]),
        ({"apiVersion": "x.io/v1", "kind": "Model", "name": "llm"}, [("Model", "llm")]),
    ],
)
def test_the_pods_of_any_scalable_target_are_found_by_owner(
    ref: dict[str, str], owners: list[tuple[str, str]]
) -> None:
    spec = _spec({"type": "Inference", "inference": {"targetRef": ref, "maxReplicas": 2}})
    assert targets_of("w", spec) == owners


def test_a_leaderworkersets_workers_are_charged_and_its_groups_are_its_replicas() -> None:
    """Leaders belong to the StatefulSet of the LWS' name, workers to ``<name>-<group>``;
    both are charged, and the replicas (for budget enforcement) are the groups."""
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects())
    spec = {"type": "Inference", "costAllocation": {"team": "t"},
            "inference": {"targetRef": {"kind": "LeaderWorkerSet", "name": "llm"},
                          "maxReplicas": 4},
            "budget": {"dailyUSD": 1.0, "enforcement": "Throttle"}}  # fmt: skip
    pods = [
        gpu_pod(gpu_pod_record(pod(name, owner=("StatefulSet", owner))))  # type: ignore[arg-type]
        for name, owner in [("llm-0", "llm"), ("llm-1", "llm"), ("llm-0-1", "llm-0"),
                            ("llm-1-1", "llm-1"), ("llm-large-0", "llm-large")]
    ]  # fmt: skip
    seen: list[tuple[str, str]] = []

    def replicas(ns: str, name: str) -> int | None:
        seen.append((ns, name))
        return 99  # a Deployment of that name: never read for another kind

    asyncio.run(acct.tick(T0 + timedelta(hours=1), [view(cluster, spec)], pods, POOLS, replicas))
    # 2 leaders + 2 workers on l4 for an hour, $2 each; llm-large's pod is not its own.
    assert cluster.status["cost"]["todayUSD"] == 8.0
    # Over budget: held at the groups running (two leaders), not at the pods (four).
    assert cluster.status["budget"]["maxReplicas"] == 2
    assert seen == []


def test_pools_map_nodes_and_sum_capacity() -> None:
    assert POOLS.capacity == {"l4": 8.0, "a100": 8.0}
    assert POOLS.by_node["a100-0"].name == "a100"
    where = (("a", "l4-0"), ("b", "l4-1"), ("c", "a100-0"), ("d", "cpu-0"))
    pods = [gpu_pod(gpu_pod_record(pod(n, node=nd))) for n, nd in where]  # type: ignore[arg-type]
    got = allocations_at(pods, POOLS, T0 + timedelta(seconds=1), "ml/w", CostLabels("t"))
    assert [(a.pool, a.gpus) for a in got] == [("a100", 1.0), ("l4", 2.0)]
    assert allocations_at(pods, POOLS, T0 - timedelta(seconds=1), "ml/w", CostLabels("t")) == []


# --------------------------------------------- GPU resources besides nvidia.com/gpu


def holding(name: str, node: str, limits: dict[str, Any]) -> dict[str, Any]:
    """A running pod whose one container's limits are ``limits``."""
    body = pod(name, node=node)
    body["spec"]["containers"][0]["resources"] = {"limits": limits}
    return body


def gpu_node(
    name: str, allocatable: dict[str, str], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "status": {"allocatable": allocatable}}  # fmt: skip


def priced(body: dict[str, Any], pools: Pools = POOLS) -> GpuPod:
    """The pod as the cost loop sees it: its GPUs counted on its node."""
    record = gpu_pod_record(body)
    assert record is not None
    return gpu_pod(record, DEFAULT_GPU_RESOURCES, pools.labels.get(record["node"]))


def test_a_mig_slice_is_charged_its_compute_share_of_a_gpu_of_its_pool() -> None:
    slices = priced(holding("m", "a100-0", {"nvidia.com/mig-3g.40gb": 2}))
    assert slices.gpus == pytest.approx(6 / 7)
    got = allocations_at([slices], POOLS, T0 + timedelta(seconds=1), "ml/w", CostLabels("t"))
    assert [(a.pool, a.gpus) for a in got] == [("a100", pytest.approx(6 / 7))]
    cluster = Cluster()
    run(CostAccountant(CONFIG, cluster.effects()), cluster, T0 + timedelta(hours=7), [slices])
    assert cluster.status["cost"]["todayUSD"] == pytest.approx(24.0)  # 6/7 GPU x $4 x 7 h


def test_a_time_sliced_replica_is_charged_one_over_the_replicas_of_its_node() -> None:
    import kopf

    from gpufinops.handlers.context import OperatorContext
    from gpufinops.handlers.cost import gpu_pods, held_gpus, pool_nodes

    memo = kopf.Memo(context=OperatorContext(config=CONFIG, api=None))  # type: ignore[arg-type]
    labels = {"pool": "l4", "nvidia.com/gpu.replicas": "4", "kubernetes.io/os": "linux"}
    status = {"allocatable": {"nvidia.com/gpu.shared": "16", "cpu": "48", "memory": "192Gi"}}
    nodes = asyncio.run(pool_nodes(name="l4-ts", labels=labels, status=status, memo=memo))
    # The node index keeps only what GPU counting reads.
    assert nodes == {
        "l4": {
            "metadata": {"name": "l4-ts", "labels": {"nvidia.com/gpu.replicas": "4"}},
            "status": {"allocatable": {"nvidia.com/gpu.shared": "16"}},
        }
    }
    shared = {"nvidia.com/gpu.shared": 1}
    records = [
        asyncio.run(gpu_pods(namespace="ml", body=holding(n, nd, shared), memo=memo))["ml"]
        for n, nd in (("a", "l4-ts"), ("b", "l4-0"))
    ]
    indexes = {"pool_nodes": {"l4": [nodes["l4"], node("l4-0", 4)]}, "gpu_pods": {"ml": records}}
    pods, pools = held_gpus(CONFIG, indexes)
    # On l4-ts each GPU is shared 4 ways; l4-0 says nothing of sharing: a whole GPU.
    assert {p.name: p.gpus for p in pods} == {"a": 0.25, "b": 1.0}
    assert pools.capacity == {"l4": 8.0}
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects())
    asyncio.run(acct.tick(T0 + timedelta(hours=2), [view(cluster)], pods, pools, lambda ns, n: 2))
    assert cluster.status["cost"]["todayUSD"] == 5.0  # (0.25 + 1) GPU x $2 x 2 h


def test_an_amd_pod_is_charged_one_gpu_per_device() -> None:
    amd = priced(holding("r", "l4-0", {"amd.com/gpu": 2}))
    assert amd.gpus == 2.0
    cluster = Cluster()
    run(CostAccountant(CONFIG, cluster.effects()), cluster, T0 + timedelta(hours=1), [amd])
    assert cluster.status["cost"]["todayUSD"] == 4.0  # 2 GPUs x $2 x 1 h


def test_companion_resources_and_claims_alone_are_not_charged() -> None:
    hami = holding("h", "l4-0", {"nvidia.com/gpumem": 4096, "nvidia.com/gpucores": 30})
    assert gpu_pod_record(hami) is None
    body = holding("c", "l4-0", {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 4096})
    body["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimName": "a100"}]
    assert priced(body).gpus == 1.0


def test_a_nodes_capacity_is_its_gpu_count_label_or_its_gpu_resources_worth() -> None:
    a100 = CONFIG.node_pools[1]
    nodes = [
        gpu_node("counted", {"nvidia.com/gpu.shared": "32"},
                 {"nvidia.com/gpu.count": "8", "nvidia.com/gpu.replicas": "4"}),  # 8
        gpu_node("mig", {"nvidia.com/mig-1g.10gb": "7"}),  # 7 slices of 1/7: 1
        gpu_node("shared", {"nvidia.com/gpu.shared": "16"},
                 {"nvidia.com/gpu.replicas": "4"}),  # 4
        gpu_node("amd", {"amd.com/gpu": "8", "cpu": "192"}),  # 8
    ]  # fmt: skip
    pools = Pools.of([(a100, n) for n in nodes])
    assert pools.capacity == {"a100": pytest.approx(21.0)}


def test_unallocated_cost_is_the_pools_physical_gpus_less_their_held_share() -> None:
    from gpufinops.adapters import operator_metrics as metrics

    l4 = CONFIG.node_pools[0]
    ts = gpu_node("ts-0", {"nvidia.com/gpu.shared": "16"}, {"nvidia.com/gpu.replicas": "4"})
    pools = Pools.of([(l4, ts)])
    shared = priced(holding("s", "ts-0", {"nvidia.com/gpu.shared": 1}), pools)
    counter = metrics.UNALLOCATED_COST.labels("l4", "spot")
    before = counter._value.get()
    acct = CostAccountant(CONFIG, Cluster().effects())
    for at in (T0 + timedelta(minutes=1), T0 + timedelta(hours=1, minutes=1)):
        asyncio.run(acct.tick(at, [], [shared], pools, lambda ns, n: None))
    assert counter._value.get() - before == pytest.approx(3.75 * 2.0)  # 4 GPUs - 1/4, $2/h


# ------------------------------------------------------------------------ cost pass


class Cluster:
    """Status as the API server would hold it, and what the pass posted."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self.writes = 0
        self.events: list[tuple[str, str]] = []
        self.sent: list[Any] = []
        self.fail = False

    def effects(self) -> CostEffects:
        def write(namespace: str, name: str, patch: dict[str, Any]) -> None:
            if self.fail:
                raise OSError("API server unreachable")
            self.writes += 1
            self.status = {**self.status, **patch}

        def event(ref: Any, type: str, reason: str, message: str) -> None:
            self.events.append((type, reason))

        def send(alerts: Any) -> int:
            self.sent.extend(alerts)
            return 0

        return CostEffects(write, event, send)


SPEC = {
    "type": "Inference",
    "costAllocation": {"team": "search", "model": "llama"},
    "inference": {"targetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 4},
    "budget": {"dailyUSD": 10.0, "enforcement": "Throttle"},
}


def view(cluster: Cluster, spec: dict[str, Any] = SPEC) -> WorkloadView:
    status = cluster.status
    ref = {"kind": "AIWorkload"}
    return WorkloadView("ml", "w", ref, spec, status.get("cost") or {}, status.get("budget") or {})


TWO_L4 = [gpu_pod(gpu_pod_record(pod(n)))  # type: ignore[arg-type]
          for n in ("a", "b")]  # fmt: skip
"""Two 1-GPU pods on l4 since T0: $4 per hour."""


def run(acct: CostAccountant, cluster: Cluster, at: datetime, pods: Any = TWO_L4) -> None:
    asyncio.run(acct.tick(at, [view(cluster)], pods, POOLS, lambda ns, n: 2))


def test_spend_accrues_from_pod_start_and_survives_a_restart_exactly() -> None:
    cluster = Cluster()
    first = CostAccountant(CONFIG, cluster.effects())
    run(first, cluster, T0 + timedelta(minutes=30))
    assert cluster.status["cost"]["todayUSD"] == 2.0
    assert cluster.status["cost"]["hourlyUSD"] == 4.0
    run(first, cluster, T0 + timedelta(minutes=45))
    assert cluster.status["cost"]["todayUSD"] == 3.0
    # A new operator (empty memory) continues from lastAccountedTime: the 45 minutes
    # already counted are not counted again, and the time it was down is not lost.
    second = CostAccountant(CONFIG, cluster.effects())
    run(second, cluster, T0 + timedelta(minutes=90))
    assert cluster.status["cost"]["todayUSD"] == 6.0
    run(second, cluster, T0 + timedelta(minutes=90))  # replaying the same instant
    assert cluster.status["cost"]["todayUSD"] == 6.0


def test_a_pod_starting_mid_interval_pays_from_its_start() -> None:
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects())
    run(acct, cluster, T0, pods=[])
    late = gpu_pod(gpu_pod_record(pod("c", node="a100-0", started=T0 + timedelta(minutes=30))))  # type: ignore[arg-type]
    run(acct, cluster, T0 + timedelta(hours=1), pods=[late])
    assert cluster.status["cost"]["todayUSD"] == 2.0  # half an hour of a $4/h GPU


def test_a_bare_pod_with_a_copied_job_name_label_is_not_charged_to_the_jobs_workload() -> None:
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects())
    training = {"type": "Training", "costAllocation": {"team": "research"},
                "training": {"jobRef": {"name": "train"}}}  # fmt: skip
    labels = {"batch.kubernetes.io/job-name": "train", "job-name": "train"}
    own = gpu_pod(gpu_pod_record(pod("own", owner=("Job", "train"), labels=labels)))  # type: ignore[arg-type]
    copied = gpu_pod(gpu_pod_record(pod("copied", owner=None, labels=labels)))  # type: ignore[arg-type]
    asyncio.run(acct.tick(T0 + timedelta(hours=1), [view(cluster, training)], [own, copied],
                          POOLS, lambda ns, n: None))  # fmt: skip
    assert cluster.status["cost"]["todayUSD"] == 2.0  # the Job's own pod: 1 GPU-hour at $2


def test_budget_alerts_fire_once_and_enforcement_is_written() -> None:
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects())
    run(acct, cluster, T0 + timedelta(hours=1, minutes=30))  # $6 of $10: 50 %
    assert cluster.events == [("Normal", "BudgetThresholdCrossed")]
    run(acct, cluster, T0 + timedelta(hours=3))  # $12: 80 % and exceeded
    assert cluster.events[1:] == [
        ("Normal", "BudgetThresholdCrossed"),
        ("Warning", "BudgetExceeded"),
    ]
    budget = cluster.status["budget"]
    assert budget["state"] == "Exceeded" and budget["enforcement"] == "Throttle"
    assert budget["maxReplicas"] == 2
    assert budget["alertsSent"] == ["day:2026-11-27:0.5", "day:2026-11-27:0.8",
                                    "day:2026-11-27:exceeded"]  # fmt: skip
    # A restarted operator reads the alerts already raised from status.
    run(CostAccountant(CONFIG, cluster.effects()), cluster, T0 + timedelta(hours=4))
    assert len(cluster.events) == 3
    assert [a.reason for a in cluster.sent] == [e[1] for e in cluster.events]
    # The next day starts with no memory, under budget ($2 by 00:30), enforcement lifts.
    run(acct, cluster, T0 + timedelta(hours=14, minutes=30))
    assert cluster.status["budget"]["enforcement"] == "None"
    assert cluster.status["budget"]["maxReplicas"] is None


def test_a_failed_write_is_retried_without_losing_or_doubling_spend() -> None:
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects())
    run(acct, cluster, T0 + timedelta(minutes=30))
    cluster.fail = True
    run(acct, cluster, T0 + timedelta(minutes=45))
    cluster.fail = False
    run(acct, cluster, T0 + timedelta(minutes=60))
    assert cluster.status["cost"]["todayUSD"] == 4.0


def test_an_idle_workload_is_not_rewritten_every_pass() -> None:
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects())
    run(acct, cluster, T0, pods=[])
    run(acct, cluster, T0 + timedelta(minutes=1), pods=[])
    assert cluster.writes == 1
    assert cluster.status["budget"]["state"] == "WithinBudget"


def test_an_invalid_spec_is_skipped() -> None:
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects())
    asyncio.run(acct.tick(T0, [view(cluster, {"type": "Inference"})], TWO_L4, POOLS,
                          lambda ns, n: None))  # fmt: skip
    assert cluster.writes == 0


@pytest.mark.parametrize(
    ("status", "has_budget", "current", "ceiling"),
    [
        (None, False, 3, None),
        ({"budget": {"enforcement": "None"}}, True, 3, None),
        ({"budget": {"enforcement": "Throttle"}}, True, 3, (3, "BudgetThrottle")),
        ({"budget": {"enforcement": "Throttle"}}, True, 0, (1, "BudgetThrottle")),
        ({"budget": {"enforcement": "Suspend"}}, True, 3, (0, "BudgetSuspend")),
        # A budget the cost loop has not decided yet (a workload just created, or deleted
        # and created again over a month already overspent): no growth until it has.
        (None, True, 3, (3, "BudgetPending")),
        ({"budget": {}}, True, 0, (1, "BudgetPending")),
        ({"budget": {"enforcement": "Unheard-of"}}, True, 2, (2, "BudgetPending")),
        ({"budget": {"enforcement": "Unheard-of"}}, False, 2, None),
        ({"budget": "not a mapping"}, True, 2, (2, "BudgetPending")),
    ],
)
def test_the_autoscaler_reads_the_budget_ceiling_from_status(
    status, has_budget, current, ceiling
) -> None:
    assert replica_ceiling(recorded_enforcement(status), has_budget, 1, current) == ceiling


def test_throttle_in_status_caps_the_autoscalers_scale_up() -> None:
    from tests.unit.test_inference_controller import DEP, NOW, Recorder, controller, spec

    from gpufinops.core.scaling.observation import Observation

    throttled = {"budget": {"enforcement": "Throttle"}}
    rec = Recorder()
    c = controller(Observation(queue_depth=0, arrival_rate=55), rec)  # would scale 2 → 6
    asyncio.run(c.tick(spec(), 1, DEP, [], NOW, latest_status=throttled))
    assert rec.scaled == []
    assert rec.statuses[-1]["replicas"]["desired"] == 2
    assert "budget exceeded, BudgetThrottle" in rec.statuses[-1]["lastDecision"]["reason"]
    # The budget lifts (a new day): scaling resumes.
    asyncio.run(c.tick(spec(), 1, DEP, [], NOW + 15, latest_status={"budget": {}}))
    assert rec.scaled == [6]


def test_a_budget_not_yet_decided_holds_the_replicas_until_the_cost_loop_has() -> None:
    """Created (again) with a budget, before the cost loop's first pass on it: the month
    may already be overspent (the ledger outlives the object), so nothing grows yet."""
    from tests.unit.test_inference_controller import DEP, NOW, Recorder, controller, spec

    from gpufinops.core.scaling.observation import Observation

    budgeted = spec(budget={"monthlyUSD": 100, "enforcement": "Throttle"})
    rec = Recorder()
    c = controller(Observation(queue_depth=0, arrival_rate=55), rec)  # would scale 2 → 6
    asyncio.run(c.tick(budgeted, 1, DEP, [], NOW, latest_status={}))
    assert rec.scaled == []
    assert "BudgetPending" in rec.statuses[-1]["lastDecision"]["reason"]
    # The cost loop has decided (within budget): scaling goes on.
    decided = {"budget": {"enforcement": "None"}}
    asyncio.run(c.tick(budgeted, 1, DEP, [], NOW + 15, latest_status=decided))
    assert rec.scaled == [6]


def test_cost_per_million_tokens_is_the_spend_rate_over_the_token_rate() -> None:
    from gpufinops.adapters import operator_metrics as metrics
    from gpufinops.handlers.cost import INPUT_TOKENS_BY_POD

    assert INPUT_TOKENS_BY_POD.startswith('sum by (namespace, pod) (rate({__name__=~"')
    assert "vllm:prompt_tokens_total" in INPUT_TOKENS_BY_POD and "[5m]))" in INPUT_TOKENS_BY_POD

    cluster = Cluster()
    # 200 input and 200 output tokens an hour, 10 requests an hour.
    served: dict[str, ServedRates | None] = {"now": ServedRates(200 / 3600, 200 / 3600, 10 / 3600)}
    busy: dict[str, float | None] = {"percent": 25.0}
    acct = CostAccountant(
        CONFIG, cluster.effects(), lambda ns, spec: served["now"], None,
        lambda ns, kind, name: busy["percent"],
    )  # fmt: skip
    run(acct, cluster, T0 + timedelta(minutes=1))

    def value(gauge: Any, basis: str = "allocation") -> float:
        return float(gauge.labels("ml", "w", "llama", basis)._value.get())

    # $4/h for 400 tokens/h; an output token charged 4 input tokens: $4 over 1,000
    # weighted tokens, so $4,000 per million input and $16,000 per million output.
    assert value(metrics.COST_PER_MILLION_TOKENS) == pytest.approx(4.0 / 400 * 1e6)
    assert value(metrics.COST_PER_MILLION_INPUT_TOKENS) == pytest.approx(4000.0)
    assert value(metrics.COST_PER_MILLION_OUTPUT_TOKENS) == pytest.approx(16000.0)
    assert value(metrics.COST_PER_REQUEST) == pytest.approx(0.4)
    # GPUs busy 25 %: the usage basis.
    assert value(metrics.COST_PER_MILLION_TOKENS, "usage") == pytest.approx(4.0 / 400 * 1e6 / 4)
    assert value(metrics.COST_PER_REQUEST, "usage") == pytest.approx(0.1)
    busy["percent"] = None  # no DCGM: the usage basis goes, allocation stays
    run(acct, cluster, T0 + timedelta(minutes=1, seconds=30))
    bases = {
        s.labels["basis"]
        for s in metrics.COST_PER_MILLION_TOKENS.collect()[0].samples
        if s.labels.get("workload") == "w"
    }
    assert bases == {"allocation"}
    served["now"] = None  # Prometheus unreadable: the series go, no stale figure stays
    run(acct, cluster, T0 + timedelta(minutes=2))
    for unit in metrics.UNIT_COSTS:
        samples = unit.collect()[0].samples
        assert not [s for s in samples if s.labels.get("workload") == "w"]


def test_a_restart_does_not_rewrite_an_unchanged_idle_workload() -> None:
    cluster = Cluster()
    run(CostAccountant(CONFIG, cluster.effects()), cluster, T0, pods=[])
    assert cluster.writes == 1
    # A new operator reads the same status back (nulls dropped, as a merge patch stores
    # them): nothing to say, nothing written.
    cluster.status = {
        key: {k: v for k, v in value.items() if v is not None}
        for key, value in cluster.status.items()
    }
    run(CostAccountant(CONFIG, cluster.effects()), cluster, T0 + timedelta(minutes=1), pods=[])
    assert cluster.writes == 1
    # Spend is still written at once.
    run(CostAccountant(CONFIG, cluster.effects()), cluster, T0 + timedelta(minutes=2))
    assert cluster.writes == 2


def test_the_cost_loop_handlers_run_only_while_the_loop_is_not_running() -> None:
    import kopf

    from gpufinops.handlers.context import OperatorContext
    from gpufinops.handlers.cost import _loop_missing

    async def scenario() -> tuple[bool, bool, bool]:
        context = OperatorContext(config=CONFIG, api=None)  # type: ignore[arg-type]
        memo = kopf.Memo(context=context)
        before = _loop_missing(memo)
        task = asyncio.get_running_loop().create_future()
        context.shared.cost_task = task  # type: ignore[assignment]
        running = _loop_missing(memo)
        task.set_result(None)
        return before, running, _loop_missing(memo)

    assert asyncio.run(scenario()) == (True, False, True)


def test_status_no_accounting_could_have_written_is_not_trusted() -> None:
    # Written by whoever may write aiworkloads/status: an accounting instant in 2099
    # would freeze spend until then, negative totals would pay for later spend.
    cluster = Cluster()
    run(CostAccountant(CONFIG, cluster.effects()), cluster, T0 + timedelta(minutes=30))
    forged = {**cluster.status["cost"], "lastAccountedTime": "2099-01-01T00:00:00Z",
              "todayUSD": -1000.0, "monthToDateUSD": -1000.0}  # fmt: skip
    cluster.status = {**cluster.status, "cost": forged}
    restarted = CostAccountant(CONFIG, cluster.effects())
    run(restarted, cluster, T0 + timedelta(minutes=60))
    cost = cluster.status["cost"]
    assert cost["todayUSD"] >= 0 and cost["monthToDateUSD"] >= 0
    assert cost["lastAccountedTime"].startswith(str((T0 + timedelta(minutes=60)).year))
    run(restarted, cluster, T0 + timedelta(minutes=90))
    assert cluster.status["cost"]["todayUSD"] > cost["todayUSD"], "spend accrues again"
    assert [r for _, r in cluster.events].count("CostStatusCorrected") == 1
