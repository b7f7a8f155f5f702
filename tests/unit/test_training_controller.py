"""The Training placement loop over fake Jobs: create suspended, place on spot, count
each interruption once, fall back to on-demand after maxInterruptions, resume from
status after a restart, never act on a Job view older than its own last change.
Ownership: a Job of the workload's name that it did not create is never adopted,
and only pods the Job controls (their ownerReference, not a label) count."""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufinops.adapters.jobs import (
    JobActions,
    JobNameTaken,
    JobView,
    PodView,
    build_job,
    controller_ref,
    job_view,
    pod_view,
)
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import load_config
from gpufinops.controllers.training import TrainingController, World
from gpufinops.handlers.training import job_pods

NOW = 1_790_000_000.0
CONFIG = load_config(None)


def spec(**training: Any) -> AIWorkloadSpec:
    body = {
        "jobTemplate": {
            "parallelism": 1,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "t", "image": "x", "resources": {"limits": {"nvidia.com/gpu": 4}}}
                    ]
                }
            },
        },
        "spot": {"maxInterruptions": 2},
        "expectedDurationSeconds": 3600,
        **training,
    }
    return AIWorkloadSpec.model_validate(
        {
            "type": "Training",
            "costAllocation": {"team": "ml"},
            "nodePools": ["l4-spot", "l4-on-demand"],
            "training": body,
        }
    )


@dataclass
class FakeJobs:
    """An in-memory Job store standing in for the API server."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    patches: list[Mapping[str, Any]] = field(default_factory=list)

    def create(self, body: Mapping[str, Any]) -> None:
        """As ``JobActions.create``: a Job of the name that is not this owner's is taken."""
        name = body["metadata"]["name"]
        if name in self.bodies:
            ours = controller_ref(body["metadata"], "AIWorkload", "gpufinops.dev")
            theirs = controller_ref(self.bodies[name]["metadata"], "AIWorkload", "gpufinops.dev")
            if ours and theirs and ours["uid"] == theirs["uid"]:
                return
            raise JobNameTaken(f"Job ns/{name} already exists")
        created = {**body, "metadata": {**body["metadata"], "uid": "job-uid", "generation": 1}}
        self.bodies[name] = created

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> int:
        self.patches.append(patch)
        job = self.bodies[name]
        job["spec"]["suspend"] = patch["spec"]["suspend"]
        tmpl = patch["spec"].get("template")
        if tmpl:
            pod_spec = job["spec"]["template"]["spec"]
            selector = {**pod_spec.get("nodeSelector", {}), **tmpl["spec"]["nodeSelector"]}
            pod_spec["nodeSelector"] = {k: v for k, v in selector.items() if v is not None}
        job["metadata"]["generation"] += 1
        return int(job["metadata"]["generation"])

    def suspend(self, namespace: str, name: str) -> int:
        return self.patch(namespace, name, {"spec": {"suspend": True}})

    def view(self, name: str = "train") -> JobView | None:
        body = self.bodies.get(name)
        return job_view(body) if body else None


@dataclass
class Harness:
    jobs: FakeJobs = field(default_factory=FakeJobs)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def controller(self) -> TrainingController:
        return TrainingController(
            "ns", "train", "aiw-uid", CONFIG, self.jobs, self.write, self.post
        )

    def write(self, patch: dict[str, Any]) -> None:
        self.status = {**self.status, **patch}

    def post(self, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.events]

    def world(self, now: float, pods: tuple[PodView, ...] = (), taints=None) -> World:
        """What the indexes show at ``now``. Pods built without a Job uid (as other modules
        build them) are the current Job's; a World built by hand keeps its pods as given."""
        nodes = taints if taints is not None else {"l4-spot-0": (), "l4-on-demand-0": ()}
        job = self.jobs.view()
        if job is not None:
            pods = tuple(p if p.job_uid else replace(p, job_uid=job.uid) for p in pods)
        return World(
            job=job, pods=pods, node_taints=nodes,
            latest_status=self.status, generation=1, created_at=NOW, now=now,
        )  # fmt: skip

    def ready(self) -> dict[str, Any]:
        return dict(next(c for c in self.status["conditions"] if c["type"] == "Ready"))


