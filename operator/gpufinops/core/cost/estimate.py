"""Monthly cost of AIWorkload manifests before they are applied (the CI cost check).

Two figures per workload. *Worst case* is what the spec allows at most: every
pod the spec permits, all month (730 h). *Expected* is what it will likely
cost under stated assumptions (see ``docs/cost.md``); both use the per-GPU
price of the pool the workload would land on.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import ceil
from typing import Any

from croniter import croniter

from gpufinops.api.spec import AIWorkloadSpec, WorkloadType
from gpufinops.config.model import CapacityType, NodePool, OperatorConfig
from gpufinops.core.cost.manifests import (
    EstimateError,
    Manifest,
    Pods,
    Targets,
    mapping,
    metadata,
    namespace,
    pod_gpus,
    target_pods,
)
from gpufinops.core.cost.periods import HOURS_PER_MONTH, zone
from gpufinops.core.gpus import rules_of
from gpufinops.core.validation import check_spec

_REFERENCE_WEEKS = 4
_REFERENCE_START = datetime(2024, 1, 1)  # a Monday: schedules are sampled over 4 whole weeks


@dataclass(frozen=True)
class WorkloadEstimate:
    source: str
    namespace: str
    name: str
    type: str
    team: str
    pool: str
    capacity_type: str
    gpu_hourly_usd: float
    gpus_per_pod: float
    max_pods: int
    expected_pods: float
    expected_hours: float
    worst_case_monthly_usd: float
    expected_monthly_usd: float
    budget_monthly_usd: float | None
    """The workload's own budget per month (dailyUSD counts as 730/24 days)."""
    notes: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def over_own_budget(self) -> bool:
        return self.budget_monthly_usd is not None and (
            self.expected_monthly_usd > self.budget_monthly_usd
        )


def _price(pool: NodePool) -> float:
    return pool.gpu_hourly_price_usd


def _pool(
    spec: AIWorkloadSpec, config: OperatorConfig, source: str, on_demand: bool = False
) -> NodePool:
    """The first allowed pool (on-demand first when asked), else the cheapest GPU pool."""
    allowed = [p for p in (config.pool(n) for n in spec.node_pools or []) if p is not None]
    candidates = allowed or sorted(config.node_pools, key=_price)
    if not candidates:
        raise EstimateError(source, "spec.nodePools", "the operator config has no GPU node pools")
    if on_demand:
        firm = [p for p in candidates if p.capacity_type == CapacityType.ON_DEMAND]
        return firm[0] if firm else candidates[0]
    return candidates[0]


