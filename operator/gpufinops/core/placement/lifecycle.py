"""A Training workload's placement, one tick at a time: the phase machine as a plan.

Each tick the controller observes the Job (or JobSet), its pods and their nodes'
taints, and the budget the cost loop recorded; ``plan_training`` returns what to do
about it — create the Job, place it on a pool, suspend it — in order, with the
Events to post between those steps, the Ready condition, and the record to persist.
The controller only carries the steps out. The Job is held suspended until a pool
is chosen, as Kueue does; a fallback re-suspends it, waits for its pods to go,
re-places and unsuspends it. Every step is recorded in the returned record, so a
restarted operator finishes a half-done step instead of repeating or forgetting it.

Only what the workload owns is driven: a Job of its jobTemplate's name that it did
not create is reported (``JobNameTaken``) and never adopted.
"""

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gpufinops.api.spec import AIWorkloadSpec, Mode
from gpufinops.api.status import Condition, ConditionStatus, ConditionType
from gpufinops.config.model import CapacityType, OperatorConfig
from gpufinops.core.conditions import find_condition, set_condition
from gpufinops.core.cost.budget import Action
from gpufinops.core.events import EventReason, PostEvent
from gpufinops.core.placement.choose import choose_pool, expected_cost_usd
from gpufinops.core.placement.deadline import Capacity, DeadlineView, capacity_now
from gpufinops.core.placement.fallback import fallback_verdict, remaining_seconds
from gpufinops.core.placement.interruptions import interruption_reason
from gpufinops.core.placement.model import JobProfile, Placement, PoolOffer
from gpufinops.core.placement.observed import JobView, PodView
from gpufinops.core.placement.progress import checkpointed, run_work_seconds
from gpufinops.core.placement.record import MAX_REMEMBERED_PODS, Phase, PlacementRecord
from gpufinops.core.placement.transitions import (
    fell_back,
    interrupted,
    moved,
    pending,
    placed,
    pool_unavailable,
)

NODE_DELETED = "NodeDeleted"
TERMINAL_POD_PHASES = ("Succeeded", "Failed")


# ---------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class CreateJob:
    """Create the workload's Job from its jobTemplate, suspended."""


@dataclass(frozen=True)
class PlaceJob:
    """Move the suspended Job to ``pool`` (selector, tolerations) and unsuspend it."""

    pool: str
    previous: str | None
    """The pool it was on, whose selector and tolerations are taken off."""


@dataclass(frozen=True)
class SuspendJob:
    """Suspend the Job (its pods are removed by the Job controller)."""


Step = CreateJob | PlaceJob | SuspendJob | PostEvent


@dataclass
class TrainingPlan:
    """What one tick decided, in the order it is to be carried out."""

    record: PlacementRecord
    conditions: list[Condition]
    ready: tuple[str, str] | None
    """(status, reason) of the Ready condition as set: the next tick's ``last_ready``."""
    steps: list[Step] = field(default_factory=list)

    @property
    def events(self) -> list[PostEvent]:
        return [s for s in self.steps if isinstance(s, PostEvent)]


@dataclass(frozen=True)
class TrainingTick:
    """What one tick observes, as plain data."""

    namespace: str
    workload: str
    """The AIWorkload's name (its Job's, without a jobRef)."""
    workload_uid: str
    spec: AIWorkloadSpec
    job: JobView | None
    pods: Sequence[PodView]
    """The Job's own pods (controlled by its uid, or by a JobSet's child Jobs)."""
    node_taints: Mapping[str, Sequence[str]]
    """Taint keys of every node the cluster has (a pod's node missing here is gone)."""
    record: PlacementRecord
    conditions: Sequence[Condition]
    now: float
    generation: int | None
    created_at: float
    budget: Action | None = None
    """The enforcement the cost loop recorded in status (None: not decided yet)."""
    last_ready: tuple[str, str] | None = None
    """(status, reason) of the Ready condition the previous tick set, if it ran."""
    created: bool = False
    """Whether this process already created the Job (the index has not shown it yet)."""
    spent_usd: float | None = None
    """The workload's spend so far, from the cost loop's ledger (``status.cost.totalUSD``)."""
    spot_capacity: Mapping[str, bool] = field(default_factory=dict)
    """Per spot pool, whether it has a node that could take the job now (Ready,
    schedulable, no interruption notice); a pool missing here has no node known (an
    autoscaled pool shows capacity only when asked) and counts as obtainable."""
    period_seconds: float = 15.0
    """Until the next tick: a decision of the deadline rule must still hold then."""