def pod(uid: str, node: str | None, phase: str = "Running", **kw: Any) -> PodView:
    kw.setdefault("job_uid", "job-uid")
    return PodView(uid=uid, name=uid, node=node, phase=phase, unschedulable=False,
                   disrupted=None, terminating=False, **kw)  # fmt: skip


def test_creates_the_job_suspended_with_a_disruption_tolerant_failure_policy() -> None:
    h = Harness()
    h.controller().tick(spec(), h.world(NOW))
    job = h.jobs.bodies["train"]
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["ownerReferences"][0]["uid"] == "aiw-uid"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "Ignore"
    assert rules[0]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert "JobCreated" in h.reasons()


def test_places_on_spot_then_falls_back_after_max_interruptions() -> None:
    h = Harness()
    c = h.controller()
    c.tick(spec(), h.world(NOW))
    c.tick(spec(), h.world(NOW + 1))
    job = h.jobs.bodies["train"]
    assert job["spec"]["suspend"] is False
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"gpufinops.dev/pool": "l4-spot"}
    assert h.status["placement"]["pool"] == "l4-spot"
    assert h.status["placement"]["phase"] == "Running"
    assert "SpotPlaced" in h.reasons()

    notice = {"l4-spot-0": ("aws-node-termination-handler/spot-itn",), "l4-spot-1": ()}
    c.tick(spec(), h.world(NOW + 60, (pod("p1", "l4-spot-0"),), notice))
    # The same pod seen again is not a second interruption.
    c.tick(spec(), h.world(NOW + 61, (pod("p1", "l4-spot-0"),), notice))
    assert h.status["placement"]["interruptions"] == 1
    assert h.status["placement"]["interruptionsByReason"] == {"SpotInterruptionNotice": 1}
    assert h.jobs.bodies["train"]["spec"]["suspend"] is False

    # A replacement pod whose node vanished: the second interruption reaches the limit.
    c.tick(spec(), h.world(NOW + 120, (pod("p2", "l4-spot-2"),), {"l4-spot-1": ()}))
    placement = h.status["placement"]
    assert placement["interruptions"] == 2
    assert placement["interruptionsByReason"]["NodeDeleted"] == 1
    assert placement["phase"] == "FallingBack"
    assert placement["fallbackReason"] == "MaxInterruptions"
    assert h.jobs.bodies["train"]["spec"]["suspend"] is True
    assert "FallingBackToOnDemand" in h.reasons()

    # Pods still stopping: the template is not touched yet.
    h.jobs.bodies["train"]["status"] = {"active": 1, "startTime": "2026-01-01T00:00:00Z"}
    patches = len(h.jobs.patches)
    c.tick(spec(), h.world(NOW + 121))
    assert len(h.jobs.patches) == patches
    h.jobs.bodies["train"]["status"] = {}
    c.tick(spec(), h.world(NOW + 130))
    job = h.jobs.bodies["train"]
    assert job["spec"]["suspend"] is False
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"gpufinops.dev/pool": "l4-on-demand"}
    assert h.status["placement"]["capacityType"] == "on-demand"
    assert h.status["placement"]["onDemandOnly"] is True
    assert "FellBackToOnDemand" in h.reasons()


def test_a_restarted_loop_resumes_a_half_done_fallback_from_status() -> None:
    h = Harness()
    c = h.controller()
    c.tick(spec(), h.world(NOW))
    c.tick(spec(), h.world(NOW + 1))
    gone = (pod("p1", "l4-spot-9"),)  # its node was deleted
    c.tick(spec(spot={"maxInterruptions": 1}), h.world(NOW + 2, gone))
    assert h.status["placement"]["phase"] == "FallingBack"
    # A new process (fresh controller) reads status and finishes the move exactly once.
    fresh = h.controller()
    fresh.tick(spec(spot={"maxInterruptions": 1}), h.world(NOW + 3))
    fresh.tick(spec(spot={"maxInterruptions": 1}), h.world(NOW + 4))
    assert h.status["placement"]["pool"] == "l4-on-demand"
    assert h.reasons().count("FellBackToOnDemand") == 1
    assert h.status["placement"]["attempts"] == 2


