"""Replaying a GPU job trace through the training placement core on spot pools.

Every decision is the shipped core's: ``choose_pool`` places each job,
``fallback_verdict`` decides fallbacks, ``transitions`` keeps the memory. The simulator only
supplies what a cluster would: time, interruptions, and the jobs' true run times.

Model
-----
- **Jobs.** One row of the Alibaba GPU pod list (``openb_pod_list_*.csv``) is one
  single-pod job. Its work is ``deletion_time - scheduled_time`` seconds; it is
  submitted at ``creation_time`` and starts at once (the original cluster's queueing
  is not replayed: capacity is assumed unlimited, see below). ``qos`` ``BE``
  (best-effort) pods are the training jobs; ``include_all`` takes every pod. Pods
  without a GPU, or whose times are missing or not increasing, are skipped and
  counted. GPUs held are ``num_gpu * gpu_milli / 1000`` (a shared GPU bills its share).
- **What the core is told.** The expected duration is the true work (a user's
  perfect estimate), the deadline is ``submitted + deadline_factor * work``, the
  checkpoint interval and restart overhead are the simulation settings.
- **Interruptions.** Each spot pool's hourly rate comes from
  ``PoolOffer.from_pool`` (the Spot Advisor band ``interruptionRatePerMonth`` of the
  config). Every node the job fills is interrupted by an independent Poisson
  process; any one restarts the whole job. Arrivals are drawn with a seeded
  ``random.Random``, so a seed reproduces a run exactly. A restart costs
  ``restart_seconds`` of held but idle GPUs, and the work since the last
  checkpoint is lost (all of it without checkpoints). Checkpoint writes are free.
- **Events, not ticks.** A job's state only changes at interruptions, so the
  simulation jumps from one to the next; the fallback verdict is taken at each,
  which is when the deadline estimate changes (between interruptions the expected
  finish only moves earlier).
- **Not modelled.** Spot capacity that is not there (pending pods, the
  ``PendingTimeout`` trigger): the trace has no signal for it and any rate would
  be invented. Start windows (the trace has none). Node-level billing: jobs are
  billed per GPU-second, as if pods packed nodes perfectly, on spot and on-demand
  alike, so the comparison is fair but absolute costs are a lower bound.
- **Baseline.** The same work on the cheapest on-demand pool the pod fits,
  without interruptions. ``savings_ratio = 1 - cost / on_demand_cost``.
"""

import csv
import math
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpufinops.api.training import Spot
from gpufinops.config.model import CapacityType, OperatorConfig
from gpufinops.core.placement import transitions
from gpufinops.core.placement.choose import choose_pool, fits, interruption_rate
from gpufinops.core.placement.fallback import fallback_verdict
from gpufinops.core.placement.model import JobProfile, PlacementMemory, PoolOffer
from gpufinops.core.placement.progress import restarted
from gpufinops.sim.traces import TraceError, text_lines

if TYPE_CHECKING:
    from _csv import Reader

REQUIRED_COLUMNS = ("name", "num_gpu", "qos", "creation_time", "deletion_time", "scheduled_time")
MAX_INTERRUPTIONS_PER_JOB = 10_000
"""A job interrupted this often is abandoned (only reachable with fallback off)."""


@dataclass(frozen=True)
class TraceJob:
    name: str
    gpus: float
    submitted: float
    work_seconds: float
    line: int


@dataclass(frozen=True)
class ReplayOptions:
    seed: int = 0
    checkpoint_seconds: float = 1800.0
    """0: the jobs never checkpoint."""
    restart_seconds: float = 300.0
    deadline_factor: float = 2.0
    max_interruptions: int = 3
    fallback: bool = True
    spot: bool = True
    interruptions_per_month: float | None = None
    """Overrides every spot pool's Spot Advisor band (a what-if)."""
    interruptions_per_hour: float | None = None
    """Overrides every spot pool's hourly rate per node, beyond what a band can express."""
    include_all: bool = False


@dataclass(frozen=True)
class JobOutcome:
    cost_usd: float
    on_demand_cost_usd: float
    gpu_seconds: float
    spot_gpu_seconds: float
    finish: float
    deadline: float
    interruptions: int
    fell_back: bool
    abandoned: bool = False

    @property
    def missed(self) -> bool:
        return self.abandoned or self.finish > self.deadline


