"""One Training workload's placement loop, without Kopf: it carries out the core's plan.

Each tick reads the Job, its pods and the taints of their nodes (watch-fed
indexes) and the budget the cost loop recorded, asks ``core.placement.lifecycle``
for the tick's plan, and carries its steps out in order: create the Job, place it
(one merge patch: the pool's selector and tolerations, unsuspended), suspend it,
post Events; then writes ``status.placement`` and the Ready condition. The Kopf
daemon in ``handlers.training`` only drives this class.

Pods count through their controller ownerReference only: a bare pod carrying a
copied job-name label, or a pod of an earlier Job of the same name, is not the
Job's (no interruption). Spend is the cost loop's (``status.cost``), the one ledger.
"""

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from gpufinops.adapters.jobs import (
    JobError,
    JobNameTaken,
    JobView,
    PodView,
    build_job,
    placement_patch,
)
from gpufinops.adapters.placement_status import read_record, record_patch
from gpufinops.adapters.status import conditions_patch, read_conditions
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.api.status import Condition
from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.effects import EventPoster, StatusConflict, StatusWriter
from gpufinops.core.cost.budget import recorded_enforcement
from gpufinops.core.events import PostEvent
from gpufinops.core.placement.lifecycle import (
    CreateJob,
    PlaceJob,
    SuspendJob,
    TrainingPlan,
    TrainingTick,
    job_kind,
    plan_name_taken,
    plan_training,
)
from gpufinops.core.placement.record import PlacementRecord
from gpufinops.core.placement.transitions import clock_stepped

log = logging.getLogger(__name__)


class JobClient(Protocol):
    """What the loop does to Jobs (the API server in production, a fake in tests)."""

    def create(self, body: Mapping[str, Any]) -> None:
        """Create the Job; raise JobNameTaken when one of its name exists that is not
        this workload's (never adopt it)."""

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> int:
        """Apply a merge patch; return the Job's new metadata.generation."""

    def suspend(self, namespace: str, name: str) -> int:
        """Suspend the Job; return its new metadata.generation."""


@dataclass
class World:
    """What one tick observes, read from the indexes by the caller."""

    job: JobView | None
    pods: Sequence[PodView]
    """The pods indexed under the Job's name; only those whose controller is the Job
    itself (its uid) count."""
    node_taints: Mapping[str, Sequence[str]]
    """Taint keys of every node the cluster has (a pod's node missing here is gone)."""
    latest_status: Mapping[str, Any] | None
    generation: int | None
    created_at: float
    now: float
    stepped: float = 0.0
    """How far the wall clock jumped since the previous tick (see ``controllers.clock``)."""
    pod_owners: frozenset[str] | None = None
    """UIDs of the Jobs whose pods are the target's: a JobSet's child Jobs (those it
    controls); None for a Job, whose own uid is the only one."""
    spot_capacity: Mapping[str, bool] = field(default_factory=dict)
    """Per spot pool with nodes, whether one could take the job now (see TrainingTick)."""
    period_seconds: float = 15.0