def test_a_stale_job_view_is_never_acted_on() -> None:
    h = Harness()
    c = h.controller()
    c.tick(spec(), h.world(NOW))
    stale = h.jobs.view()
    c.tick(spec(), h.world(NOW + 1))  # places: the Job's generation moves on
    patches = len(h.jobs.patches)
    assert stale is not None
    world = replace(h.world(NOW + 2), job=stale)  # the index has not caught up
    c.tick(spec(), world)
    assert len(h.jobs.patches) == patches
    assert h.reasons().count("SpotPlaced") == 1


def test_a_user_job_that_was_not_created_suspended_is_reported_not_moved() -> None:
    h = Harness()
    h.jobs.bodies["mine"] = {
        "metadata": {"name": "mine", "uid": "u", "generation": 1},
        "spec": {"suspend": False, "template": {"spec": {"containers": []}}},
    }
    s = AIWorkloadSpec.model_validate(
        {"type": "Training", "costAllocation": {"team": "ml"}, "nodePools": ["l4-spot"],
         "training": {"jobRef": {"name": "mine"}}}
    )  # fmt: skip
    world = replace(h.world(NOW), job=h.jobs.view("mine"))
    h.controller().tick(s, world)
    assert h.jobs.patches == []
    ready = next(c for c in h.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "JobNotSuspended"
    assert "spec.suspend: true" in ready["message"]


def test_fallback_disabled_only_reports() -> None:
    h = Harness()
    c = h.controller()
    s = spec(spot={"maxInterruptions": 1, "fallbackToOnDemand": False})
    c.tick(s, h.world(NOW))
    c.tick(s, h.world(NOW + 1))
    disrupted = replace(pod("p1", "l4-spot-0"), disrupted="EvictionByEvictionAPI")
    c.tick(s, h.world(NOW + 2, (disrupted,)))
    assert h.status["placement"]["interruptions"] == 1
    assert h.jobs.bodies["train"]["spec"]["suspend"] is False
    assert h.status["placement"]["pool"] == "l4-spot"
    assert "FallbackDisabled" in h.reasons()


def test_a_budget_suspension_survives_a_restart_and_is_lifted_exactly_once() -> None:
    h = Harness()
    c = h.controller()
    c.tick(spec(), h.world(NOW))
    c.tick(spec(), h.world(NOW + 1))
    assert h.status["placement"]["phase"] == "Running"
    h.status["budget"] = {"enforcement": "Suspend"}
    c.tick(spec(), h.world(NOW + 2))
    assert h.jobs.bodies["train"]["spec"]["suspend"] is True
    assert h.status["placement"]["phase"] == "Suspended"
    assert h.reasons().count("BudgetSuspended") == 1
    # Killed here. A new process sees the budget still exceeded: nothing moves.
    fresh = h.controller()
    fresh.tick(spec(), h.world(NOW + 3))
    assert h.reasons().count("BudgetSuspended") == 1
    assert h.jobs.bodies["train"]["spec"]["suspend"] is True
    # The new month: enforcement lifted. The Job is placed again, once.
    h.status["budget"] = {"enforcement": "None"}
    fresh.tick(spec(), h.world(NOW + 4))
    fresh.tick(spec(), h.world(NOW + 5))
    assert h.jobs.bodies["train"]["spec"]["suspend"] is False
    assert h.status["placement"]["phase"] == "Running"
    assert h.status["placement"]["attempts"] == 2
    assert h.reasons().count("SpotPlaced") == 2


# ------------------------------------------------------------------ ownership


def foreign_job(owner_uid: str | None) -> dict[str, Any]:
    """A suspended Job named like the workload, made by hand (no owner) or for another
    AIWorkload of the same name (an earlier one, still being deleted)."""
    meta: dict[str, Any] = {"name": "train", "namespace": "ns", "uid": "theirs", "generation": 1}
    if owner_uid is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "gpufinops.dev/v1alpha1",
                "kind": "AIWorkload",
                "name": "train",
                "uid": owner_uid,
                "controller": True,
            }
        ]
    spec_ = {"suspend": True, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec_}


