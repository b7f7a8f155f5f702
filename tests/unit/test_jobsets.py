"""A JobSet as a Training target: read in a Job's terms, placed as one (every replicated
Job's pod template), its child Jobs' pods counted through their controller, and its
spend booked to it."""

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gpufinops.adapters.allocations import GpuPod, through_jobsets
from gpufinops.adapters.jobs import JobView, PodView, jobset_view, placement_patch
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import load_config
from gpufinops.controllers.training import TrainingController, World

NOW = 1_790_000_000.0
CONFIG = load_config(None)
NOTICE = "aws-node-termination-handler/spot-itn"


def _pod_template(gpus: int, tolerations: list | None = None) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": gpus} if gpus else {}
    return {
        "metadata": {"labels": {"app": "t"}},
        "spec": {
            "nodeSelector": {"disk": "ssd"},
            "tolerations": tolerations or [{"key": "team", "operator": "Exists"}],
            "containers": [{"name": "c", "image": "x", "resources": {"limits": limits}}],
        },
    }


def jobset_body(suspend: bool = True) -> dict[str, Any]:
    """A driver (1 pod, no GPU) and 2 worker Jobs of 2 pods with 4 GPUs each."""
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": "js", "namespace": "ns", "uid": "js-uid", "generation": 1,
                     "resourceVersion": "41"},
        "spec": {"suspend": suspend, "replicatedJobs": [
            {"name": "driver", "template": {"spec": {"template": _pod_template(0)}}},
            {"name": "workers", "replicas": 2,
             "template": {"spec": {"parallelism": 2, "template": _pod_template(4)}}},
        ]},
    }  # fmt: skip


def test_a_jobset_reads_as_one_job_holding_all_its_pods() -> None:
    view = jobset_view(jobset_body())
    assert (view.kind, view.name, view.uid, view.suspended) == ("JobSet", "js", "js-uid", True)
    assert view.parallelism == 5  # 1 driver + 2 Jobs x 2 pods
    assert view.gpus_per_pod * view.parallelism == 16
    assert view.resource_version == "41" and len(view.replicated_jobs) == 2
    done = jobset_body()
    done["status"] = {
        "conditions": [{"type": "Completed", "status": "True"}],
        "replicatedJobsStatus": [{"name": "workers", "active": 1, "succeeded": 1}],
    }
    finished = jobset_view(done)
    assert finished.complete and not finished.failed_permanently
    assert (finished.active, finished.succeeded) == (1, 1)


def test_placement_rewrites_every_template_and_keeps_the_users_directives() -> None:
    spot, on_demand = CONFIG.pool("l4-spot"), CONFIG.pool("l4-on-demand")
    assert spot is not None and on_demand is not None
    view = jobset_view(jobset_body())
    patch = placement_patch(view, spot, None)
    assert patch["metadata"] == {"resourceVersion": "41"}  # never over a newer JobSet
    assert patch["spec"]["suspend"] is False
    for rjob in patch["spec"]["replicatedJobs"]:
        pod = rjob["template"]["spec"]["template"]
        assert pod["spec"]["nodeSelector"] == {"disk": "ssd", **spot.selector}
        assert pod["metadata"]["labels"]["gpufinops.dev/pool"] == "l4-spot"
        assert pod["metadata"]["labels"]["app"] == "t"
        assert {"key": "team", "operator": "Exists"} in pod["spec"]["tolerations"]
    assert [r["name"] for r in patch["spec"]["replicatedJobs"]] == ["driver", "workers"]
    assert patch["spec"]["replicatedJobs"][1]["replicas"] == 2
    # Moving on: the previous pool's keys and tolerations go, the user's stay.
    placed = jobset_body()
    placed["spec"]["replicatedJobs"] = patch["spec"]["replicatedJobs"]
    again = placement_patch(jobset_view(placed), on_demand, spot)
    for rjob in again["spec"]["replicatedJobs"]:
        pod_spec = rjob["template"]["spec"]["template"]["spec"]
        assert pod_spec["nodeSelector"] == {"disk": "ssd", **on_demand.selector}
        left = {(t.get("key"), t.get("effect")) for t in pod_spec["tolerations"]}
        assert ("team", None) in left
        assert not any(t in pod_spec["tolerations"] for t in spot.tolerations
                       if t not in on_demand.tolerations)  # fmt: skip