def _spent(status: Mapping[str, Any] | None) -> float | None:
    """The workload's spend so far, as the cost loop recorded it."""
    cost = (status or {}).get("cost")
    value = cost.get("totalUSD") if isinstance(cost, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class TrainingController:
    """Places one Training workload's Job and keeps it placed well."""

    def __init__(
        self,
        namespace: str,
        name: str,
        uid: str,
        config: OperatorConfig,
        jobs: JobClient,
        write_status: StatusWriter,
        post_event: EventPoster,
        jobsets: JobClient | None = None,
    ) -> None:
        self.namespace, self.name, self.uid = namespace, name, uid
        self.config = config
        self.jobs = jobs
        self.jobsets = jobsets
        self.write_status = write_status
        self.post_event = post_event
        self._last_written: dict[str, Any] | None = None
        # While this process lives it is the only writer of status.placement, so its
        # own record is authoritative; status is read once, after a (re)start. The
        # watch-fed views may lag our own writes: a Job view older than the generation
        # our last patch produced is stale, and the tick waits for a fresh one. The
        # generation is kept with the Job's uid: a Job recreated under the name is
        # another Job, with generations of its own.
        self._record: PlacementRecord | None = None
        self._job_generation: tuple[str, int] | None = None
        self._ready: tuple[str, str] | None = None
        self._created = False
        self._kind = "Job"

    def tick(self, spec: AIWorkloadSpec, world: World) -> PlacementRecord:
        """One look at the Job; returns the record written to status."""
        assert spec.training is not None
        if self._record is None:
            self._record = read_record(world.latest_status)
        self._record.memory = clock_stepped(self._record.memory, world.stepped, world.now)
        job = world.job
        if job is not None and self._job_generation is not None:
            uid, generation = self._job_generation
            if job.uid == uid and job.generation < generation:
                return copy.deepcopy(self._record)  # the Job view predates our own change
        owners = world.pod_owners
        if owners is None:
            owners = frozenset({job.uid}) if job is not None else frozenset()
        own = [p for p in world.pods if p.job_uid in owners]
        if len(own) != len(world.pods):
            world = replace(world, pods=own)
        self._kind = job_kind(spec)
        observed = TrainingTick(
            namespace=self.namespace, workload=self.name, workload_uid=self.uid, spec=spec,
            job=job, pods=world.pods, node_taints=world.node_taints, record=self._record,
            conditions=read_conditions(world.latest_status), now=world.now,
            generation=world.generation, created_at=world.created_at,
            budget=recorded_enforcement(world.latest_status), last_ready=self._ready,
            created=self._created, spent_usd=_spent(world.latest_status),
            spot_capacity=world.spot_capacity, period_seconds=world.period_seconds,
        )  # fmt: skip
        plan = self._carry_out(spec, observed, plan_training(observed, self.config))
        self._record, self._ready = plan.record, plan.ready
        self._write(plan.record, plan.conditions, world)
        return copy.deepcopy(plan.record)

    # ------------------------------------------------------------------ the steps

    def _carry_out(
        self, spec: AIWorkloadSpec, observed: TrainingTick, plan: TrainingPlan
    ) -> TrainingPlan:
        """Each step in order; an exception stops the tick before anything is recorded."""
        for step in plan.steps:
            if isinstance(step, PostEvent):
                self.post_event(step.type, step.reason, step.message)
            elif isinstance(step, CreateJob):
                try:
                    self._create(spec, plan.record)
                except JobNameTaken as exc:
                    taken = plan_name_taken(observed, plan, str(exc))
                    for event in taken.events:
                        self.post_event(event.type, event.reason, event.message)
                    return taken
            elif isinstance(step, PlaceJob):
                job = observed.job
                assert job is not None
                pool = self.config.pool(step.pool)
                assert pool is not None
                previous = self.config.pool(step.previous) if step.previous else None
                self._patch(job, placement_patch(job, pool, previous))
            elif isinstance(step, SuspendJob):
                assert observed.job is not None
                self._suspend(observed.job)
        return plan

    def _create(self, spec: AIWorkloadSpec, record: PlacementRecord) -> None:
        training = spec.training
        assert training is not None and training.job_template is not None
        assert record.job is not None
        body, _ = build_job(
            record.job, self.namespace, self.uid, training.job_template,
            kueue_queue=training.kueue_queue_name,
        )  # fmt: skip
        self.jobs.create(body)
        self._created = True

    def _client(self, job: JobView) -> JobClient:
        if job.kind == "JobSet":
            if self.jobsets is None:
                raise JobError("no JobSet client: JobSets cannot be placed by this loop")
            return self.jobsets
        return self.jobs

    def _patch(self, job: JobView, patch: Mapping[str, Any]) -> None:
        generation = self._client(job).patch(self.namespace, job.name, patch)
        self._job_generation = (job.uid, generation)

    def _suspend(self, job: JobView) -> None:
        self._job_generation = (job.uid, self._client(job).suspend(self.namespace, job.name))

    # ------------------------------------------------------------------ status

    def _write(self, record: PlacementRecord, conditions: list[Condition], world: World) -> None:
        written = record_patch(record)
        patch = {
            "observedGeneration": world.generation,
            "target": f"{self._kind}/{record.job}",
            "placement": written,
            "conditions": conditions_patch(conditions),
        }
        if patch == self._last_written:
            return
        try:
            self.write_status(patch)
        except StatusConflict:
            log.debug("%s/%s changed meanwhile; rewriting next tick", self.namespace, self.name)
            self._last_written = None
            return
        self._last_written = patch