class FakeObjects:
    """The generic object API of ``JobActions``: creating answers 409 (a Job of the name
    exists), listing by name returns ``existing``."""

    def __init__(self, existing: dict[str, Any] | None) -> None:
        self.existing = existing
        self.calls: list[str] = []

    def create_namespaced_custom_object(self, *args: Any) -> Any:
        self.calls.append("create")
        raise ApiException(status=409, reason="AlreadyExists")

    def list_namespaced_custom_object(self, *args: Any, field_selector: str = "") -> Any:
        self.calls.append(f"list {field_selector}")
        return {"items": [self.existing] if self.existing else []}

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"JobActions called {name} on a Job it does not own")


@pytest.mark.parametrize("owner_uid", [None, "an-earlier-aiw-uid"])
def test_a_name_collision_with_a_job_the_workload_did_not_create_is_an_error(
    owner_uid: str | None,
) -> None:
    actions = JobActions(client.ApiClient())
    actions.objects = FakeObjects(foreign_job(owner_uid))  # type: ignore[assignment]
    body, _ = build_job("train", "ns", "aiw-uid", spec().training.job_template)  # type: ignore[union-attr]
    with pytest.raises(JobNameTaken, match=r"ns/train .*rename the AIWorkload or delete the Job"):
        actions.create(body)
    assert actions.objects.calls == ["create", "list metadata.name=train"]  # type: ignore[attr-defined]


def test_a_conflict_with_the_workloads_own_job_is_a_previous_attempt() -> None:
    actions = JobActions(client.ApiClient())
    mine, _ = build_job("train", "ns", "aiw-uid", spec().training.job_template)  # type: ignore[union-attr]
    actions.objects = FakeObjects(mine)  # type: ignore[assignment]
    actions.create(mine)  # no error: created before, the index will show it


@pytest.mark.parametrize("owner_uid", [None, "an-earlier-aiw-uid"])
def test_a_foreign_job_of_the_workloads_name_is_reported_and_never_touched(
    owner_uid: str | None,
) -> None:
    h = Harness()
    h.jobs.bodies["train"] = foreign_job(owner_uid)
    c = h.controller()
    for t in range(3):
        c.tick(spec(), h.world(NOW + t))
    assert h.jobs.patches == []
    assert h.jobs.bodies["train"] == foreign_job(owner_uid)
    ready = h.ready()
    assert (ready["status"], ready["reason"]) == ("False", "JobNameTaken")
    assert "rename the AIWorkload or delete the Job" in ready["message"]
    assert h.reasons() == ["JobNameTaken"]  # one Warning, not one per tick
    assert h.status["placement"]["pool"] is None and h.status["placement"]["attempts"] == 0


def test_a_collision_the_index_has_not_shown_yet_is_reported_the_same_way() -> None:
    h = Harness()
    h.jobs.bodies["train"] = foreign_job(None)
    c = h.controller()
    lagging = replace(h.world(NOW), job=None)  # the Job exists; the watch has not said so
    c.tick(spec(), lagging)
    assert h.ready()["reason"] == "JobNameTaken"
    c.tick(spec(), h.world(NOW + 1))
    assert h.ready()["reason"] == "JobNameTaken"
    assert h.jobs.patches == [] and h.reasons() == ["JobNameTaken"]


def test_a_job_recreated_by_someone_else_under_the_name_is_no_stale_view_of_ours() -> None:
    h = Harness()
    c = h.controller()
    c.tick(spec(), h.world(NOW))
    c.tick(spec(), h.world(NOW + 1))  # placed: our Job is at generation 2
    assert h.jobs.bodies["train"]["metadata"]["generation"] == 2
    h.jobs.bodies["train"] = foreign_job(None)  # deleted, and made again by hand (generation 1)
    c.tick(spec(), h.world(NOW + 2))
    assert h.ready()["reason"] == "JobNameTaken"
    assert h.jobs.bodies["train"] == foreign_job(None)


def pod_body(uid: str, owner: tuple[str, str] | None, **status: Any) -> dict[str, Any]:
    """A running pod on a spot node carrying the Job controller's labels for Job ``train``;
    ``owner``: (name, uid) of the Job in its controller ownerReference, if any."""
    meta: dict[str, Any] = {
        "name": uid, "namespace": "ns", "uid": uid,
        "labels": {"batch.kubernetes.io/job-name": "train", "job-name": "train"},
    }  # fmt: skip
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": owner[0],
                                    "uid": owner[1], "controller": True}]  # fmt: skip
    return {"metadata": meta, "spec": {"nodeName": "l4-spot-0"},
            "status": {"phase": "Running", **status}}  # fmt: skip