@dataclass
class TrainingReplay:
    jobs: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    on_demand_cost_usd: float = 0.0
    deadline_misses: int = 0
    interruptions: int = 0
    fallbacks: int = 0
    abandoned: int = 0
    gpu_seconds: float = 0.0
    spot_gpu_seconds: float = 0.0
    work_gpu_seconds: float = 0.0
    cpu_seconds: float = 0.0
    pools: list[str] = field(default_factory=list)

    @property
    def savings_ratio(self) -> float:
        if self.on_demand_cost_usd <= 0:
            return 0.0
        return 1.0 - self.cost_usd / self.on_demand_cost_usd

    def add(self, outcome: JobOutcome, work_gpu_seconds: float) -> None:
        self.jobs += 1
        self.cost_usd += outcome.cost_usd
        self.on_demand_cost_usd += outcome.on_demand_cost_usd
        self.deadline_misses += outcome.missed
        self.interruptions += outcome.interruptions
        self.fallbacks += outcome.fell_back
        self.abandoned += outcome.abandoned
        self.gpu_seconds += outcome.gpu_seconds
        self.spot_gpu_seconds += outcome.spot_gpu_seconds
        self.work_gpu_seconds += work_gpu_seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "cost_usd": round(self.cost_usd, 2),
            "on_demand_cost_usd": round(self.on_demand_cost_usd, 2),
            "savings_ratio": round(self.savings_ratio, 4),
            "deadline_misses": self.deadline_misses,
            "interruptions": self.interruptions,
            "fallbacks": self.fallbacks,
            "abandoned": self.abandoned,
            "gpu_hours": round(self.gpu_seconds / 3600.0, 2),
            "spot_gpu_hours": round(self.spot_gpu_seconds / 3600.0, 2),
            "work_gpu_hours": round(self.work_gpu_seconds / 3600.0, 2),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "pools": self.pools,
        }


