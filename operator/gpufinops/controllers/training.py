"""One Training workload's placement loop, without Kopf.

Each tick reads the Job, its pods and the taints of their nodes (watch-fed
indexes), lets the pure placement core decide (choose a pool, count
interruptions, fall back to on-demand) and applies it the way Kueue does: the
Job stays suspended until the loop has injected the pool's nodeSelector and
tolerations, then it is unsuspended; a fallback re-suspends it, waits for its
pods to go, re-places and unsuspends. Every step is recorded in
``status.placement`` first consulted on the next tick, so a restarted operator
finishes a half-done step instead of repeating or forgetting it. The Kopf
daemon in ``placement.py`` only drives this class.

Only what the workload owns is driven: a Job of its jobTemplate's name that it
did not create (its controller ownerReference is not this AIWorkload's uid) is
reported (``JobNameTaken``) and never adopted, and a pod counts for the Job only
when the Job's uid is its controller, never through a label.
"""

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from gpufinops.adapters.jobs import (
    JobError,
    JobNameTaken,
    JobView,
    PodView,
    build_job,
    job_gpus,
    job_name_taken,
    placement_patch,
)
from gpufinops.adapters.placement_status import (
    MAX_REMEMBERED_PODS,
    Phase,
    PlacementRecord,
    read_record,
    record_patch,
)
from gpufinops.adapters.status import conditions_patch, read_conditions
from gpufinops.api.spec import AIWorkloadSpec, Mode
from gpufinops.api.status import Condition, ConditionStatus, ConditionType
from gpufinops.config.model import CapacityType, OperatorConfig
from gpufinops.controllers.effects import EventPoster, StatusConflict, StatusWriter
from gpufinops.core.conditions import find_condition, set_condition
from gpufinops.core.cost.budget import Action, recorded_enforcement
from gpufinops.core.placement.choose import choose_pool, expected_cost_usd
from gpufinops.core.placement.fallback import fallback_verdict, remaining_seconds
from gpufinops.core.placement.interruptions import interruption_reason
from gpufinops.core.placement.model import JobProfile, Placement, PoolOffer
from gpufinops.core.placement.transitions import (
    clock_stepped,
    fell_back,
    interrupted,
    pending,
    placed,
    pool_unavailable,
)

log = logging.getLogger(__name__)

NODE_DELETED = "NodeDeleted"
SPEND_FIELDS = ("spentUSD", "accountedAt")
SPEND_PERSIST_SECONDS = 60.0
TERMINAL_POD_PHASES = ("Succeeded", "Failed")


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


def job_name(name: str, spec: AIWorkloadSpec) -> str:
    """The Job of a Training workload: its jobRef, or one named like the workload."""
    assert spec.training is not None
    return spec.training.job_ref.name if spec.training.job_ref is not None else name


def job_kind(spec: AIWorkloadSpec) -> str:
    """Job, or JobSet for a jobRef that names one."""
    assert spec.training is not None
    return spec.training.job_ref.kind if spec.training.job_ref is not None else "Job"