def indexed(body: dict[str, Any]) -> dict[Any, PodView]:
    meta = body["metadata"]
    return dict(asyncio.run(job_pods(namespace="ns", name=meta["name"], meta=meta,
                                     labels=meta["labels"], body=body)))  # fmt: skip


def test_pods_are_indexed_under_the_job_that_controls_them_never_under_a_label() -> None:
    assert indexed(pod_body("copied", None)) == {}
    own = indexed(pod_body("p1", ("train", "job-uid")))
    assert list(own) == [("ns", "train")] and own["ns", "train"].job_uid == "job-uid"
    # A Job controls it, whatever its labels say: it is that Job's pod.
    other = indexed(pod_body("p2", ("other", "other-uid")))
    assert list(other) == [("ns", "other")]


DISRUPTED = {"conditions": [{"type": "DisruptionTarget", "status": "True",
                             "reason": "EvictionByEvictionAPI"}]}  # fmt: skip


def _placed_on_spot() -> tuple[Harness, TrainingController]:
    h = Harness()
    c = h.controller()
    c.tick(spec(), h.world(NOW))
    c.tick(spec(), h.world(NOW + 1))
    assert h.status["placement"]["pool"] == "l4-spot"
    return h, c


@pytest.mark.parametrize(
    "owner", [None, ("train", "an-earlier-job-uid")], ids=["copied-label", "earlier-job"]
)
def test_a_pod_the_job_does_not_control_is_no_interruption(
    owner: tuple[str, str] | None,
) -> None:
    # Nor spend: the cost loop charges pods by the same controller reference
    # (test_cost_allocations: a bare pod with a copied job-name label is not charged).
    h, c = _placed_on_spot()
    stranger = pod_view(pod_body("stranger", owner, **DISRUPTED))
    for t in (60, 120, 3600):
        c.tick(spec(), replace(h.world(NOW + t), pods=(stranger,)))
    placement = h.status["placement"]
    assert placement.get("interruptions", 0) == 0 and placement["phase"] == "Running"
    assert "SpotInterrupted" not in h.reasons()
    # The Job's own pod, seen the same way, counts.
    own = pod_view(pod_body("own", ("train", "job-uid"), **DISRUPTED))
    c.tick(spec(), replace(h.world(NOW + 7200), pods=(stranger, own)))
    assert h.status["placement"]["interruptions"] == 1


def kueue_job(suspended: bool, node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [{"name": "t", "image": "x", "resources": {"limits": {"nvidia.com/gpu": 4}}}]
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "metadata": {"name": "queued", "uid": "kq", "generation": 1,
                     "labels": {"kueue.x-k8s.io/queue-name": "team-a"}},
        "spec": {"suspend": suspended, "template": {"spec": pod_spec}},
    }  # fmt: skip


KUEUE_SPEC = AIWorkloadSpec.model_validate(
    {"type": "Training", "costAllocation": {"team": "ml"},
     "nodePools": ["l4-spot", "l4-on-demand"], "training": {"jobRef": {"name": "queued"}}}
)  # fmt: skip


def test_a_job_kueue_admits_is_never_unsuspended_or_placed_by_the_operator() -> None:
    h = Harness()
    h.jobs.bodies["queued"] = kueue_job(suspended=True)
    c = h.controller()
    for i in range(5):
        c.tick(KUEUE_SPEC, replace(h.world(NOW + 15 * i), job=h.jobs.view("queued")))
    assert h.jobs.patches == []  # no unsuspend, no nodeSelector: admission is Kueue's
    assert h.ready()["reason"] == "WaitingForKueue"
    assert "queue team-a" in h.ready()["message"]
    assert h.reasons().count("ManagedByKueue") == 1
    # Kueue admits it onto the spot flavor: the operator reports where and what it costs.
    h.jobs.bodies["queued"] = kueue_job(False, {"gpufinops.dev/pool": "l4-spot"})
    job = h.jobs.view("queued")
    running = (pod("p1", "l4-spot-0", job_uid="kq"),)
    c.tick(KUEUE_SPEC, replace(h.world(NOW + 100, running), job=job))
    c.tick(KUEUE_SPEC, replace(h.world(NOW + 100 + 3600, running), job=job))
    assert h.jobs.patches == []
    assert h.ready()["reason"] == "AdmittedByKueue"
    placement = h.status["placement"]
    assert placement["pool"] == "l4-spot" and placement["phase"] == "Running"


