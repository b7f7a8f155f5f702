"""Training jobs with deadlines on real spot availability: the placement core against
the published policies, on the SkyPilot spot traces.

Model
-----
- **Spot availability.** One trace per zone (``SpotTrace``): how many spot instances
  of a type could be obtained at each step (the SkyPilot traces of "Can't Be Late",
  NSDI '24, converted by ``hack/convert-spot-traces.py``). A job on spot in a zone
  holds the instances it needs and is preempted when availability falls below that;
  it can start (or restart) on spot only where enough are available. Jobs are
  replayed one at a time against the whole trace, as in the paper: they do not
  compete for spot capacity. On-demand capacity is always there.
- **Jobs.** The Alibaba GPU pod list: each pod with a GPU and a run time of at least
  ``min_hours`` is one job (arrival, GPUs, true run time). Its arrival is placed in
  the spot trace at its submission time modulo the part of the trace its deadline
  fits in. The deadline is ``slack x run time`` after arrival. The policies know
  only the expected duration, the true run time times a log-normal error
  (``duration_error`` its sigma, seeded).
- **Time.** Steps of the spot trace (its availability changes only there); every
  policy decides at every step. A start (or restart) costs ``restart_seconds``
  billed without progress; a preemption loses the work since the last checkpoint
  (every ``checkpoint_seconds`` of progress).
- **Prices.** Per GPU-hour, of the cheapest spot and the cheapest on-demand pool of
  the operator config: every zone bills the spot price.

Policies
--------
- ``gpufinops``: the shipped core's rule, ``core.placement.deadline.capacity_now``,
  asked every step with what the operator knows (the expected duration, progress,
  whether spot is obtainable), zones chosen as ``choose_pool`` would (the first with
  capacity, staying where it runs).
- ``on-demand``: on-demand from arrival to the end.
- ``greedy``: spot whenever obtainable, stay on it until preempted, wait otherwise;
  on-demand to the end once the time left is below the expected work left plus two
  restarts (the paper's Safety Net).
- ``uniform-progress``: the paper's Uniform Progress with its hysteresis and the
  Safety Net, on the expected duration.
- ``optimal``: the offline optimum, by dynamic programming over the steps
  (``optimal_cost``): it knows every zone's availability and the true run time, pays
  every start, and foresees each zone running dry, so it loses no work. No policy
  in the replay can cost less.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gpufinops.config.model import CapacityType, OperatorConfig
from gpufinops.core.placement.deadline import Capacity, DeadlineView, capacity_now
from gpufinops.sim.traces import TraceError
from gpufinops.sim.training import TraceJob

SLACKS = (1.1, 1.25, 1.5, 2.0, 3.0)
POLICIES = ("gpufinops", "on-demand", "greedy", "uniform-progress", "optimal")
EVALUATION_ONLY = re.compile(r"16-node")
"""Traces reserved for evaluation (never tuned on): reported in rows of their own."""

_NAME = re.compile(r"^(?P<zone>[^_]+)_(?P<instance>[^_]+?)(?:_(?P<count>\d+))?$")


# ---------------------------------------------------------------------- traces


@dataclass(frozen=True)
class SpotTrace:
    """Spot instances obtainable in one zone, every ``step_seconds``."""

    zone: str
    instance: str
    gpus_per_instance: int
    step_seconds: float
    available: np.ndarray
    source: str = ""

    @property
    def steps(self) -> int:
        return len(self.available)

    def to_json(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "instance": self.instance,
            "gpusPerInstance": self.gpus_per_instance,
            "stepSeconds": self.step_seconds,
            "available": [int(v) for v in self.available],
            "source": self.source,
        }


def read_spot_trace(path: Path) -> SpotTrace:
    """A zone's trace in this repository's form (see ``SpotTrace.to_json``); the
    error names the file and the field."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TraceError(f"cannot read spot trace {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise TraceError(f"{path}: expected a JSON object with zone, stepSeconds, available")
    missing = [k for k in ("zone", "stepSeconds", "available") if k not in raw]
    if missing:
        hint = (
            " (a SkyPilot file? convert it with hack/convert-spot-traces.py)"
            if "data" in raw
            else ""
        )
        raise TraceError(f"{path}: missing {', '.join(missing)}{hint}")
    step = raw["stepSeconds"]
    if not isinstance(step, int | float) or not step > 0:
        raise TraceError(f"{path}: stepSeconds must be a positive number, got {step!r}")
    values = raw["available"]
    if not isinstance(values, list) or not values:
        raise TraceError(f"{path}: available must be a non-empty list of counts")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise TraceError(f"{path}: available must hold whole counts >= 0")
    gpus = raw.get("gpusPerInstance", 1)
    if not isinstance(gpus, int) or gpus < 1:
        raise TraceError(f"{path}: gpusPerInstance must be a whole number >= 1, got {gpus!r}")
    return SpotTrace(
        zone=str(raw["zone"]),
        instance=str(raw.get("instance", "")),
        gpus_per_instance=gpus,
        step_seconds=float(step),
        available=np.asarray(values, dtype=np.int64),
        source=str(raw.get("source", path.name)),
    )


def read_zone_trace(path: Path) -> SpotTrace:
    """A zone's trace in either form: the SkyPilot repository's raw file
    (``{"metadata": {"gap_seconds": G}, "data": [...]}``) or this repository's
    (``SpotTrace.to_json``). The error names the file and the field."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TraceError(f"cannot read spot trace {path}: {exc}") from None
    if not isinstance(raw, dict) or not ("data" in raw or "metadata" in raw):
        return read_spot_trace(path)
    meta = raw.get("metadata")
    if not isinstance(meta, dict) or "gap_seconds" not in meta:
        raise TraceError(f"{path}: metadata.gap_seconds is missing")
    gap = meta["gap_seconds"]
    if isinstance(gap, bool) or not isinstance(gap, int | float) or not gap > 0:
        raise TraceError(f"{path}: metadata.gap_seconds must be a positive number, got {gap!r}")
    data = raw.get("data")
    if not isinstance(data, list) or not data:
        raise TraceError(f"{path}: data must be a non-empty list of counts")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data):
        raise TraceError(f"{path}: data must hold whole counts >= 0")
    match = _NAME.match(path.stem)
    return SpotTrace(
        zone=match.group("zone") if match is not None else path.stem,
        instance=match.group("instance") if match is not None else "",
        gpus_per_instance=1,
        step_seconds=float(gap),
        available=np.asarray(data, dtype=np.int64),
        source=path.name,
    )


def convert_skypilot(path: Path, root: Path | None = None) -> SpotTrace:
    """One file of the SkyPilot spot-traces repository in this repository's form.

    Their files are ``{"metadata": {"gap_seconds": G}, "data": [n, ...]}`` named
    ``<zone>_<instance>_<count>.json``; ``n`` is the number of instances obtainable
    (running, for the preemption traces). ``count`` is not the instance's GPUs: a
    ``v100_8`` is a p3.16xlarge with 8 GPUs, a ``v100_1`` a p3.2xlarge with one.
    """
    try:
        raw = json.loads(path.read_text())
        gap = float(raw["metadata"]["gap_seconds"])
        data = [int(v) for v in raw["data"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TraceError(f"{path}: not a SkyPilot spot trace: {exc}") from None
    match = _NAME.match(path.stem)
    if match is None:
        raise TraceError(f"{path}: expected a name <zone>_<instance>_<count>.json")
    instance, count = match.group("instance"), match.group("count")
    gpus = int(count) if count is not None and instance in ("v100", "k80") else 1
    source = str(path.relative_to(root)) if root is not None else path.name
    return SpotTrace(
        zone=match.group("zone"),
        instance=instance if count is None else f"{instance}_{count}",
        gpus_per_instance=gpus,
        step_seconds=gap,
        available=np.asarray(data, dtype=np.int64),
        source=source,
    )


def spot_trace_files(paths: Iterable[Path]) -> list[list[Path]]:
    """Groups of zone traces replayed together: the files given by name form one
    group; a directory gives one group per folder and instance type below it
    (``us-west-2a_v100_1.json`` and ``us-west-2b_v100_1.json`` are two zones of one
    type; a ``k80_8`` file beside them is another group)."""
    groups: list[list[Path]] = []
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            folders: dict[Path, list[Path]] = {}  # (folder / instance type) -> files
            for found in sorted(path.rglob("*.json")):
                kind = found.stem.split("_", 1)[-1]
                folders.setdefault(found.parent / kind, []).append(found)
            if not folders:
                raise TraceError(f"{path}: no *.json spot traces below it")
            groups += list(folders.values())
        else:
            files.append(path)
    if files:
        groups.insert(0, files)
    return groups


# ---------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    name: str
    gpus: float
    arrival: float
    """Seconds from the start of the spot trace."""
    work: float
    """True run time, seconds."""
    expected: float
    """What the policy is told (``expectedDurationSeconds``)."""
    deadline: float

    @property
    def instances(self) -> int:
        return max(1, math.ceil(self.gpus - 1e-9))


@dataclass(frozen=True)
class Options:
    slack: float = 1.5
    restart_seconds: float = 300.0
    checkpoint_seconds: float = 1800.0
    """0: no checkpoints, a preemption loses all work done."""
    duration_error: float = 0.1
    """Sigma of the log-normal error of the expected duration."""
    min_hours: float = 1.0
    max_jobs: int = 300
    seed: int = 0
    step_seconds: float = 0.0
    """Set by ``run`` to the traces' step: how often every policy decides."""


def jobs_for(pods: Sequence[TraceJob], traces: Sequence[SpotTrace], options: Options) -> list[Job]:
    """The trace's training jobs placed in the spot trace, with their deadlines."""
    rng = random.Random(options.seed)
    step = traces[0].step_seconds
    horizon = min(t.steps for t in traces) * step
    long_enough = [p for p in pods if p.work_seconds >= options.min_hours * 3600.0]
    long_enough.sort(key=lambda p: (p.submitted, p.line))
    if len(long_enough) > options.max_jobs:
        long_enough = sorted(
            rng.sample(long_enough, options.max_jobs), key=lambda p: (p.submitted, p.line)
        )
    jobs = []
    for pod in long_enough:
        span = options.slack * pod.work_seconds
        room = horizon - span - step
        if room <= 0:
            continue  # its deadline does not fit in the spot trace
        arrival = math.floor((pod.submitted % room) / step) * step
        error = math.exp(rng.gauss(0.0, options.duration_error)) if options.duration_error else 1
        jobs.append(
            Job(pod.name, pod.gpus, arrival, pod.work_seconds, pod.work_seconds * error,
                arrival + span)
        )  # fmt: skip
    return jobs


# ---------------------------------------------------------------------- replay


@dataclass
class JobState:
    """What a policy sees at a step, and what it may remember."""

    job: Job
    now: float
    on: Capacity = Capacity.WAIT
    zone: int | None = None
    done: float = 0.0
    saved: float = 0.0
    """Checkpointed progress: what survives a preemption."""
    memory: dict[str, Any] = field(default_factory=dict)


Choice = tuple[Capacity, int | None]
Policy = Callable[[JobState, Sequence[int], Options], Choice]
"""(state, instances obtainable per zone now, options) -> (capacity, zone)."""


@dataclass(frozen=True)
class Outcome:
    cost_usd: float
    finish: float
    missed: bool
    preemptions: int
    spot_seconds: float
    on_demand_seconds: float


def replay(
    job: Job,
    traces: Sequence[SpotTrace],
    policy: Policy,
    options: Options,
    prices: tuple[float, float],
) -> Outcome:
    """One job from arrival to finish (or to the end of the trace), step by step."""
    spot_price, od_price = prices
    step = traces[0].step_seconds
    state = JobState(job, job.arrival)
    cost = spot_s = od_s = 0.0
    preemptions = 0
    overhead_left = 0.0
    index = round(job.arrival / step)
    last = min(t.steps for t in traces)
    need = job.instances
    while index < last:
        now = index * step
        state.now = now
        available = [int(t.available[index]) for t in traces]
        if state.on == Capacity.SPOT and state.zone is not None and available[state.zone] < need:
            preemptions += 1
            state.done = state.saved
            state.on, state.zone = Capacity.WAIT, None
        capacity, zone = policy(state, available, options)
        if capacity == Capacity.SPOT and (zone is None or available[zone] < need):
            capacity, zone = Capacity.WAIT, None  # pods pending: nothing runs, nothing billed
        if (capacity, zone) != (state.on, state.zone):
            # A move the policy chooses stops the job gracefully (its progress is kept,
            # as the paper's changeover model has it); only a preemption loses work.
            state.saved = state.done
            if capacity != Capacity.WAIT:
                overhead_left = options.restart_seconds
            state.on, state.zone = capacity, zone
        if state.on == Capacity.WAIT:
            index += 1
            continue
        price = spot_price if state.on == Capacity.SPOT else od_price
        busy = min(overhead_left, step)
        overhead_left -= busy
        work = min(step - busy, job.work - state.done)
        held = busy + work
        cost += price * job.gpus * held / 3600.0
        if state.on == Capacity.SPOT:
            spot_s += held
        else:
            od_s += held
        state.done += work
        if options.checkpoint_seconds > 0:
            state.saved = max(
                state.saved,
                math.floor(state.done / options.checkpoint_seconds) * options.checkpoint_seconds,
            )
        if state.done >= job.work - 1e-9:
            finish = now + held
            return Outcome(cost, finish, finish > job.deadline + 1e-6, preemptions, spot_s, od_s)
        index += 1
    return Outcome(cost, math.inf, True, preemptions, spot_s, od_s)


# ---------------------------------------------------------------------- policies


def _first_zone(available: Sequence[int], need: int, current: int | None) -> int | None:
    """Stay where it runs; else the first zone with enough instances."""
    if current is not None and available[current] >= need:
        return current
    return next((z for z, n in enumerate(available) if n >= need), None)


def _at_risk(state: JobState) -> float:
    return max(0.0, state.done - state.saved) if state.on == Capacity.SPOT else 0.0


def gpufinops_policy(state: JobState, available: Sequence[int], options: Options) -> Choice:
    job = state.job
    zone = _first_zone(available, job.instances, state.zone)
    view = DeadlineView(
        now=state.now, submitted_at=job.arrival, deadline=job.deadline,
        expected_seconds=job.expected, done_seconds=state.done,
        restart_seconds=options.restart_seconds, at_risk_seconds=_at_risk(state),
        on=state.on, spot_obtainable=zone is not None, period_seconds=options.step_seconds,
    )  # fmt: skip
    capacity = capacity_now(view)
    return (capacity, zone if capacity == Capacity.SPOT else None)


def on_demand_policy(state: JobState, available: Sequence[int], options: Options) -> Choice:
    return (Capacity.ON_DEMAND, None)


def _safety_net(state: JobState, options: Options) -> bool:
    """R(t) < C(t) + 2d, looked at one step ahead: the next look is a step away (the
    paper's simulator rounds the same way, up to whole steps)."""
    left = max(0.0, state.job.expected - state.done)
    time_left = state.job.deadline - state.now - options.step_seconds
    return time_left <= left + 2.0 * options.restart_seconds


def greedy_policy(state: JobState, available: Sequence[int], options: Options) -> Choice:
    if state.memory.get("net") or _safety_net(state, options):
        state.memory["net"] = True
        return (Capacity.ON_DEMAND, None)
    zone = _first_zone(available, state.job.instances, state.zone)
    return (Capacity.SPOT, zone) if zone is not None else (Capacity.WAIT, None)


def uniform_progress_policy(state: JobState, available: Sequence[int], options: Options) -> Choice:
    job = state.job
    if state.memory.get("net") or _safety_net(state, options):
        state.memory["net"] = True
        return (Capacity.ON_DEMAND, None)
    rate = job.expected / max(job.deadline - job.arrival, 1e-9)

    def expected_progress(at: float) -> float:
        return min(job.expected, rate * max(0.0, at - job.arrival))

    zone = _first_zone(available, job.instances, state.zone)
    if state.on == Capacity.SPOT and zone == state.zone:
        return (Capacity.SPOT, zone)  # stay on spot until preempted
    if state.on == Capacity.ON_DEMAND:
        caught_up = state.done >= expected_progress(state.now + 2.0 * options.restart_seconds)
        if not caught_up:
            return (Capacity.ON_DEMAND, None)
        return (Capacity.SPOT, zone) if zone is not None else (Capacity.WAIT, None)
    if zone is not None:
        return (Capacity.SPOT, zone)
    if state.done < expected_progress(state.now):
        return (Capacity.ON_DEMAND, None)
    return (Capacity.WAIT, None)


def _grid(step: float, restart: float) -> tuple[int, int]:
    """Units per step and units per restart of the optimum's progress grid: the
    coarsest grid (at most 8 units a step) on which a restart is whole, or within 5 %
    of it. A restart rounded down keeps the optimum a lower bound."""
    for per_step in range(1, 9):
        unit = step / per_step
        units = math.floor(restart / unit)
        if restart - units * unit <= 0.05 * restart:
            return per_step, units
    return 8, math.floor(restart / (step / 8))


def optimal_cost(
    job: Job, traces: Sequence[SpotTrace], prices: tuple[float, float], restart: float = 0.0
) -> float:
    """The cheapest schedule that finishes by the deadline, knowing every zone's
    availability and the true run time in advance (dynamic programming over steps).

    A schedule holds, at each step, nothing, on-demand or spot in a zone that has the
    instances then. Every start (from nothing, or a change of capacity or zone) costs
    ``restart`` seconds billed without progress; progress is kept across a change,
    including the one at the step a zone runs dry (the optimum foresees it, so it
    loses no work). That is the replay's model without the losses only surprise
    causes, so no policy in the replay can cost less. The state is the capacity held
    and the progress net of the restart still to run, on a grid of ``_grid``; a
    restart not whole on it is rounded down, which keeps the result a lower bound.
    """
    spot_price, od_price = prices
    step = traces[0].step_seconds
    per_step, restart_units = _grid(step, restart)
    unit = step / per_step
    # Progress index i is (i - restart_units) units: a start may leave it below zero.
    size = math.ceil(job.work / unit) + restart_units + 1
    progress = (np.arange(size) - restart_units) * unit
    unfinished = progress < job.work - 1e-9
    zones = len(traces)
    # Capacity rows: 0 nothing, 1 on-demand, 2.. spot in zone z.
    rate = np.array([0.0, od_price] + [spot_price] * zones) * job.gpus / 3600.0
    cost = np.full((zones + 2, size), np.inf)
    cost[0, restart_units] = 0.0
    obtainable = np.stack([t.available[: min(x.steps for x in traces)] for t in traces])
    obtainable = obtainable >= job.instances
    rest = job.work - progress
    best = math.inf
    index = round(job.arrival / step)
    while index < obtainable.shape[1] and index * step < job.deadline:
        now = index * step
        held = np.ones(zones + 2, dtype=bool)
        held[2:] = obtainable[:, index]
        cheapest = cost.min(axis=0)
        started = np.full(size, np.inf)
        started[: size - restart_units] = cheapest[restart_units:]
        # At the start of the step: stay on what is held, or start on it (a restart).
        begin = np.minimum(cost, started[None, :])
        begin[~held] = np.inf
        finishing = (rest <= step) & (now + rest <= job.deadline + 1e-6)
        if finishing.any():
            best = min(best, float((begin[1:, finishing] + rate[1:, None] * rest[finishing]).min()))
        cost = np.full_like(cost, np.inf)
        cost[1:, per_step:] = begin[1:, : size - per_step] + rate[1:, None] * step
        cost[:, ~unfinished] = np.inf  # finished in this step: counted above
        cost[0] = cheapest
        index += 1
    return best


POLICY_FUNCTIONS: dict[str, Policy] = {
    "gpufinops": gpufinops_policy,
    "on-demand": on_demand_policy,
    "greedy": greedy_policy,
    "uniform-progress": uniform_progress_policy,
}


# ---------------------------------------------------------------------- runs


@dataclass
class PolicyTotals:
    jobs: int = 0
    cost_usd: float = 0.0
    deadline_misses: int = 0
    preemptions: int = 0
    spot_hours: float = 0.0
    on_demand_hours: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "cost_usd": round(self.cost_usd, 2),
            "deadline_misses": self.deadline_misses,
            "jobs": self.jobs,
            "preemptions": self.preemptions,
            "spot_gpu_hours": round(self.spot_hours, 2),
            "on_demand_gpu_hours": round(self.on_demand_hours, 2),
        }