def _number(text: str, path: Path, line: int, column: str) -> float | None:
    """A numeric cell; None when empty, an error naming the cell when not a number."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{path}:{line}: column {column!r}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise TraceError(f"{path}:{line}: column {column!r}: not a finite number: {text!r}")
    return value


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TraceError(f"cannot read pod trace {path}: {exc}") from None
    with handle:
        reader = csv.reader(text_lines(path, handle))
        try:
            yield from _cells(path, reader)
        except csv.Error as exc:
            raise TraceError(f"{path}:{reader.line_num}: {exc}") from None


def _cells(path: Path, reader: "Reader") -> Iterator[tuple[int, dict[str, str]]]:
    header = next(reader, None)
    if header is None:
        raise TraceError(f"{path}: empty file, expected a header line")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise TraceError(
            f"{path}:1: missing column(s) {', '.join(missing)}; a pod list needs "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally gpu_milli)"
        )
    for cells in reader:
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise TraceError(
                f"{path}:{reader.line_num}: {len(cells)} fields, the header has {len(header)}"
            )
        yield reader.line_num, dict(zip(header, cells, strict=True))


def read_pods(path: Path, include_all: bool = False) -> tuple[list[TraceJob], Counter[str]]:
    """The jobs of a pod list, and how many rows were skipped for which reason."""
    jobs: list[TraceJob] = []
    skipped: Counter[str] = Counter()
    for line, row in _rows(path):
        if not include_all and row["qos"].strip() != "BE":
            continue
        num_gpu = _number(row["num_gpu"], path, line, "num_gpu") or 0.0
        milli = _number(row.get("gpu_milli", ""), path, line, "gpu_milli")
        if milli is not None and not 0 <= milli <= 1000:
            raise TraceError(f"{path}:{line}: column 'gpu_milli': {milli:g} is not in [0, 1000]")
        gpus = num_gpu * (1000.0 if milli is None else milli) / 1000.0
        created = _number(row["creation_time"], path, line, "creation_time")
        scheduled = _number(row["scheduled_time"], path, line, "scheduled_time")
        deleted = _number(row["deletion_time"], path, line, "deletion_time")
        if gpus <= 0:
            skipped["no GPU"] += 1
        elif created is None or scheduled is None or deleted is None or deleted <= scheduled:
            skipped["unusable times"] += 1
        else:
            jobs.append(TraceJob(row["name"], gpus, created, deleted - scheduled, line))
    return jobs, skipped


def offers_from(config: OperatorConfig, settings: ReplayOptions) -> list[PoolOffer]:
    """The configured pools in order, with the what-if interruption band applied."""
    offers = []
    for pool in config.node_pools:
        if settings.interruptions_per_month is not None and pool.capacity_type == CapacityType.SPOT:
            pool = pool.model_copy(
                update={"interruption_rate_per_month": settings.interruptions_per_month}
            )
        offer = PoolOffer.from_pool(pool)
        if settings.interruptions_per_hour is not None and offer.spot:
            offer = offer.model_copy(
                update={"interruptions_per_hour": settings.interruptions_per_hour}
            )
        offers.append(offer)
    return offers


def _profile(job: TraceJob, settings: ReplayOptions) -> JobProfile:
    return JobProfile(
        gpus=job.gpus,
        expected_duration_seconds=job.work_seconds,
        checkpoint_interval_seconds=settings.checkpoint_seconds or None,
        restart_overhead_seconds=settings.restart_seconds,
        deadline=job.submitted + settings.deadline_factor * job.work_seconds,
        submitted_at=job.submitted,
    )


def on_demand_baseline(job: TraceJob, offers: Sequence[PoolOffer], profile: JobProfile) -> float:
    prices = [o.gpu_hourly_price_usd for o in offers if not o.spot and fits(profile, o)]
    return min(prices) * job.gpus * job.work_seconds / 3600.0 if prices else 0.0


def simulate_job(
    job: TraceJob,
    offers: Sequence[PoolOffer],
    spot: Spot,
    settings: ReplayOptions,
    rng: random.Random,
) -> JobOutcome | None:
    """One job from submission to finish; None when no allowed pool fits it."""
    profile = _profile(job, settings)
    by_name = {o.name: o for o in offers}
    memory = PlacementMemory()
    now = job.submitted
    cost = held = held_spot = 0.0
    fell_back = False

    def hold(offer: PoolOffer, seconds: float) -> None:
        nonlocal cost, held, held_spot
        cost += offer.gpu_hourly_price_usd * job.gpus * seconds / 3600.0
        held += job.gpus * seconds
        held_spot += job.gpus * seconds if offer.spot else 0.0

    def outcome(finish: float, abandoned: bool = False) -> JobOutcome:
        assert profile.deadline is not None
        return JobOutcome(
            cost_usd=cost,
            on_demand_cost_usd=on_demand_baseline(job, offers, profile),
            gpu_seconds=held,
            spot_gpu_seconds=held_spot,
            finish=finish,
            deadline=profile.deadline,
            interruptions=memory.interruptions,
            fell_back=fell_back,
            abandoned=abandoned,
        )

    while True:
        placement = choose_pool(profile, offers, spot, memory, now)
        if placement.pool is None:
            return None
        now = max(now, placement.start_at or now)
        memory = transitions.placed(memory, placement, now)
        offer = by_name[placement.pool]
        rate = interruption_rate(profile, offer)
        while True:
            assert memory.placed_at is not None
            overhead = settings.restart_seconds if restarted(memory) else 0.0
            finish = memory.placed_at + overhead + (job.work_seconds - memory.progress_seconds)
            arrival = now + rng.expovariate(rate) if rate > 0 else math.inf
            if arrival >= finish:
                hold(offer, finish - now)
                return outcome(finish)
            hold(offer, arrival - now)
            now = arrival
            memory = transitions.interrupted(memory, profile, now)
            if memory.interruptions >= MAX_INTERRUPTIONS_PER_JOB:
                return outcome(now, abandoned=True)
            verdict = fallback_verdict(profile, spot, memory, offer, now, pending=False)
            if verdict.fall_back:
                memory = transitions.fell_back(memory, now, profile)
                fell_back = True
                break


def simulate_training(
    path: Path, config: OperatorConfig, settings: ReplayOptions = ReplayOptions()
) -> TrainingReplay:
    """Every job of the trace at ``path`` on the pools of ``config``."""
    started = time.process_time()
    jobs, skipped = read_pods(path, settings.include_all)
    offers = offers_from(config, settings)
    spot = Spot(
        enabled=settings.spot,
        max_interruptions=settings.max_interruptions,
        fallback_to_on_demand=settings.fallback,
    )
    rng = random.Random(settings.seed)
    result = TrainingReplay(skipped=skipped, pools=[o.name for o in offers])
    for job in sorted(jobs, key=lambda j: (j.submitted, j.line)):
        done = simulate_job(job, offers, spot, settings, rng)
        if done is None:
            result.skipped["no allowed pool fits"] += 1
            continue
        result.add(done, job.gpus * job.work_seconds)
    result.cpu_seconds = time.process_time() - started
    return result


def table(result: TrainingReplay, settings: ReplayOptions) -> str:
    """A short report for a terminal."""
    data = result.to_json()
    rows = [
        ("jobs", f"{result.jobs} (skipped {data['skipped']}: {data['skipped_by_reason']})"),
        ("pools", ", ".join(result.pools)),
        ("cost", f"${result.cost_usd:,.2f}"),
        ("on-demand cost", f"${result.on_demand_cost_usd:,.2f}"),
        ("savings", f"{100 * result.savings_ratio:.1f} %"),
        ("deadline misses", str(result.deadline_misses)),
        ("interruptions", str(result.interruptions)),
        ("fallbacks", str(result.fallbacks)),
        ("GPU-hours held", f"{data['gpu_hours']:,} ({data['spot_gpu_hours']:,} on spot)"),
        ("GPU-hours of work", f"{data['work_gpu_hours']:,}"),
        ("CPU seconds", f"{result.cpu_seconds:.2f}"),
        (
            "settings",
            f"seed {settings.seed}, checkpoint {settings.checkpoint_seconds:g} s, restart "
            f"{settings.restart_seconds:g} s, deadline {settings.deadline_factor:g} x work, "
            f"max interruptions {settings.max_interruptions}, fallback "
            f"{'on' if settings.fallback else 'off'}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