@dataclass
class FakeJobSets:
    """A JobSet store standing in for the API server (merge patches, as it applies them)."""

    body: dict[str, Any] = field(default_factory=jobset_body)
    patches: list[Mapping[str, Any]] = field(default_factory=list)

    def create(self, body: Mapping[str, Any]) -> None:
        raise AssertionError("a JobSet is never created")

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> int:
        self.patches.append(copy.deepcopy(dict(patch)))
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        assert expected in (None, self.body["metadata"]["resourceVersion"])
        self.body["spec"].update(copy.deepcopy(dict(patch["spec"])))
        meta = self.body["metadata"]
        meta["generation"] += 1
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return int(meta["generation"])

    def suspend(self, namespace: str, name: str) -> int:
        return self.patch(namespace, name, {"spec": {"suspend": True}})


class NoJobs:
    def create(self, body: Mapping[str, Any]) -> None:
        raise AssertionError("no Job is created for a JobSet")

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> int:
        raise AssertionError("a JobSet is never patched as a Job")

    def suspend(self, namespace: str, name: str) -> int:
        raise AssertionError("a JobSet is never suspended as a Job")


def _spec() -> AIWorkloadSpec:
    return AIWorkloadSpec.model_validate({
        "type": "Training", "costAllocation": {"team": "ml"},
        "nodePools": ["l4-spot", "l4-on-demand"],
        "training": {"jobRef": {"kind": "JobSet", "name": "js"}, "spot": {"maxInterruptions": 1},
                     "expectedDurationSeconds": 3600},
    })  # fmt: skip


def _pod(uid: str, node: str, job_uid: str) -> PodView:
    return PodView(uid=uid, name=uid, node=node, phase="Running", unschedulable=False,
                   disrupted=None, terminating=False, job_uid=job_uid)  # fmt: skip


def test_the_loop_places_a_jobset_counts_its_childrens_pods_and_falls_back_as_one() -> None:
    jobsets = FakeJobSets()
    status: dict[str, Any] = {}
    events: list[str] = []
    controller = TrainingController(
        "ns", "w", "aiw-uid", CONFIG, NoJobs(), lambda p: status.update(p),
        lambda t, r, m: events.append(r), jobsets=jobsets,
    )  # fmt: skip

    def world(now: float, pods: tuple[PodView, ...] = (), taints: Any = None) -> World:
        view: JobView = jobset_view(jobsets.body)
        return World(
            job=view, pods=pods, node_taints=taints or {"l4-spot-0": (), "l4-spot-1": ()},
            latest_status=status, generation=1, created_at=NOW, now=now,
            pod_owners=frozenset({"child-0", "child-1"}),
        )  # fmt: skip

    controller.tick(_spec(), world(NOW))
    assert jobsets.body["spec"]["suspend"] is False
    assert status["placement"]["pool"] == "l4-spot" and status["target"] == "JobSet/js"
    assert "SpotPlaced" in events
    # A pod of a child Job the JobSet controls is interrupted: counted; one of a Job it
    # does not control (a copied label, another JobSet) is not.
    pods = (_pod("a", "l4-spot-0", "child-1"), _pod("b", "l4-spot-0", "stranger"))
    controller.tick(_spec(), world(NOW + 60, pods, {"l4-spot-0": (NOTICE,), "l4-spot-1": ()}))
    assert status["placement"]["interruptions"] == 1
    # maxInterruptions reached: the whole JobSet is suspended, then moved to on-demand.
    assert jobsets.body["spec"]["suspend"] is True
    controller.tick(_spec(), world(NOW + 61))
    assert jobsets.body["spec"]["suspend"] is False
    for rjob in jobsets.body["spec"]["replicatedJobs"]:
        selector = rjob["template"]["spec"]["template"]["spec"]["nodeSelector"]
        assert selector == {"disk": "ssd", "gpufinops.dev/pool": "l4-on-demand"}
    assert status["placement"]["capacityType"] == "on-demand"
    assert "FellBackToOnDemand" in events


def test_a_child_jobs_pods_are_booked_to_its_jobset() -> None:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    pods = [GpuPod("ns", "js-workers-0-abcde", "n", 4.0, ("Job", "js-workers-0"), at, None),
            GpuPod("ns", "solo-x2x4z", "n", 1.0, ("Job", "solo"), at, None)]  # fmt: skip
    parents = {("ns", "js-workers-0"): "js"}
    booked = through_jobsets(pods, lambda ns, job: parents.get((ns, job)))
    assert [p.owner for p in booked] == [("JobSet", "js"), ("Job", "solo")]