def prices_of(config: OperatorConfig) -> tuple[float, float]:
    """(spot, on-demand) USD per GPU-hour: the cheapest configured pool of each."""
    spot = [p.gpu_hourly_price_usd for p in config.node_pools
            if p.capacity_type == CapacityType.SPOT and p.gpu_hourly_price_usd]  # fmt: skip
    od = [p.gpu_hourly_price_usd for p in config.node_pools
          if p.capacity_type == CapacityType.ON_DEMAND and p.gpu_hourly_price_usd]  # fmt: skip
    if not spot or not od:
        raise TraceError("the operator config needs a priced spot pool and a priced on-demand pool")
    return min(spot), min(od)


def run(
    pods: Sequence[TraceJob],
    traces: Sequence[SpotTrace],
    options: Options,
    prices: tuple[float, float],
) -> dict[str, Any]:
    """Every policy over the same jobs; the JSON the CLI prints for one (group, slack)."""
    if len({t.step_seconds for t in traces}) != 1:
        steps = sorted({t.step_seconds for t in traces})
        raise TraceError(f"spot traces replayed together need one step, got {steps} s")
    options = replace(options, step_seconds=traces[0].step_seconds)
    jobs = jobs_for(pods, traces, options)
    totals = {name: PolicyTotals() for name in POLICIES}
    for job in jobs:
        for name, policy in POLICY_FUNCTIONS.items():
            out = replay(job, traces, policy, options, prices)
            t = totals[name]
            t.jobs += 1
            t.cost_usd += out.cost_usd
            t.deadline_misses += out.missed
            t.preemptions += out.preemptions
            t.spot_hours += job.gpus * out.spot_seconds / 3600.0
            t.on_demand_hours += job.gpus * out.on_demand_seconds / 3600.0
        best = totals["optimal"]
        best.jobs += 1
        best.cost_usd += optimal_cost(job, traces, prices, options.restart_seconds)
    ours = totals["gpufinops"].cost_usd

    def ratio(other: str) -> float | None:
        theirs = totals[other].cost_usd
        return round(ours / theirs, 4) if theirs > 0 else None

    return {
        "traces": [t.source for t in traces],
        "zones": [t.zone for t in traces],
        "instance": traces[0].instance,
        "evaluation_only": any(EVALUATION_ONLY.search(t.source) for t in traces),
        "slack": options.slack,
        "prices_usd_per_gpu_hour": {"spot": prices[0], "on_demand": prices[1]},
        "options": {
            "restart_seconds": options.restart_seconds,
            "checkpoint_seconds": options.checkpoint_seconds,
            "duration_error": options.duration_error,
            "min_hours": options.min_hours,
            "max_jobs": options.max_jobs,
            "seed": options.seed,
        },
        "results": {name: totals[name].to_json() for name in POLICIES},
        "ratios": {
            "vs_uniform_progress": ratio("uniform-progress"),
            "vs_optimal": ratio("optimal"),
            "vs_on_demand": ratio("on-demand"),
        },
    }


