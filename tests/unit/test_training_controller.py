"""The Training placement loop over fake Jobs: create suspended, place on spot, count
each interruption once, fall back to on-demand after maxInterruptions, resume from
status after a restart, never act on a Job view older than its own last change."""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gpufinops.adapters.jobs import JobView, PodView, job_view
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import load_config
from gpufinops.handlers.training import TrainingController, World

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
        created = {**body, "metadata": {**body["metadata"], "uid": "job-uid", "generation": 1}}
        self.bodies[body["metadata"]["name"]] = created

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
        nodes = taints if taints is not None else {"l4-spot-0": (), "l4-on-demand-0": ()}
        return World(
            job=self.jobs.view(), pods=pods, node_taints=nodes,
            latest_status=self.status, generation=1, created_at=NOW, now=now,
        )  # fmt: skip


def pod(uid: str, node: str | None, phase: str = "Running", **kw: Any) -> PodView:
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