def test_a_budget_over_a_kueue_job_is_reported_not_enforced() -> None:
    h = Harness()
    h.jobs.bodies["queued"] = kueue_job(False, {"gpufinops.dev/pool": "l4-spot"})
    h.status = {"budget": {"enforcement": "Suspend"}}
    c = h.controller()
    c.tick(KUEUE_SPEC, replace(h.world(NOW), job=h.jobs.view("queued")))
    c.tick(KUEUE_SPEC, replace(h.world(NOW + 15), job=h.jobs.view("queued")))
    assert h.jobs.patches == []  # suspending it would fight Kueue's admission
    assert h.ready()["reason"] == "BudgetExceeded"
    assert h.reasons().count("BudgetNotEnforced") == 1


def test_a_job_template_with_a_kueue_queue_is_created_labelled_and_left_to_kueue() -> None:
    h = Harness()
    c = h.controller()
    s = spec(kueueQueueName="team-a")
    c.tick(s, h.world(NOW))
    body = h.jobs.bodies["train"]
    assert body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert body["spec"]["suspend"] is True
    assert "Kueue admits it (queue team-a)" in dict((r, m) for _, r, m in h.events)["JobCreated"]
    for i in range(1, 4):
        c.tick(s, h.world(NOW + 15 * i))
    assert h.jobs.patches == []  # never placed nor unsuspended: Kueue admits it
    assert h.ready()["reason"] == "WaitingForKueue"


def test_a_workload_with_a_budget_is_placed_only_once_its_budget_is_decided() -> None:
    # Deleted and created again over the Job its budget had suspended: the new object's
    # status has no budget decision yet, and the Job must not run before it has one.
    h = Harness()
    s = AIWorkloadSpec.model_validate(
        {"type": "Training", "costAllocation": {"team": "ml"}, "nodePools": ["l4-spot"],
         "budget": {"monthlyUSD": 10, "enforcement": "Suspend"},
         "training": {"jobRef": {"name": "queued"}}}
    )  # fmt: skip
    h.jobs.bodies["queued"] = {
        "metadata": {"name": "queued", "uid": "q", "generation": 1},
        "spec": {"suspend": True, "template": {"spec": {"containers": []}}},
    }
    c = h.controller()
    c.tick(s, replace(h.world(NOW), job=h.jobs.view("queued")))
    assert h.jobs.patches == []
    assert h.ready()["reason"] == "WaitingForBudget"
    h.status["budget"] = {"enforcement": "Suspend"}
    c.tick(s, replace(h.world(NOW + 15), job=h.jobs.view("queued")))
    assert h.jobs.patches == [] and h.ready()["reason"] == "BudgetExceeded"
    h.status["budget"] = {"enforcement": "None"}
    c.tick(s, replace(h.world(NOW + 30), job=h.jobs.view("queued")))
    assert h.jobs.patches and h.jobs.patches[-1]["spec"]["suspend"] is False  # placed now