def job_name(name: str, spec: AIWorkloadSpec) -> str:
    """The Job of a Training workload: its jobRef, or one named like the workload."""
    assert spec.training is not None
    return spec.training.job_ref.name if spec.training.job_ref is not None else name


def job_kind(spec: AIWorkloadSpec) -> str:
    """Job, or JobSet for a jobRef that names one."""
    assert spec.training is not None
    return spec.training.job_ref.kind if spec.training.job_ref is not None else "Job"


def job_gpus(job: JobView) -> float:
    return job.gpus_per_pod * max(job.parallelism, 1)


def job_name_taken(namespace: str, name: str) -> str:
    """Why an existing Job that the workload did not create is not its Job."""
    return (
        f"Job {namespace}/{name} already exists and was not created for this AIWorkload; "
        "gpufinops leaves it untouched: rename the AIWorkload or delete the Job"
    )


def restart_policy_warning(template: Mapping[str, Any]) -> str | None:
    """Why interruptions would count against the Job's backoffLimit, if they would.

    The podFailurePolicy that ignores disruptions requires ``restartPolicy: Never``.
    """
    pod_spec = (template.get("template") or {}).get("spec") or {}
    restart = pod_spec.get("restartPolicy", "Never")
    if restart == "Never":
        return None
    return (
        f"jobTemplate uses restartPolicy {restart}: interruptions count against "
        "backoffLimit (podFailurePolicy needs restartPolicy: Never)"
    )


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


def interruptions_seen(
    pods: Sequence[PodView], node_taints: Mapping[str, Sequence[str]], counted: Sequence[str]
) -> list[tuple[str, str]]:
    """(pod uid, reason) of each pod interrupted and not yet counted.

    A pod is interrupted when its node is gone, carries an interruption notice
    (the taints NTH, Karpenter and the clouds set), or the pod has a True
    DisruptionTarget condition. Each pod counts once, however it was seen.
    """
    done = set(counted)
    seen: list[tuple[str, str]] = []
    for pod in pods:
        if pod.uid in done or pod.phase == "Succeeded":
            continue
        reason = None
        if pod.node is not None:
            if pod.node not in node_taints:
                reason = NODE_DELETED
            else:
                reason = interruption_reason(node_taints[pod.node])
        if reason is None and pod.disrupted is not None:
            reason = "DisruptionTarget"
        if reason is not None:
            seen.append((pod.uid, reason))
    return seen


def offers_of(spec: AIWorkloadSpec, config: OperatorConfig) -> list[PoolOffer]:
    """The workload's pools that have a price, as the placement core sees them."""
    offers = []
    for name in spec.node_pools or []:
        pool = config.pool(name)
        if pool is not None and pool.hourly_price_usd is not None:
            offers.append(PoolOffer.from_pool(pool))
    return offers


def plan_training(tick: TrainingTick, config: OperatorConfig) -> TrainingPlan:
    """The tick's plan; ``tick.record`` is not changed (the plan holds a new one)."""
    return _Planner(tick, config).plan()


def plan_name_taken(tick: TrainingTick, plan: TrainingPlan, message: str) -> TrainingPlan:
    """The plan after creating the Job failed because a Job of its name is not the
    workload's: it is reported and left untouched."""
    planner = _Planner(tick, None)
    planner.conditions, planner.ready = list(plan.conditions), plan.ready
    return planner.name_taken(plan.record, message)