def profile(spec: AIWorkloadSpec, job: JobView, created_at: float) -> JobProfile:
    training = spec.training
    assert training is not None
    checkpoint = training.checkpoint.interval_seconds if training.checkpoint else None
    return JobProfile(
        gpus=job_gpus(job),
        pods=max(job.parallelism, 1),
        expected_duration_seconds=training.expected_duration_seconds,
        checkpoint_interval_seconds=checkpoint,
        deadline=training.deadline.timestamp() if training.deadline else None,
        start_windows=tuple(training.start_windows or ()),
        submitted_at=created_at,
    )


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
        self._last_spend_write = float("-inf")
        self._kind = "Job"

    # ------------------------------------------------------------------ helpers

    def _offers(self, spec: AIWorkloadSpec) -> list[PoolOffer]:
        offers = []
        for name in spec.node_pools or []:
            pool = self.config.pool(name)
            if pool is not None and pool.hourly_price_usd is not None:
                offers.append(PoolOffer.from_pool(pool))
        return offers

    def _set(
        self,
        conditions: list[Condition],
        status: ConditionStatus,
        reason: str,
        message: str,
        world: World,
    ) -> tuple[list[Condition], bool]:
        before = find_condition(conditions, ConditionType.READY)
        last = self._ready or ((before.status, before.reason) if before else None)
        after = set_condition(
            conditions, type=ConditionType.READY, status=status, reason=reason,
            message=message, now=datetime.fromtimestamp(world.now, tz=UTC),
            generation=world.generation,
        )  # fmt: skip
        self._ready = (str(status), reason)
        return after, last != self._ready

    # ------------------------------------------------------------------ the tick

    def tick(self, spec: AIWorkloadSpec, world: World) -> PlacementRecord:
        """One look at the Job; returns the record written to status."""
        assert spec.training is not None
        if self._record is None:
            self._record = read_record(world.latest_status)
        self._record.memory = clock_stepped(self._record.memory, world.stepped, world.now)
        record = copy.deepcopy(self._record)
        job = world.job
        if job is not None and self._job_generation is not None:
            uid, generation = self._job_generation
            if job.uid == uid and job.generation < generation:
                return record  # the Job view predates our own last change
        # Pods count through their controller ownerReference only: a bare pod carrying
        # a copied job-name label, or a pod of an earlier Job of the same name, is not
        # the Job's (no interruption, no spend).
        owners = world.pod_owners
        if owners is None:
            owners = frozenset({job.uid}) if job is not None else frozenset()
        own = [p for p in world.pods if p.job_uid in owners]
        if len(own) != len(world.pods):
            world = replace(world, pods=own)
        conditions = read_conditions(world.latest_status)
        record.job = job_name(self.name, spec)
        self._kind = job_kind(spec)
        record, conditions = self._step(spec, world, record, conditions)
        self._record = record
        self._write(record, conditions, world)
        return record

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

    def _name_taken(
        self, conditions: list[Condition], world: World, message: str
    ) -> list[Condition]:
        """Report a Job of the workload's name that is not its own; it is left untouched."""
        conditions, changed = self._set(
            conditions, ConditionStatus.FALSE, "JobNameTaken", message, world
        )
        if changed:
            self.post_event("Warning", "JobNameTaken", message)
        return conditions

    def _step(
        self,
        spec: AIWorkloadSpec,
        world: World,
        record: PlacementRecord,
        conditions: list[Condition],
    ) -> tuple[PlacementRecord, list[Condition]]:
        training = spec.training
        assert training is not None and record.job is not None
        job = world.job
        recommend = spec.mode == Mode.RECOMMEND
        target = f"{self._kind}/{record.job}"

        if job is None:
            if training.job_template is None:
                conditions, changed = self._set(
                    conditions, ConditionStatus.FALSE, "JobNotFound",
                    f"{target} not found in namespace {self.namespace}", world,
                )  # fmt: skip
                if changed:
                    self.post_event("Warning", "JobNotFound", f"{target} not found")
                return record, conditions
            if recommend:
                conditions, _ = self._set(
                    conditions, ConditionStatus.TRUE, "Recommend",
                    f"Recommend mode: would create {target}", world,
                )  # fmt: skip
                return record, conditions
            if self._created:
                return record, conditions  # created; the index has not shown it yet
            body, warning = build_job(
                record.job, self.namespace, self.uid, training.job_template,
                kueue_queue=training.kueue_queue_name,
            )  # fmt: skip
            try:
                self.jobs.create(body)
            except JobNameTaken as exc:
                return record, self._name_taken(conditions, world, str(exc))
            self._created = True
            self.post_event(
                "Normal", "JobCreated",
                f"created {target}, suspended until "
                + (f"Kueue admits it (queue {training.kueue_queue_name})"
                   if training.kueue_queue_name else "placed"),
            )  # fmt: skip
            if warning:
                self.post_event("Warning", "InterruptionsCountAsFailures", warning)
            conditions, _ = self._set(
                conditions, ConditionStatus.UNKNOWN, "JobCreated",
                f"{target} created suspended; placing it", world,
            )  # fmt: skip
            return record, conditions

        if training.job_template is not None and job.owner_uid != self.uid:
            # Not created for this workload (a user's Job of the same name, or one an
            # earlier workload of the name left): never adopted, suspended or placed.
            message = job_name_taken(self.namespace, job.name)
            return record, self._name_taken(conditions, world, message)

        if job.complete or job.failed_permanently:
            record = self._account(record, spec, job, world)
            record.phase = Phase.SUCCEEDED if job.complete else Phase.FAILED
            status = ConditionStatus.TRUE if job.complete else ConditionStatus.FALSE
            reason = "JobSucceeded" if job.complete else "JobFailed"
            conditions, changed = self._set(
                conditions, status, reason,
                f"{target} {'succeeded' if job.complete else 'failed'} on "
                f"{record.memory.pool or 'no pool'} after {record.memory.interruptions} "
                f"interruption(s)", world,
            )  # fmt: skip
            if changed:
                self.post_event(
                    "Normal" if job.complete else "Warning", reason,
                    f"{target} {'succeeded' if job.complete else 'failed'}; "
                    f"spent ${record.spent_usd:.2f}",
                )  # fmt: skip
            record.cost_to_finish_usd = record.cost_to_finish_on_demand_usd = None
            return record, conditions

        if job.kueue_queue is not None:
            return self._under_kueue(spec, world, record, conditions, job)

        placed_before = record.memory.attempts > 0
        if not placed_before and not job.suspended and spec.mode != Mode.RECOMMEND:
            record = self._adopt(spec, job, record, world)
            placed_before = record.memory.attempts > 0
        if not placed_before and not job.suspended:
            conditions, changed = self._set(
                conditions, ConditionStatus.FALSE, "JobNotSuspended",
                f"{target} is running without a placement: create it with spec.suspend: true "
                "so gpufinops can choose its node pool", world,
            )  # fmt: skip
            if changed:
                self.post_event(
                    "Warning", "JobNotSuspended",
                    f"{target} was not created suspended; it is left where it runs",
                )  # fmt: skip
            return record, conditions

        offers = self._offers(spec)
        profile_ = profile(spec, job, world.created_at)
        record = self._account(record, spec, job, world)
        budget = recorded_enforcement(world.latest_status)

        if spec.budget is not None and budget is None and job.suspended and not recommend:
            # No budget decision on this object yet (just created, or deleted and created
            # again over a Job its budget had suspended): placing now would run the Job
            # before the cost loop has looked at the month's spend (its ledger).
            conditions, _ = self._set(
                conditions, ConditionStatus.UNKNOWN, "WaitingForBudget",
                f"{target} is placed once the cost loop has decided its budget "
                "(within one cost interval)", world,
            )  # fmt: skip
            return record, conditions

        if budget == Action.SUSPEND and not recommend:
            suspended_here = not job.suspended
            if suspended_here:
                self._suspend(job)
            # Reported once per suspension: also when a killed predecessor suspended
            # the Job but never recorded (nor reported) it.
            if suspended_here or record.phase != Phase.SUSPENDED:
                self.post_event(
                    "Warning", "BudgetSuspended", f"budget exceeded: {target} suspended"
                )
            # The running attempt's unsaved work is not credited (a conservative estimate).
            record.memory = record.memory.model_copy(update={"placed_at": None})
            record.phase = Phase.SUSPENDED
            conditions, _ = self._set(
                conditions, ConditionStatus.FALSE, "BudgetExceeded",
                f"{target} suspended by budget enforcement", world,
            )  # fmt: skip
            return record, conditions

        if record.phase == Phase.RUNNING and job.suspended:
            # Suspended under us (a restart mid-fallback, or by hand): place it again.
            record.phase = Phase.FALLING_BACK if record.memory.on_demand_only else Phase.WAITING
        if record.phase == Phase.SUSPENDED:
            record.phase = Phase.WAITING

        if record.phase in (Phase.WAITING, Phase.FALLING_BACK):
            return self._place(spec, world, record, conditions, job, offers, profile_)
        return self._watch(spec, world, record, conditions, job, offers, profile_)

    def _under_kueue(
        self,
        spec: AIWorkloadSpec,
        world: World,
        record: PlacementRecord,
        conditions: list[Condition],
        job: JobView,
    ) -> tuple[PlacementRecord, list[Condition]]:
        """A Job that Kueue admits: its ``suspend`` and node placement are Kueue's.

        Unsuspending it would run it past its ClusterQueue's quota, suspending it
        would fight Kueue's own admission; so the loop only observes: the pool
        Kueue's flavor put it on (from the Job's nodeSelector), its spend, and the
        budget, which it reports but does not enforce.
        """
        target = f"{job.kind}/{job.name}"
        queue = job.kueue_queue
        pool = next(
            (
                p.name
                for p in self.config.node_pools
                if p.selector and all(job.node_selector.get(k) == v for k, v in p.selector.items())
            ),
            None,
        )
        if pool is not None and record.memory.pool != pool:
            record.memory = record.memory.model_copy(update={"pool": pool})
        record = self._account(record, spec, job, world)
        record.phase = Phase.WAITING if job.suspended else Phase.RUNNING
        budget = recorded_enforcement(world.latest_status)
        if budget == Action.SUSPEND:
            conditions, changed = self._set(
                conditions, ConditionStatus.FALSE, "BudgetExceeded",
                f"budget exceeded; {target} is admitted by Kueue (queue {queue}), which "
                "gpufinops does not override: stop it through Kueue (deactivate its "
                "Workload) or delete the Job", world,
            )  # fmt: skip
            if changed:
                self.post_event(
                    "Warning", "BudgetNotEnforced",
                    f"budget exceeded; {target} is Kueue's to stop (queue {queue})",
                )  # fmt: skip
        elif job.suspended:
            conditions, changed = self._set(
                conditions, ConditionStatus.UNKNOWN, "WaitingForKueue",
                f"{target} waits for Kueue to admit it (queue {queue}); gpufinops leaves its "
                "suspend and placement to Kueue and reports its cost", world,
            )  # fmt: skip
            if changed:
                self.post_event(
                    "Normal", "ManagedByKueue", f"{target} is admitted by Kueue (queue {queue})"
                )
        else:
            conditions, _ = self._set(
                conditions, ConditionStatus.TRUE, "AdmittedByKueue",
                f"{target} admitted by Kueue (queue {queue}), running on {pool or 'no known pool'}",
                world,
            )  # fmt: skip
        return record, conditions

    def _adopt(
        self, spec: AIWorkloadSpec, job: JobView, record: PlacementRecord, world: World
    ) -> PlacementRecord:
        """Record a placement that was made but never recorded.

        A predecessor killed between unsuspending the Job onto a pool and writing
        status leaves it running on one of the workload's pools (that pool's
        selector injected) with no placement in status. Taking it up as placed
        there completes the step once, instead of reporting the Job as unmanaged.
        """
        pool = next(
            (
                p
                for name in spec.node_pools or []
                if (p := self.config.pool(name)) is not None
                and p.selector
                and all(job.node_selector.get(k) == v for k, v in p.selector.items())
            ),
            None,
        )
        if pool is None:
            return record
        choice = Placement(
            pool=pool.name, capacity_type=pool.capacity_type, reason="recorded after a restart"
        )
        record.memory = placed(record.memory, choice, world.now)
        record.phase = Phase.RUNNING
        event = "SpotPlaced" if pool.capacity_type == CapacityType.SPOT else "OnDemandPlaced"
        self.post_event(
            "Normal",
            event,
            f"{job.kind}/{job.name} placed on {pool.name} (recorded after a restart)",
        )
        return record

    def _place(
        self,
        spec: AIWorkloadSpec,
        world: World,
        record: PlacementRecord,
        conditions: list[Condition],
        job: JobView,
        offers: list[PoolOffer],
        profile_: JobProfile,
    ) -> tuple[PlacementRecord, list[Condition]]:
        training = spec.training
        assert training is not None
        target = f"{job.kind}/{job.name}"
        if job.started or job.active:
            # Re-suspended: the Job controller is still removing its pods; the template
            # becomes mutable once it has (startTime cleared).
            conditions, _ = self._set(
                conditions, ConditionStatus.UNKNOWN, "WaitingForPodsToStop",
                f"{target} suspended; waiting for its {job.active} pod(s) to stop", world,
            )  # fmt: skip
            return record, conditions
        choice = choose_pool(profile_, offers, training.spot, record.memory, world.now)
        self._estimate(record, profile_, offers, choice.pool, world.now)
        record.reason = choice.reason
        if choice.pool is None:
            conditions, changed = self._set(
                conditions, ConditionStatus.FALSE, "NoPoolAvailable", choice.reason, world
            )
            if changed:
                self.post_event("Warning", "NoPoolAvailable", choice.reason)
            return record, conditions
        if choice.start_at is not None and choice.start_at > world.now:
            record.not_before = choice.start_at
            when = datetime.fromtimestamp(choice.start_at, tz=UTC).isoformat()
            conditions, changed = self._set(
                conditions, ConditionStatus.FALSE, "WaitingForStartWindow",
                f"{target} waits for its start window at {when} on {choice.pool}", world,
            )  # fmt: skip
            if changed:
                self.post_event("Normal", "WaitingForStartWindow", f"starts at {when}")
            return record, conditions
        record.not_before = None
        if spec.mode == Mode.RECOMMEND:
            conditions, changed = self._set(
                conditions, ConditionStatus.TRUE, "Recommend",
                f"would place {target} on {choice.pool}: {choice.reason}", world,
            )  # fmt: skip
            if changed:
                self.post_event("Normal", "Recommendation", f"would place on {choice.pool}")
            return record, conditions
        pool = self.config.pool(choice.pool)
        assert pool is not None
        previous = self.config.pool(record.memory.pool) if record.memory.pool else None
        self._patch(job, placement_patch(job, pool, previous))
        falling_back = record.phase == Phase.FALLING_BACK
        record.memory = placed(record.memory, choice, world.now)
        record.phase = Phase.RUNNING
        spot = choice.capacity_type == CapacityType.SPOT
        if falling_back:
            event = "FellBackToOnDemand"
            message = f"{target} now runs on {choice.pool} ({record.fallback_reason})"
        else:
            event = "SpotPlaced" if spot else "OnDemandPlaced"
            message = f"{target} placed on {choice.pool}: {choice.reason}"
        self.post_event("Normal", event, message)
        conditions, _ = self._set(conditions, ConditionStatus.TRUE, "Placed", message, world)
        return record, conditions

    def _watch(
        self,
        spec: AIWorkloadSpec,
        world: World,
        record: PlacementRecord,
        conditions: list[Condition],
        job: JobView,
        offers: list[PoolOffer],
        profile_: JobProfile,
    ) -> tuple[PlacementRecord, list[Condition]]:
        training = spec.training
        assert training is not None
        target = f"{job.kind}/{job.name}"
        # Interruptions: each pod counts once, however it was seen.
        counted = set(record.interrupted_pods)
        seen: list[tuple[str, str]] = []
        for pod in world.pods:
            if pod.uid in counted or pod.phase == "Succeeded":
                continue
            reason = None
            if pod.node is not None:
                if pod.node not in world.node_taints:
                    reason = NODE_DELETED
                else:
                    reason = interruption_reason(world.node_taints[pod.node])
            if reason is None and pod.disrupted is not None:
                reason = "DisruptionTarget"
            if reason is not None:
                seen.append((pod.uid, reason))
        if seen:
            record.memory = interrupted(record.memory, profile_, world.now)
            reasons = sorted({r for _, r in seen})
            for r in reasons:
                record.by_reason[r] = record.by_reason.get(r, 0) + 1
            record.interrupted_pods = (record.interrupted_pods + [u for u, _ in seen])[
                -MAX_REMEMBERED_PODS:
            ]
            self.post_event(
                "Warning", "SpotInterrupted",
                f"{target} interrupted on {record.memory.pool} ({', '.join(reasons)}); "
                f"{record.memory.interruptions} interruption(s) so far",
            )  # fmt: skip
        live = [p for p in world.pods if p.phase not in TERMINAL_POD_PHASES and not p.terminating]
        unschedulable = any(p.unschedulable for p in live)
        record.memory = pending(record.memory, world.now, unschedulable)

        offer = next((o for o in offers if o.name == record.memory.pool), None)
        if offer is None:
            # The pool left the spec or the config: choose again.
            record.phase = Phase.FALLING_BACK
            if not job.suspended and spec.mode != Mode.RECOMMEND:
                self._suspend(job)
            return record, conditions
        verdict = fallback_verdict(profile_, training.spot, record.memory, offer, world.now,
                         pending=unschedulable)  # fmt: skip
        was_at_risk = record.deadline_at_risk
        record.deadline_at_risk = verdict.deadline_at_risk
        record.expected_finish = verdict.expected_finish
        self._estimate(record, profile_, offers, offer.name, world.now)
        if verdict.deadline_at_risk and not was_at_risk:
            self.post_event("Warning", "DeadlineAtRisk", verdict.message)
        if verdict.fall_back and spec.mode != Mode.RECOMMEND:
            if verdict.trigger == "PendingTimeout":
                record.memory = pool_unavailable(record.memory, offer.name, world.now)
            record.memory = fell_back(record.memory, world.now, profile_)
            record.fallback_reason = verdict.trigger
            record.phase = Phase.FALLING_BACK
            self._suspend(job)
            self.post_event(
                "Warning", "FallingBackToOnDemand",
                f"{target} suspended to move to on-demand: {verdict.message}",
            )  # fmt: skip
            conditions, _ = self._set(
                conditions, ConditionStatus.UNKNOWN, "FallingBack", verdict.message, world
            )
            return record, conditions
        would_move = verdict.report_only or (verdict.fall_back and spec.mode == Mode.RECOMMEND)
        if would_move and record.fallback_reason != verdict.trigger:
            record.fallback_reason = verdict.trigger
            self.post_event(
                    "Warning", "FallbackDisabled" if verdict.report_only else "Recommendation",
                    f"{target} would move to on-demand: {verdict.message}",
                )  # fmt: skip
        state = "pending" if unschedulable else "running"
        conditions, _ = self._set(
            conditions, ConditionStatus.TRUE, "Placed",
            f"{target} {state} on {offer.name} ({offer.capacity_type})", world,
        )  # fmt: skip
        return record, conditions

    # ------------------------------------------------------------------ spend

    def _account(
        self, record: PlacementRecord, spec: AIWorkloadSpec, job: JobView, world: World
    ) -> PlacementRecord:
        """Accrue the GPUs of running pods on the current pool since the last tick."""
        pool = self.config.pool(record.memory.pool) if record.memory.pool else None
        if record.accounted_at is not None and pool is not None and pool.hourly_price_usd:
            running = sum(1 for p in world.pods if p.phase == "Running" and not p.terminating)
            elapsed = max(0.0, world.now - record.accounted_at)
            record.spent_usd += (
                running * job.gpus_per_pod * pool.gpu_hourly_price_usd * (elapsed / 3600.0)
            )
        record.accounted_at = world.now
        return record

    def _estimate(
        self,
        record: PlacementRecord,
        job: JobProfile,
        offers: Sequence[PoolOffer],
        pool: str | None,
        now: float,
    ) -> None:
        left = remaining_seconds(job, record.memory, now)
        if left is None:
            record.cost_to_finish_usd = record.cost_to_finish_on_demand_usd = None
            return
        current = next((o for o in offers if o.name == pool), None)
        record.cost_to_finish_usd = (
            _finite(expected_cost_usd(job, current, left)) if current else None
        )
        on_demand = [expected_cost_usd(job, o, left) for o in offers if not o.spot]
        record.cost_to_finish_on_demand_usd = _finite(min(on_demand)) if on_demand else None

    # ------------------------------------------------------------------ status

    def _write(self, record: PlacementRecord, conditions: list[Condition], world: World) -> None:
        written = record_patch(record)
        patch = {
            "observedGeneration": world.generation,
            "target": f"{self._kind}/{record.job}",
            "placement": written,
            "conditions": conditions_patch(conditions),
        }
        # Spend moves every tick; alone it is written at most once a minute.
        placement = {k: v for k, v in written.items() if k not in SPEND_FIELDS}
        comparable = {**patch, "placement": placement}
        spend_due = world.now - self._last_spend_write >= SPEND_PERSIST_SECONDS
        if comparable == self._last_written and not spend_due:
            return
        try:
            self.write_status(patch)
        except StatusConflict:
            log.debug("%s/%s changed meanwhile; rewriting next tick", self.namespace, self.name)
            self._last_written = None
            return
        self._last_written = comparable
        self._last_spend_write = world.now


def _finite(value: float) -> float | None:
    """An expected cost that diverges (interruptions outpace checkpoints) is unknown."""
    return value if math.isfinite(value) else None