# ---------------------------------------------------------------------- output


def table(runs: Sequence[dict[str, Any]]) -> str:
    """Every policy side by side, a row per group of zone traces and slack; evaluation
    traces last, in rows of their own."""
    from gpufinops.sim.terminal import Column, text_table

    ordered = sorted(runs, key=lambda r: bool(r["evaluation_only"]))
    columns = [Column("traces"), Column("slack", numeric=True), Column("jobs", numeric=True)]
    columns += [
        Column(f"{name} $ (misses)" if name != "optimal" else "optimal $", numeric=True)
        for name in POLICIES
    ]
    columns += [Column("vs UP", numeric=True), Column("vs optimal", numeric=True)]
    rows = []
    for r in ordered:
        first = r["traces"][0]
        where = f"{first.rsplit('/', 1)[0]} {r['instance']} ({len(r['zones'])} zones)"
        if r["evaluation_only"]:
            where += " [evaluation]"
        res = r["results"]
        cells = [where, f"{r['slack']:g}", str(res["optimal"]["jobs"])]
        cells += [
            f"{res[n]['cost_usd']:,.0f} ({res[n]['deadline_misses']})" if n != "optimal"
            else f"{res[n]['cost_usd']:,.0f}"
            for n in POLICIES
        ]  # fmt: skip
        ratios = r["ratios"]
        cells += [f"{ratios['vs_uniform_progress'] or 0:.3f}", f"{ratios['vs_optimal'] or 0:.3f}"]
        rows.append(cells)
    return text_table(columns, rows)