def schedule_open_fraction(cron: str, timezone: str, duration_seconds: int) -> float:
    """Share of the time a recurring window is open, sampled over four whole weeks."""
    tz = zone(timezone)
    start = _REFERENCE_START.replace(tzinfo=tz)
    end = start + timedelta(weeks=_REFERENCE_WEEKS)
    it = croniter(cron, start - timedelta(seconds=1))
    fires = 0
    while it.get_next(datetime) < end:
        fires += 1
    span = (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds()
    return min(1.0, fires * duration_seconds / span)


def _monthly_budget(spec: AIWorkloadSpec) -> float | None:
    b = spec.budget
    if b is None:
        return None
    limits = [b.monthly_usd] if b.monthly_usd is not None else []
    if b.daily_usd is not None:
        limits.append(b.daily_usd * HOURS_PER_MONTH / 24)
    return min(limits)


@dataclass(frozen=True)
class _Plan:
    pool: NodePool
    worst_pool: NodePool
    pods: Pods
    max_pods: int
    expected_pods: float
    expected_hours: float
    notes: list[str]


def _inference(spec: AIWorkloadSpec, m: Manifest, targets: Targets, cfg: OperatorConfig) -> _Plan:
    inf = spec.inference
    assert inf is not None
    pods = target_pods(
        targets.get(inf.target_ref.kind, m, inf.target_ref.name),
        *_ref(inf.target_ref),
        rules_of(cfg),
    )
    notes = [pods.note] if pods.note else []
    base = float(max(inf.min_replicas, 1))
    if inf.min_replicas == 0:
        notes.append("minReplicas is 0: expected assumes one replica up all month")
    expected = base
    for s in inf.schedules or []:
        extra = max(0, min(s.min_replicas, inf.max_replicas) - base)
        share = schedule_open_fraction(s.cron, s.timezone, s.duration_seconds)
        expected += extra * share
        if extra:
            notes.append(f"schedule {s.name}: +{extra * share:.2f} replicas on average")
    pool = _pool(spec, cfg, m.source)
    return _Plan(pool, pool, pods, inf.max_replicas, expected, HOURS_PER_MONTH, notes)


def _ref(ref: Any) -> tuple[str, str]:
    return str(ref.kind), str(ref.name)


def _training(spec: AIWorkloadSpec, m: Manifest, targets: Targets, cfg: OperatorConfig) -> _Plan:
    tr = spec.training
    assert tr is not None
    if tr.job_template is not None:
        tmpl = tr.job_template
        path = "spec.training.jobTemplate"
        template = mapping(tmpl.get("template"), m.source, f"{path}.template")
        gpus = pod_gpus(template.get("spec"), m.source, f"{path}.template.spec", rules_of(cfg))
        count = tmpl.get("parallelism", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise EstimateError(m.source, f"{path}.parallelism", f"{count!r} is not a pod count")
        pods = Pods(gpus, count)
    else:
        assert tr.job_ref is not None
        job = tr.job_ref.name
        pods = target_pods(targets.get("Job", m, job), "Job", job, rules_of(cfg))
    notes = [pods.note] if pods.note else []
    pool = _pool(spec, cfg, m.source, on_demand=not tr.spot.enabled)
    worst = pool
    if pool.capacity_type == CapacityType.SPOT and tr.spot.fallback_to_on_demand:
        worst = _pool(spec, cfg, m.source, on_demand=True)
        if worst is not pool:
            notes.append(f"worst case priced on {worst.name}, where spot failures fall back")
    if tr.expected_duration_seconds is None:
        notes.append("no expectedDurationSeconds: expected assumes it runs all month")
        hours = HOURS_PER_MONTH
    else:
        hours = tr.expected_duration_seconds / 3600
        if pool.capacity_type == CapacityType.SPOT and pool.interruption_rate_per_month:
            nodes = ceil(pods.count * pods.gpus / (pool.gpus_per_node or 1)) or 1
            interruptions = pool.interruption_rate_per_month * nodes * hours / HOURS_PER_MONTH
            interval = tr.checkpoint.interval_seconds if tr.checkpoint else 0
            lost = interval / 3600 / 2 if interval else hours / 2
            hours += interruptions * lost
        hours = min(hours, HOURS_PER_MONTH)
    return _Plan(pool, worst, pods, pods.count, float(pods.count), hours, notes)


def _experiment(spec: AIWorkloadSpec, m: Manifest, targets: Targets, cfg: OperatorConfig) -> _Plan:
    ex = spec.experiment
    assert ex is not None
    kind, name = _ref(ex.target_ref)
    pods = target_pods(targets.get(kind, m, name), kind, name, rules_of(cfg))
    notes = [pods.note] if pods.note else []
    if ex.max_lifetime_seconds is None:
        notes.append("no maxLifetimeSeconds: expected assumes it runs all month")
        hours = HOURS_PER_MONTH
    else:
        hours = min(ex.max_lifetime_seconds / 3600, HOURS_PER_MONTH)
    pool = _pool(spec, cfg, m.source)
    return _Plan(pool, pool, pods, pods.count, float(pods.count), hours, notes)


_PLANNERS = {
    WorkloadType.INFERENCE: _inference,
    WorkloadType.TRAINING: _training,
    WorkloadType.EXPERIMENT: _experiment,
}


def estimate_workload(m: Manifest, targets: Targets, config: OperatorConfig) -> WorkloadEstimate:
    name = metadata(m).get("name")
    if not isinstance(name, str) or not name:
        raise EstimateError(m.source, "metadata.name", "an AIWorkload needs a name")
    check = check_spec(mapping(m.doc.get("spec"), m.source, "spec"), config)
    if check.spec is None:
        first = check.problems[0] if check.problems else None
        path, msg = (first.path, first.message) if first else ("spec", "invalid")
        more = len(check.problems) - 1
        raise EstimateError(m.source, path, msg + (f" (and {more} more)" if more > 0 else ""))
    spec = check.spec
    plan = _PLANNERS[WorkloadType(spec.type)](spec, m, targets, config)
    price = _price(plan.pool)
    gpus = plan.pods.gpus
    return WorkloadEstimate(
        source=m.source,
        namespace=namespace(m),
        name=name,
        type=str(spec.type),
        team=spec.cost_allocation.team,
        pool=plan.pool.name,
        capacity_type=str(plan.pool.capacity_type),
        gpu_hourly_usd=price,
        gpus_per_pod=gpus,
        max_pods=plan.max_pods,
        expected_pods=plan.expected_pods,
        expected_hours=plan.expected_hours,
        worst_case_monthly_usd=plan.max_pods * gpus * _price(plan.worst_pool) * HOURS_PER_MONTH,
        expected_monthly_usd=plan.expected_pods * gpus * price * plan.expected_hours,
        budget_monthly_usd=_monthly_budget(spec),
        notes=tuple(plan.notes),
    )


UNMANAGED = "Unmanaged"
"""The type of a GPU Deployment, StatefulSet, Rollout or Job no AIWorkload drives."""


def claimed(m: Manifest) -> tuple[str, str] | None:
    """(kind, name) of what an AIWorkload manifest drives, read leniently."""
    spec = m.doc.get("spec")
    if not isinstance(spec, dict):
        return None
    for section in ("inference", "experiment"):
        ref = (
            (spec.get(section) or {}).get("targetRef")
            if isinstance(spec.get(section), dict)
            else None
        )
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            return str(ref.get("kind") or "Deployment"), ref["name"]
    training = spec.get("training")
    if isinstance(training, dict):
        job = training.get("jobRef")
        if isinstance(job, dict) and isinstance(job.get("name"), str):
            return str(job.get("kind") or "Job"), job["name"]
        name = metadata(m).get("name")
        return ("Job", name) if isinstance(name, str) else None
    return None


def _selected_pool(pod_spec: Any, config: OperatorConfig) -> NodePool | None:
    selector = pod_spec.get("nodeSelector") if isinstance(pod_spec, dict) else None
    if not isinstance(selector, dict):
        return None
    return next(
        (p for p in config.node_pools
         if p.selector and all(selector.get(k) == v for k, v in p.selector.items())),
        None,
    )  # fmt: skip


def estimate_unmanaged(kind: str, m: Manifest, config: OperatorConfig) -> WorkloadEstimate | None:
    """A GPU workload without an AIWorkload: nothing bounds it, so it is priced at its
    pod count all month, on the pool its nodeSelector picks (else the dearest pool);
    a change that adds GPUs outside an AIWorkload must not pass a CI check at $0."""
    name = metadata(m).get("name")
    if not isinstance(name, str) or not config.node_pools:
        return None
    pods = target_pods(m, kind, name, rules_of(config))
    if pods.gpus <= 0 or pods.count <= 0:
        return None
    template = mapping(m.doc.get("spec"), m.source, "spec").get("template")
    pod_spec = template.get("spec") if isinstance(template, dict) else None
    pool = _selected_pool(pod_spec, config)
    notes = [f"no AIWorkload drives this {kind}: priced at its {pods.count} pod(s) all month"]
    if pool is None:
        pool = max(config.node_pools, key=_price)
        notes.append(f"its nodeSelector picks no configured pool: priced on {pool.name}")
    labels = metadata(m).get("labels")
    team = labels.get("gpufinops.dev/team") if isinstance(labels, dict) else None
    monthly = pods.count * pods.gpus * _price(pool) * HOURS_PER_MONTH
    return WorkloadEstimate(
        source=m.source, namespace=namespace(m), name=name, type=UNMANAGED,
        team=str(team or "-"), pool=pool.name, capacity_type=str(pool.capacity_type),
        gpu_hourly_usd=_price(pool), gpus_per_pod=pods.gpus, max_pods=pods.count,
        expected_pods=float(pods.count), expected_hours=HOURS_PER_MONTH,
        worst_case_monthly_usd=monthly, expected_monthly_usd=monthly,
        budget_monthly_usd=None, notes=tuple(notes),
    )  # fmt: skip


def estimate(manifests: Sequence[Manifest], config: OperatorConfig) -> list[WorkloadEstimate]:
    """Estimates of every AIWorkload among ``manifests``, in file order, then of every
    GPU workload no AIWorkload drives."""
    targets = Targets(manifests)
    workloads = [m for m in manifests if m.doc.get("kind") == "AIWorkload"]
    out = [estimate_workload(m, targets, config) for m in workloads]
    driven = {(namespace(m), *c) for m in workloads if (c := claimed(m)) is not None}
    for kind, m in targets.all():
        if (namespace(m), kind, metadata(m).get("name")) in driven:
            continue
        found = estimate_unmanaged(kind, m, config)
        if found is not None:
            out.append(found)
    return out