def test_spend_is_read_from_the_cost_ledger_not_counted_again() -> None:
    # One ledger: the cost loop's status.cost.totalUSD is what the Job cost; the
    # placement loop writes no spend of its own and reports the ledger's when it ends.
    h = Harness()
    c = h.controller()
    c.tick(spec(), h.world(NOW))
    c.tick(spec(), h.world(NOW + 1))
    c.tick(spec(), h.world(NOW + 3600, (pod("p1", "l4-spot-0"),)))
    assert not {"spentUSD", "accountedAt"} & set(h.status["placement"])
    h.status["cost"] = {"totalUSD": 12.5, "monthToDateUSD": 12.5}
    h.jobs.bodies["train"]["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    c.tick(spec(), h.world(NOW + 3700))
    assert h.status["placement"]["phase"] == "Succeeded"
    done = [m for _, r, m in h.events if r == "JobSucceeded"]
    assert done == ["Job/train succeeded; $12.50 spent so far (status.cost.totalUSD)"]


# ---------------------------------------------------------------- deadlines on spot

HOUR = 3600.0


def deadline_spec(
    hours: float, work_hours: float = 4.0, checkpoints: bool = True
) -> AIWorkloadSpec:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(NOW + hours * HOUR, tz=UTC).isoformat()
    extra: dict[str, Any] = {"checkpoint": {"intervalSeconds": 600}} if checkpoints else {}
    return spec(expectedDurationSeconds=int(work_hours * HOUR), deadline=when,
                spot={"maxInterruptions": 50}, **extra)  # fmt: skip


def test_ahead_of_its_deadline_a_job_waits_for_spot_then_runs_on_demand_when_behind() -> None:
    h = Harness()
    c = h.controller()
    s = deadline_spec(12)
    no_spot = {"l4-spot": False}
    c.tick(s, replace(h.world(NOW), spot_capacity=no_spot))  # creates the Job
    c.tick(s, replace(h.world(NOW + 15), spot_capacity=no_spot))
    assert h.jobs.bodies["train"]["spec"]["suspend"] is True
    assert h.ready()["reason"] == "WaitingForSpot"
    assert h.reasons().count("WaitingForSpot") == 1
    # Three hours on, with no work done, it is behind the straight line to its deadline.
    c.tick(s, replace(h.world(NOW + 3 * HOUR), spot_capacity=no_spot))
    job = h.jobs.bodies["train"]
    assert job["spec"]["suspend"] is False
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"gpufinops.dev/pool": "l4-on-demand"}
    assert h.status["placement"]["capacityType"] == "on-demand"


def test_on_demand_until_ahead_then_back_to_spot_when_it_returns() -> None:
    h = Harness()
    c = h.controller()
    s = deadline_spec(12)
    no_spot = {"l4-spot": False}
    c.tick(s, replace(h.world(NOW), spot_capacity=no_spot))
    c.tick(s, replace(h.world(NOW + 3 * HOUR), spot_capacity=no_spot))
    assert h.status["placement"]["pool"] == "l4-on-demand"
    running = (pod("p1", "l4-on-demand-0"),)
    # Two hours of work on on-demand put it ahead of the line (2 h by 5 h of 12 for 4 h).
    c.tick(s, replace(h.world(NOW + 5 * HOUR, running), spot_capacity={"l4-spot": True}))
    assert h.jobs.bodies["train"]["spec"]["suspend"] is True
    assert "MovingToSpot" in h.reasons()
    assert h.status["placement"]["onDemandOnly"] is not True
    h.jobs.bodies["train"]["status"] = {}  # its pods are gone
    c.tick(s, replace(h.world(NOW + 5 * HOUR + 60), spot_capacity={"l4-spot": True}))
    assert h.status["placement"]["pool"] == "l4-spot"
    assert h.jobs.bodies["train"]["spec"]["suspend"] is False


def test_on_spot_a_job_moves_to_on_demand_before_a_loss_would_be_late() -> None:
    h = Harness()
    c = h.controller()
    s = deadline_spec(5, checkpoints=False)
    c.tick(s, h.world(NOW))
    c.tick(s, h.world(NOW + 1))
    assert h.status["placement"]["pool"] == "l4-spot"
    running = (pod("p1", "l4-spot-0"),)
    # No interruption, but without checkpoints every minute on spot is at risk: once
    # losing it all (and restarting) would no longer leave time for the 4 h of work and
    # the reserve, it goes to on-demand while it can.
    moved_at = None
    for t in range(60, 3 * 3600, 60):
        c.tick(s, h.world(NOW + t, running))
        if h.jobs.bodies["train"]["spec"]["suspend"]:
            moved_at = t
            break
    assert moved_at is not None and 15 * 60 <= moved_at <= 30 * 60, moved_at
    assert "FallingBackToOnDemand" in h.reasons()
    assert h.status["placement"].get("onDemandOnly") is not True