class _Planner:
    def __init__(self, tick: TrainingTick, config: OperatorConfig | None) -> None:
        self.tick = tick
        self.config = config
        self.conditions = list(tick.conditions)
        self.ready = tick.last_ready
        self.steps: list[Step] = []

    # ------------------------------------------------------------------ helpers

    def _set(self, status: ConditionStatus, reason: str, message: str) -> bool:
        """Set Ready; True when its (status, reason) changed since the last tick."""
        before = find_condition(self.conditions, ConditionType.READY)
        last = self.ready or ((before.status, before.reason) if before else None)
        self.conditions = set_condition(
            self.conditions, type=ConditionType.READY, status=status, reason=reason,
            message=message, now=datetime.fromtimestamp(self.tick.now, tz=UTC),
            generation=self.tick.generation,
        )  # fmt: skip
        self.ready = (str(status), reason)
        return last != self.ready

    def _event(self, type: str, reason: EventReason, message: str) -> None:
        self.steps.append(PostEvent(type, reason, message))

    def _done(self, record: PlacementRecord) -> TrainingPlan:
        return TrainingPlan(record, self.conditions, self.ready, self.steps)

    # ------------------------------------------------------------------ deadlines

    def _spot_obtainable(self, offers: Sequence[PoolOffer]) -> list[PoolOffer]:
        known = self.tick.spot_capacity
        return [o for o in offers if o.spot and known.get(o.name, True)]

    def _deadline_rule(
        self, record: PlacementRecord, job: JobProfile, on: Capacity, obtainable: bool
    ) -> Capacity | None:
        """What the deadline rule wants now; None when it does not apply (no deadline or
        no expected duration, spot disabled, or the job fell back to on-demand for good)."""
        training = self.tick.spec.training
        assert training is not None
        spot = training.spot
        if job.deadline is None or job.expected_duration_seconds is None:
            return None
        if not spot.enabled or record.memory.on_demand_only:
            return None
        now = self.tick.now
        run = run_work_seconds(job, record.memory, now) if on != Capacity.WAIT else 0.0
        view = DeadlineView(
            now=now, submitted_at=job.submitted_at, deadline=job.deadline,
            expected_seconds=job.expected_duration_seconds,
            done_seconds=record.memory.progress_seconds + run,
            restart_seconds=job.restart_overhead_seconds,
            at_risk_seconds=run - checkpointed(job, run) if on == Capacity.SPOT else 0.0,
            on=on, spot_obtainable=obtainable, period_seconds=self.tick.period_seconds,
        )  # fmt: skip
        return capacity_now(view)

    # ------------------------------------------------------------------ the tick

    def name_taken(self, record: PlacementRecord, message: str) -> TrainingPlan:
        if self._set(ConditionStatus.FALSE, "JobNameTaken", message):
            self._event("Warning", EventReason.JOB_NAME_TAKEN, message)
        return self._done(record)

    def plan(self) -> TrainingPlan:
        tick = self.tick
        spec, job = tick.spec, tick.job
        training = spec.training
        assert training is not None
        record = copy.deepcopy(tick.record)
        record.job = job_name(tick.workload, spec)
        recommend = spec.mode == Mode.RECOMMEND
        target = f"{job_kind(spec)}/{record.job}"

        if job is None:
            if training.job_template is None:
                if self._set(
                    ConditionStatus.FALSE, "JobNotFound",
                    f"{target} not found in namespace {tick.namespace}",
                ):  # fmt: skip
                    self._event("Warning", EventReason.JOB_NOT_FOUND, f"{target} not found")
                return self._done(record)
            if recommend:
                self._set(
                    ConditionStatus.TRUE, "Recommend", f"Recommend mode: would create {target}"
                )
                return self._done(record)
            if tick.created:
                return self._done(record)  # created; the index has not shown it yet
            self.steps.append(CreateJob())
            queue = training.kueue_queue_name
            self._event(
                "Normal", EventReason.JOB_CREATED,
                f"created {target}, suspended until "
                + (f"Kueue admits it (queue {queue})" if queue else "placed"),
            )  # fmt: skip
            warning = restart_policy_warning(training.job_template)
            if warning:
                self._event("Warning", EventReason.INTERRUPTIONS_COUNT_AS_FAILURES, warning)
            self._set(
                ConditionStatus.UNKNOWN,
                EventReason.JOB_CREATED,
                f"{target} created suspended; placing it",
            )
            return self._done(record)

        if training.job_template is not None and job.owner_uid != tick.workload_uid:
            # Not created for this workload (a user's Job of the same name, or one an
            # earlier workload of the name left): never adopted, suspended or placed.
            return self.name_taken(record, job_name_taken(tick.namespace, job.name))

        if job.complete or job.failed_permanently:
            return self._finished(record, job, target)

        if job.kueue_queue is not None:
            return self._under_kueue(record, job)

        placed_before = record.memory.attempts > 0
        if not placed_before and not job.suspended and not recommend:
            record = self._adopt(record, job)
            placed_before = record.memory.attempts > 0
        if not placed_before and not job.suspended:
            if self._set(
                ConditionStatus.FALSE, "JobNotSuspended",
                f"{target} is running without a placement: create it with spec.suspend: true "
                "so gpufinops can choose its node pool",
            ):  # fmt: skip
                self._event(
                    "Warning", EventReason.JOB_NOT_SUSPENDED,
                    f"{target} was not created suspended; it is left where it runs",
                )  # fmt: skip
            return self._done(record)

        assert self.config is not None
        offers = offers_of(spec, self.config)
        profile_ = profile(spec, job, tick.created_at)

        if spec.budget is not None and tick.budget is None and job.suspended and not recommend:
            # No budget decision on this object yet (just created, or deleted and created
            # again over a Job its budget had suspended): placing now would run the Job
            # before the cost loop has looked at the month's spend (its ledger).
            self._set(
                ConditionStatus.UNKNOWN, "WaitingForBudget",
                f"{target} is placed once the cost loop has decided its budget "
                "(within one cost interval)",
            )  # fmt: skip
            return self._done(record)

        if tick.budget == Action.SUSPEND and not recommend:
            suspended_here = not job.suspended
            if suspended_here:
                self.steps.append(SuspendJob())
            # Reported once per suspension: also when a killed predecessor suspended
            # the Job but never recorded (nor reported) it.
            if suspended_here or record.phase != Phase.SUSPENDED:
                self._event(
                    "Warning", EventReason.BUDGET_SUSPENDED, f"budget exceeded: {target} suspended"
                )
            # The running attempt's unsaved work is not credited (a conservative estimate).
            record.memory = record.memory.model_copy(update={"placed_at": None})
            record.phase = Phase.SUSPENDED
            self._set(
                ConditionStatus.FALSE, "BudgetExceeded", f"{target} suspended by budget enforcement"
            )
            return self._done(record)

        if record.phase == Phase.RUNNING and job.suspended:
            # Suspended under us (a restart mid-fallback, or by hand): place it again.
            record.phase = Phase.FALLING_BACK if record.memory.on_demand_only else Phase.WAITING
        if record.phase == Phase.SUSPENDED:
            record.phase = Phase.WAITING

        if record.phase in (Phase.WAITING, Phase.FALLING_BACK):
            return self._place(record, job, offers, profile_)
        return self._watch(record, job, offers, profile_)

    def _finished(self, record: PlacementRecord, job: JobView, target: str) -> TrainingPlan:
        record.phase = Phase.SUCCEEDED if job.complete else Phase.FAILED
        status = ConditionStatus.TRUE if job.complete else ConditionStatus.FALSE
        reason = EventReason.JOB_SUCCEEDED if job.complete else EventReason.JOB_FAILED
        outcome = "succeeded" if job.complete else "failed"
        if self._set(
            status, reason,
            f"{target} {outcome} on {record.memory.pool or 'no pool'} after "
            f"{record.memory.interruptions} interruption(s)",
        ):  # fmt: skip
            spent = self.tick.spent_usd
            cost = "" if spent is None else f"; ${spent:.2f} spent so far (status.cost.totalUSD)"
            self._event(
                "Normal" if job.complete else "Warning", reason, f"{target} {outcome}{cost}"
            )
        record.cost_to_finish_usd = record.cost_to_finish_on_demand_usd = None
        return self._done(record)

    def _under_kueue(self, record: PlacementRecord, job: JobView) -> TrainingPlan:
        """A Job that Kueue admits: its ``suspend`` and node placement are Kueue's.

        Unsuspending it would run it past its ClusterQueue's quota, suspending it
        would fight Kueue's own admission; so the loop only observes: the pool
        Kueue's flavor put it on (from the Job's nodeSelector) and the budget,
        which it reports but does not enforce.
        """
        assert self.config is not None
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
        record.phase = Phase.WAITING if job.suspended else Phase.RUNNING
        if self.tick.budget == Action.SUSPEND:
            if self._set(
                ConditionStatus.FALSE, "BudgetExceeded",
                f"budget exceeded; {target} is admitted by Kueue (queue {queue}), which "
                "gpufinops does not override: stop it through Kueue (deactivate its "
                "Workload) or delete the Job",
            ):  # fmt: skip
                self._event(
                    "Warning", EventReason.BUDGET_NOT_ENFORCED,
                    f"budget exceeded; {target} is Kueue's to stop (queue {queue})",
                )  # fmt: skip
        elif job.suspended:
            if self._set(
                ConditionStatus.UNKNOWN, "WaitingForKueue",
                f"{target} waits for Kueue to admit it (queue {queue}); gpufinops leaves its "
                "suspend and placement to Kueue and reports its cost",
            ):  # fmt: skip
                self._event(
                    "Normal",
                    EventReason.MANAGED_BY_KUEUE,
                    f"{target} is admitted by Kueue (queue {queue})",
                )
        else:
            self._set(
                ConditionStatus.TRUE, "AdmittedByKueue",
                f"{target} admitted by Kueue (queue {queue}), running on {pool or 'no known pool'}",
            )  # fmt: skip
        return self._done(record)

    def _adopt(self, record: PlacementRecord, job: JobView) -> PlacementRecord:
        """Record a placement that was made but never recorded.

        A predecessor killed between unsuspending the Job onto a pool and writing
        status leaves it running on one of the workload's pools (that pool's
        selector injected) with no placement in status. Taking it up as placed
        there completes the step once, instead of reporting the Job as unmanaged.
        """
        assert self.config is not None
        pool = next(
            (
                p
                for name in self.tick.spec.node_pools or []
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
        record.memory = placed(record.memory, choice, self.tick.now)
        record.phase = Phase.RUNNING
        spot = pool.capacity_type == CapacityType.SPOT
        event = EventReason.SPOT_PLACED if spot else EventReason.ON_DEMAND_PLACED
        self._event(
            "Normal",
            event,
            f"{job.kind}/{job.name} placed on {pool.name} (recorded after a restart)",
        )
        return record

    def _place(
        self,
        record: PlacementRecord,
        job: JobView,
        offers: list[PoolOffer],
        profile_: JobProfile,
    ) -> TrainingPlan:
        tick = self.tick
        training = tick.spec.training
        assert training is not None
        target = f"{job.kind}/{job.name}"
        if job.started or job.active:
            # Re-suspended: the Job controller is still removing its pods; the template
            # becomes mutable once it has (startTime cleared).
            self._set(
                ConditionStatus.UNKNOWN, "WaitingForPodsToStop",
                f"{target} suspended; waiting for its {job.active} pod(s) to stop",
            )  # fmt: skip
            return self._done(record)
        spot_now = self._spot_obtainable(offers)
        wanted = self._deadline_rule(record, profile_, Capacity.WAIT, bool(spot_now))
        if wanted == Capacity.WAIT:
            record.reason = "ahead of schedule; waiting for spot capacity"
            if self._set(
                ConditionStatus.UNKNOWN, "WaitingForSpot",
                f"{target} is ahead of its deadline and no spot pool has capacity: it "
                "waits for spot (it moves to on-demand when it falls behind)",
            ):  # fmt: skip
                self._event(
                    "Normal", EventReason.WAITING_FOR_SPOT,
                    f"{target} waits for spot capacity; ahead of its deadline",
                )  # fmt: skip
            return self._done(record)
        on_demand = [o for o in offers if not o.spot]
        if wanted == Capacity.ON_DEMAND and on_demand:
            offers = on_demand
        elif wanted == Capacity.SPOT:
            offers = spot_now + on_demand  # on-demand stays a choice if spot is refused
        choice = choose_pool(profile_, offers, training.spot, record.memory, tick.now)
        _estimate(record, profile_, offers, choice.pool, tick.now)
        record.reason = choice.reason
        if choice.pool is None:
            if self._set(ConditionStatus.FALSE, "NoPoolAvailable", choice.reason):
                self._event("Warning", EventReason.NO_POOL_AVAILABLE, choice.reason)
            return self._done(record)
        if choice.start_at is not None and choice.start_at > tick.now:
            record.not_before = choice.start_at
            when = datetime.fromtimestamp(choice.start_at, tz=UTC).isoformat()
            if self._set(
                ConditionStatus.FALSE, "WaitingForStartWindow",
                f"{target} waits for its start window at {when} on {choice.pool}",
            ):  # fmt: skip
                self._event("Normal", EventReason.WAITING_FOR_START_WINDOW, f"starts at {when}")
            return self._done(record)
        record.not_before = None
        if tick.spec.mode == Mode.RECOMMEND:
            if self._set(
                ConditionStatus.TRUE, "Recommend",
                f"would place {target} on {choice.pool}: {choice.reason}",
            ):  # fmt: skip
                self._event("Normal", EventReason.RECOMMENDATION, f"would place on {choice.pool}")
            return self._done(record)
        self.steps.append(PlaceJob(choice.pool, record.memory.pool))
        falling_back = record.phase == Phase.FALLING_BACK
        record.memory = placed(record.memory, choice, tick.now)
        record.phase = Phase.RUNNING
        spot = choice.capacity_type == CapacityType.SPOT
        if falling_back:
            event = EventReason.FELL_BACK_TO_ON_DEMAND
            message = f"{target} now runs on {choice.pool} ({record.fallback_reason})"
        else:
            event = EventReason.SPOT_PLACED if spot else EventReason.ON_DEMAND_PLACED
            message = f"{target} placed on {choice.pool}: {choice.reason}"
        self._event("Normal", event, message)
        self._set(ConditionStatus.TRUE, "Placed", message)
        return self._done(record)

    def _switch(
        self,
        record: PlacementRecord,
        job: JobView,
        offers: list[PoolOffer],
        offer: PoolOffer,
        profile_: JobProfile,
        target: str,
    ) -> TrainingPlan | None:
        """Move a running job when the deadline rule wants other capacity: off spot while
        a lost attempt can still be made good, back to spot (or to waiting for it) when
        on-demand has put it ahead. None: it stays where it runs."""
        on = Capacity.SPOT if offer.spot else Capacity.ON_DEMAND
        spot_now = self._spot_obtainable(offers)
        if on == Capacity.SPOT and offer not in spot_now:
            spot_now.append(offer)  # it holds its capacity, whatever the pool shows
        wanted = self._deadline_rule(record, profile_, on, bool(spot_now))
        if wanted is None or wanted == on:
            return None
        now = self.tick.now
        record.memory = moved(record.memory, now, profile_)
        self.steps.append(SuspendJob())
        if wanted == Capacity.ON_DEMAND:
            record.phase = Phase.FALLING_BACK
            message = (
                f"{target} suspended to move to on-demand: one more spot interruption "
                "would make it miss its deadline"
            )
            self._event("Warning", EventReason.FALLING_BACK_TO_ON_DEMAND, message)
            self._set(ConditionStatus.UNKNOWN, "FallingBack", message)
        else:
            record.phase = Phase.WAITING
            where = "to spot" if wanted == Capacity.SPOT else "off on-demand to wait for spot"
            message = f"{target} is ahead of its deadline: suspended to move {where}"
            self._event("Normal", EventReason.MOVING_TO_SPOT, message)
            self._set(ConditionStatus.UNKNOWN, "MovingToSpot", message)
        return self._done(record)

    def _watch(
        self,
        record: PlacementRecord,
        job: JobView,
        offers: list[PoolOffer],
        profile_: JobProfile,
    ) -> TrainingPlan:
        tick = self.tick
        training = tick.spec.training
        assert training is not None
        recommend = tick.spec.mode == Mode.RECOMMEND
        target = f"{job.kind}/{job.name}"
        seen = interruptions_seen(tick.pods, tick.node_taints, record.interrupted_pods)
        if seen:
            record.memory = interrupted(record.memory, profile_, tick.now)
            reasons = sorted({r for _, r in seen})
            for r in reasons:
                record.by_reason[r] = record.by_reason.get(r, 0) + 1
            record.interrupted_pods = (record.interrupted_pods + [u for u, _ in seen])[
                -MAX_REMEMBERED_PODS:
            ]
            self._event(
                "Warning", EventReason.SPOT_INTERRUPTED,
                f"{target} interrupted on {record.memory.pool} ({', '.join(reasons)}); "
                f"{record.memory.interruptions} interruption(s) so far",
            )  # fmt: skip
        live = [p for p in tick.pods if p.phase not in TERMINAL_POD_PHASES and not p.terminating]
        unschedulable = any(p.unschedulable for p in live)
        record.memory = pending(record.memory, tick.now, unschedulable)

        offer = next((o for o in offers if o.name == record.memory.pool), None)
        if offer is None:
            # The pool left the spec or the config: choose again.
            record.phase = Phase.FALLING_BACK
            if not job.suspended and not recommend:
                self.steps.append(SuspendJob())
            return self._done(record)
        if not unschedulable and not recommend:
            switch = self._switch(record, job, offers, offer, profile_, target)
            if switch is not None:
                return switch
        verdict = fallback_verdict(
            profile_, training.spot, record.memory, offer, tick.now, pending=unschedulable
        )
        was_at_risk = record.deadline_at_risk
        record.deadline_at_risk = verdict.deadline_at_risk
        record.expected_finish = verdict.expected_finish
        _estimate(record, profile_, offers, offer.name, tick.now)
        if verdict.deadline_at_risk and not was_at_risk:
            self._event("Warning", EventReason.DEADLINE_AT_RISK, verdict.message)
        if verdict.fall_back and not recommend:
            if verdict.trigger == "PendingTimeout":
                record.memory = pool_unavailable(record.memory, offer.name, tick.now)
            record.memory = fell_back(record.memory, tick.now, profile_)
            record.fallback_reason = verdict.trigger
            record.phase = Phase.FALLING_BACK
            self.steps.append(SuspendJob())
            self._event(
                "Warning", EventReason.FALLING_BACK_TO_ON_DEMAND,
                f"{target} suspended to move to on-demand: {verdict.message}",
            )  # fmt: skip
            self._set(ConditionStatus.UNKNOWN, "FallingBack", verdict.message)
            return self._done(record)
        would_move = verdict.report_only or (verdict.fall_back and recommend)
        if would_move and record.fallback_reason != verdict.trigger:
            record.fallback_reason = verdict.trigger
            said = EventReason.FALLBACK_DISABLED if verdict.report_only else None
            self._event(
                "Warning", said or EventReason.RECOMMENDATION,
                f"{target} would move to on-demand: {verdict.message}",
            )  # fmt: skip
        state = "pending" if unschedulable else "running"
        self._set(
            ConditionStatus.TRUE, "Placed",
            f"{target} {state} on {offer.name} ({offer.capacity_type})",
        )  # fmt: skip
        return self._done(record)


def _estimate(
    record: PlacementRecord,
    job: JobProfile,
    offers: Sequence[PoolOffer],
    pool: str | None,
    now: float,
) -> None:
    """The expected cost to finish where it runs, and on the cheapest on-demand pool."""
    left = remaining_seconds(job, record.memory, now)
    if left is None:
        record.cost_to_finish_usd = record.cost_to_finish_on_demand_usd = None
        return
    current = next((o for o in offers if o.name == pool), None)
    record.cost_to_finish_usd = _finite(expected_cost_usd(job, current, left)) if current else None
    on_demand = [expected_cost_usd(job, o, left) for o in offers if not o.spot]
    record.cost_to_finish_on_demand_usd = _finite(min(on_demand)) if on_demand else None


def _finite(value: float) -> float | None:
    """An expected cost that diverges (interruptions outpace checkpoints) is unknown."""
    return value if math.isfinite(value) else None