def summary(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per slack, over the replays of the development traces (and, apart, of the
    evaluation traces): deadline misses of each policy, and the mean and range of the
    ratios of gpufinops' cost to Uniform Progress, the optimum and on-demand."""
    groups: dict[tuple[bool, float], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((bool(r["evaluation_only"]), float(r["slack"])), []).append(r)
    out = []
    for (evaluation, slack), members in sorted(groups.items()):

        def spread(name: str, _m: list[dict[str, Any]] = members) -> dict[str, float | None]:
            values = [r["ratios"][name] for r in _m if r["ratios"][name] is not None]
            if not values:
                return {"mean": None, "min": None, "max": None}
            return {"mean": round(sum(values) / len(values), 4), "min": min(values),
                    "max": max(values)}  # fmt: skip

        out.append({
            "evaluation_only": evaluation,
            "slack": slack,
            "replays": len(members),
            "jobs": sum(r["results"]["gpufinops"]["jobs"] for r in members),
            "deadline_misses": {
                name: sum(r["results"][name]["deadline_misses"] for r in members)
                for name in POLICIES if name != "optimal"
            },
            "vs_uniform_progress": spread("vs_uniform_progress"),
            "vs_optimal": spread("vs_optimal"),
            "vs_on_demand": spread("vs_on_demand"),
        })  # fmt: skip
    return out


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    from gpufinops.sim.terminal import Column, text_table

    def spread(s: dict[str, float | None]) -> str:
        if s["mean"] is None:
            return "-"
        return f"{s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}]"

    columns = [
        Column("traces"), Column("slack", numeric=True), Column("jobs", numeric=True),
        Column("misses: gpufinops / UP / greedy"), Column("vs UP, mean [range]"),
        Column("vs optimal, mean [range]"), Column("saved vs on-demand", numeric=True),
    ]  # fmt: skip
    cells = []
    for r in rows:
        m = r["deadline_misses"]
        saved = r["vs_on_demand"]["mean"]
        cells.append([
            f"{'evaluation' if r['evaluation_only'] else 'development'} ({r['replays']})",
            f"{r['slack']:g}", f"{r['jobs']:,}",
            f"{m['gpufinops']} / {m['uniform-progress']} / {m['greedy']}",
            spread(r["vs_uniform_progress"]), spread(r["vs_optimal"]),
            "-" if saved is None else f"{100 * (1 - saved):.1f} %",
        ])  # fmt: skip
    return text_table(columns, cells)


def plot_job(
    pods: Sequence[TraceJob],
    traces: Sequence[SpotTrace],
    options: Options,
    prices: tuple[float, float],
    path: Path,
) -> None:
    """One job's progress under every policy against its deadline, with the spot
    availability of its zones below (the longest job of the replay)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    options = replace(options, step_seconds=traces[0].step_seconds)
    jobs = jobs_for(pods, traces, options)
    if not jobs:
        raise TraceError("no job of the trace fits in the spot trace to plot")
    job = max(jobs, key=lambda j: j.work)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6), height_ratios=(3, 1))
    for name, policy in POLICY_FUNCTIONS.items():
        seen: list[tuple[float, float]] = []

        def watching(
            state: JobState,
            available: Sequence[int],
            o: Options,
            _p: Policy = policy,
            _s: list[tuple[float, float]] = seen,
        ) -> Choice:
            _s.append(((state.now - job.arrival) / 3600.0, state.done / 3600.0))
            return _p(state, available, o)

        out = replay(job, traces, watching, options, prices)
        xs, ys = zip(*seen, strict=True) if seen else ((), ())
        top.plot(xs, ys, label=f"{name}: ${out.cost_usd:,.2f}{' (late)' if out.missed else ''}")
    hours = (job.deadline - job.arrival) / 3600.0
    top.axvline(hours, color="black", linestyle="--", label="deadline")
    top.axhline(job.work / 3600.0, color="grey", linestyle=":", label="work")
    top.set_ylabel("work done (h)")
    top.set_title(f"{job.name}: {job.work / 3600:.1f} h of work, slack {options.slack:g}")
    top.legend(loc="upper left", fontsize="small")
    step = traces[0].step_seconds
    first = round(job.arrival / step)
    count = math.ceil(hours * 3600.0 / step) + 1
    for t in traces:
        window = t.available[first : first + count]
        bottom.step(np.arange(len(window)) * step / 3600.0, window, where="post", label=t.zone)
    bottom.set_ylabel("spot obtainable")
    bottom.set_xlabel("hours since arrival")
    bottom.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
