"""Spend anomalies replayed: the shipped detector on a real demand trace, with anomalies
injected where they are known, scored by precision and recall.

Every verdict is the core's: each workload's hours go into its history through
``core.cost.anomaly.record`` (one accounting interval an hour, as the cost pass
records them) and ``detect`` judges every completed hour, as the operator does at
the end of each hour. The simulator only supplies the fleet, its spend and the
injected anomalies, all drawn from one seeded ``random.Random``: a seed reproduces
a run exactly.

Fleet
-----
The trace's requests are averaged per source bin (10 s, 600 s; 60 s for a
per-request trace). Each workload replays that demand series shifted by a whole
number of hours (0-23; the series wraps around) and scaled so that its peak bin
needs 2 to 12 replicas of its capacity. In every bin it runs
``max(1, ceil(demand / capacity))`` replicas, and an hour's replicas are the mean
over its bins (the autoscaler gets what it asks for: desired = running). It has
1, 2, 4 or 8 GPUs per replica on a pool priced 0.8 to 4.5 $/GPU-hour, serves a
fixed number of tokens per request, and belongs to one of four teams and one of
three models (or none). An hour costs replica-hours x GPUs x price. The first
whole hour of the trace is taken as the epoch hour it starts in.

Injected anomalies
------------------
From the day after the first ``minDays`` days, each workload gets one anomaly in
every 72 hours (a last stretch of at least 24 hours gets one too), 1 to 8 hours
long, of one kind, multiplying by ``k`` (uniform in [1.5, 4]):

- ``runawayReplicas``: replicas, GPU-hours and spend; tokens and the autoscaler's
  desired replicas unchanged (expected cause ``ReplicasWithoutDemand``);
- ``demandSurge``: tokens, replicas (desired and running), GPU-hours and spend
  (``Demand``);
- ``dearerPool``: spend only, the same GPU-hours on another, dearer pool (``Price``);
- ``largerReplicas``: GPU-hours and spend, the same replicas (``GPUHoursPerReplica``).

Two anomalies of a workload never touch: at least one normal hour lies between them.

Scoring
-------
- An injection is *detected* when some anomaly raised at an hour within its first
  and last hour has the injected workload as its top driver (``drivers[0]``), whatever
  the anomaly's scope (workload, team or model). Its *delay* is the hours from its
  first hour to the first such anomaly; its *cause* that anomaly's top driver's cause.
- A raised anomaly is a *true positive* when its top driver has an injection covering
  the anomaly's hour; any other is a false positive.
- ``precision = true positives / raised``; *warning precision* the same over the
  anomalies raised as warnings (those whose top driver's cause is not Demand: what
  pages someone); ``recall = detected / injected`` (also per
  kind); *cause accuracy* is the share of the detected injections whose cause is the
  one their kind should produce.
- *False alarms* are the anomalies raised at an hour when no workload has an injection:
  their rate is per workload-week of those clean judged hours.
- An injection whose largest hourly excess is below ``minExcessUSDPerHour`` cannot be
  raised by design; they are counted, and recall is also given without them.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np

from gpufinops.config.model import AnomalyConfig
from gpufinops.core.cost.anomaly import (
    HOUR_SECONDS,
    Cause,
    HourSpend,
    Interval,
    Member,
    SpendAnomaly,
    detect,
    hour_label,
    record,
    with_hours,
)
from gpufinops.core.forecast.series import FloatArray
from gpufinops.sim.terminal import Column, text_table
from gpufinops.sim.traces import Trace

POOLS = (("l4", 0.8), ("a10g", 1.2), ("l40s", 1.9), ("a100", 3.0), ("h100", 4.5))
"""Node pools and their price per GPU-hour (USD)."""
TEAMS = ("search", "ads", "support", "research")
MODELS = ("llama-3-8b", "mistral-7b", "qwen2-72b")
GPUS_PER_REPLICA = (1, 2, 4, 8)
PEAK_REPLICAS = (2, 12)
CAPACITY_PER_REPLICA = (2.0, 20.0)
"""Requests per second one replica serves (the range drawn from)."""
TOKENS_PER_REQUEST = (200.0, 2000.0)
DAY_HOURS = 24
WEEK_HOURS = 7 * DAY_HOURS
MIN_SLOT_HOURS = 24
"""The shortest stretch at the end of the trace that still gets an injection."""
PER_REQUEST_BIN_SECONDS = 60


class Kind(StrEnum):
    """What an injected anomaly changes."""

    RUNAWAY = "runawayReplicas"
    DEMAND = "demandSurge"
    PRICE = "dearerPool"
    LARGER = "largerReplicas"


EXPECTED_CAUSE = {
    Kind.RUNAWAY: Cause.REPLICAS,
    Kind.DEMAND: Cause.DEMAND,
    Kind.PRICE: Cause.PRICE,
    Kind.LARGER: Cause.LARGER_REPLICAS,
}


@dataclass(frozen=True)
class Options:
    workloads: int = 24
    seed: int = 0
    k_low: float = 1.5
    k_high: float = 4.0
    """Injected anomalies multiply by a factor drawn uniformly in [k_low, k_high]."""
    max_duration_hours: int = 8
    every_hours: int = 72
    """One injection per workload in each stretch of this many hours."""


@dataclass(frozen=True)
class Workload:
    name: str
    """``namespace/name``; the namespace is the team."""
    team: str
    model: str | None
    phase_hours: int
    scale: float
    """Multiplies the trace's requests."""
    capacity: float
    """Requests per second one replica serves."""
    gpus: int
    pool: str
    price: float
    """USD per GPU-hour on ``pool``."""
    tokens_per_request: float


@dataclass(frozen=True)
class Figures:
    """One workload's hour, as its accounting interval reports it."""

    replicas: float
    desired: float
    gpu_hours: float
    tokens: float
    usd: float
    pool: str


@dataclass(frozen=True)
class Injection:
    workload: str
    kind: Kind
    k: float
    first: int
    """First epoch hour it changes."""
    last: int
    excess_usd: float = 0.0
    """Its largest hourly spend above what the hour would have cost."""

    def covers(self, hour: int) -> bool:
        return self.first <= hour <= self.last


@dataclass(frozen=True)
class Verdict:
    """What became of one injection."""

    injection: Injection
    detected_at: int | None
    cause: Cause | None

    @property
    def delay(self) -> int | None:
        return None if self.detected_at is None else self.detected_at - self.injection.first

    @property
    def right_cause(self) -> bool:
        return self.cause is EXPECTED_CAUSE[self.injection.kind]


@dataclass(frozen=True)
class AnomalyReplay:
    trace: str
    hours: int
    judged_hours: int
    workloads: int
    seed: int
    config: AnomalyConfig
    verdicts: tuple[Verdict, ...]
    raised: tuple[SpendAnomaly, ...]
    true_positives: int
    warning_true_positives: int
    """True positives among the anomalies raised as warnings (not spend following demand)."""
    false_positive_causes: dict[str, int]
    """The top driver's cause of each false positive, counted (the trace's own changes)."""
    false_alarms: int
    clean_hours: int
    """Judged hours in which no workload had an injection."""

    @property
    def injected(self) -> int:
        return len(self.verdicts)

    @property
    def detected(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.detected_at is not None)

    @property
    def precision(self) -> float | None:
        return _share(self.true_positives, len(self.raised))

    @property
    def warnings(self) -> int:
        return sum(a.severity == "warning" for a in self.raised)

    @property
    def warning_precision(self) -> float | None:
        """Precision of what pages: the anomalies raised as warnings."""
        return _share(self.warning_true_positives, self.warnings)

    @property
    def recall(self) -> float | None:
        return _share(len(self.detected), self.injected)

    def recall_by_kind(self) -> dict[str, float | None]:
        out = {}
        for kind in Kind:
            of_kind = [v for v in self.verdicts if v.injection.kind is kind]
            out[kind.value] = _share(sum(v.detected_at is not None for v in of_kind), len(of_kind))
        return out

    @property
    def below_min_excess(self) -> int:
        floor = self.config.min_excess_usd_per_hour
        return sum(v.injection.excess_usd < floor for v in self.verdicts)

    @property
    def recall_above_min_excess(self) -> float | None:
        floor = self.config.min_excess_usd_per_hour
        kept = [v for v in self.verdicts if v.injection.excess_usd >= floor]
        return _share(sum(v.detected_at is not None for v in kept), len(kept))

    @property
    def cause_accuracy(self) -> float | None:
        detected = self.detected
        return _share(sum(v.right_cause for v in detected), len(detected))

    @property
    def median_delay_hours(self) -> float | None:
        delays = [v.delay for v in self.detected if v.delay is not None]
        return float(statistics.median(delays)) if delays else None

    @property
    def false_alarms_per_workload_week(self) -> float | None:
        weeks = self.workloads * self.clean_hours / WEEK_HOURS
        return self.false_alarms / weeks if weeks > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "trace": self.trace,
            "hours": self.hours,
            "judgedHours": self.judged_hours,
            "workloads": self.workloads,
            "seed": self.seed,
            "config": self.config.model_dump(by_alias=True),
            "injected": self.injected,
            "raised": len(self.raised),
            "truePositives": self.true_positives,
            "falsePositiveCauses": dict(sorted(self.false_positive_causes.items())),
            "precision": _round(self.precision),
            "warnings": self.warnings,
            "warningPrecision": _round(self.warning_precision),
            "recall": _round(self.recall),
            "recallByKind": {k: _round(v) for k, v in self.recall_by_kind().items()},
            "belowMinExcess": self.below_min_excess,
            "recallAboveMinExcess": _round(self.recall_above_min_excess),
            "causeAccuracy": _round(self.cause_accuracy),
            "medianDelayHours": self.median_delay_hours,
            "falseAlarms": self.false_alarms,
            "cleanHours": self.clean_hours,
            "falseAlarmsPerWorkloadWeek": _round(self.false_alarms_per_workload_week),
            "examples": [a.message for a in self.raised[:3]],
            "injections": [_verdict_json(v) for v in self.verdicts],
        }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _verdict_json(v: Verdict) -> dict[str, Any]:
    i = v.injection
    return {
        "workload": i.workload,
        "kind": i.kind.value,
        "k": round(i.k, 3),
        "first": hour_label(i.first),
        "last": hour_label(i.last),
        "excessUSDPerHour": round(i.excess_usd, 2),
        "detected": hour_label(v.detected_at) if v.detected_at is not None else None,
        "cause": v.cause.value if v.cause is not None else None,
    }


# ------------------------------------------------------------------ the fleet


def bin_rates(trace: Trace) -> FloatArray:
    """Requests per second in each source bin of each whole hour: (hours, bins per hour)."""
    step = trace.source_step
    width = round(step) if step is not None and step >= 1 else PER_REQUEST_BIN_SECONDS
    if int(HOUR_SECONDS) % width:
        width = PER_REQUEST_BIN_SECONDS
    hours = trace.seconds // int(HOUR_SECONDS)
    per_second = trace.requests[: hours * int(HOUR_SECONDS)]
    rates: FloatArray = per_second.reshape(hours, int(HOUR_SECONDS) // width, width).mean(axis=2)
    return rates


def make_workloads(rng: random.Random, peak_rate: float, count: int) -> list[Workload]:
    """``count`` workloads drawn from ``rng``: scale, capacity, GPUs, pool, team, model."""
    out = []
    for i in range(count):
        team = rng.choice(TEAMS)
        model = rng.choice((*MODELS, None))
        pool, price = rng.choice(POOLS)
        capacity = rng.uniform(*CAPACITY_PER_REPLICA)
        peak = rng.randint(*PEAK_REPLICAS)
        out.append(
            Workload(
                name=f"{team}/svc-{i:02d}",
                team=team,
                model=model,
                phase_hours=rng.randrange(DAY_HOURS),
                scale=peak * capacity / peak_rate,
                capacity=capacity,
                gpus=rng.choice(GPUS_PER_REPLICA),
                pool=pool,
                price=price,
                tokens_per_request=rng.uniform(*TOKENS_PER_REQUEST),
            )
        )
    return out


def hourly(workload: Workload, rates: FloatArray) -> list[Figures]:
    """The workload's hours: replicas per bin averaged over the hour, tokens, spend."""
    demand = np.roll(rates, -workload.phase_hours, axis=0) * workload.scale
    # A hair below the boundary: the peak bin needs exactly its replicas, not one more.
    replicas = np.maximum(1.0, np.ceil(demand / workload.capacity - 1e-9)).mean(axis=1)
    requests = demand.mean(axis=1) * HOUR_SECONDS
    out = []
    for r, n in zip(replicas.tolist(), requests.tolist(), strict=True):
        gpu_hours = r * workload.gpus
        out.append(
            Figures(
                r, r, gpu_hours, n * workload.tokens_per_request, gpu_hours * workload.price,
                workload.pool,
            )
        )  # fmt: skip
    return out


def injected(figures: Figures, kind: Kind, k: float) -> Figures:
    """The hour as the anomaly of ``kind`` changes it."""
    if kind is Kind.RUNAWAY:
        return replace(
            figures, replicas=figures.replicas * k, gpu_hours=figures.gpu_hours * k,
            usd=figures.usd * k,
        )  # fmt: skip
    if kind is Kind.DEMAND:
        return Figures(
            figures.replicas * k, figures.desired * k, figures.gpu_hours * k, figures.tokens * k,
            figures.usd * k, figures.pool,
        )  # fmt: skip
    if kind is Kind.PRICE:
        return replace(figures, usd=figures.usd * k, pool=f"{figures.pool}-dearer")
    return replace(figures, gpu_hours=figures.gpu_hours * k, usd=figures.usd * k)


def schedule(
    rng: random.Random, workloads: Sequence[Workload], hours: int, start: int, options: Options
) -> list[tuple[str, Kind, float, int, int]]:
    """(workload, kind, k, first, last) in trace hours: one per workload in every
    ``every_hours`` from ``start``, each followed by at least one normal hour."""
    out = []
    for w in workloads:
        begin = start
        while hours - begin >= MIN_SLOT_HOURS:
            end = min(begin + options.every_hours, hours)
            duration = rng.randint(1, options.max_duration_hours)
            first = rng.randint(begin, end - duration - 1)
            kind = rng.choice(list(Kind))
            k = rng.uniform(options.k_low, options.k_high)
            out.append((w.name, kind, k, first, first + duration - 1))
            begin = end
    return out


def interval(hour: int, figures: Figures) -> Interval:
    """One hour of accounting, as the cost pass reports it."""
    start = datetime.fromtimestamp(hour * HOUR_SECONDS, UTC)
    return Interval(
        start,
        start + timedelta(hours=1),
        {figures.pool: figures.usd},
        figures.gpu_hours,
        figures.replicas,
        figures.desired,
        figures.tokens / HOUR_SECONDS,
    )


# ------------------------------------------------------------------ the replay


def replay(
    trace: Trace,
    cfg: AnomalyConfig,
    options: Options | None = None,
    progress: Callable[[float], None] | None = None,
) -> AnomalyReplay:
    """Build the fleet, inject, replay hour by hour through the core, and score."""
    options = options or Options()
    rng = random.Random(options.seed)
    rates = bin_rates(trace)
    hours = int(rates.shape[0])
    start = (cfg.min_days + 1) * DAY_HOURS
    if hours - start < MIN_SLOT_HOURS:
        raise ValueError(
            f"{trace.name}: {hours} whole hours; the replay needs at least "
            f"{start + MIN_SLOT_HOURS} (minDays {cfg.min_days} + 1 day before the first "
            f"injection, and a day to inject in)"
        )
    peak_rate = float(rates.max())
    if peak_rate <= 0:
        raise ValueError(f"{trace.name}: no requests in its whole hours")
    workloads = make_workloads(rng, peak_rate, options.workloads)
    base = math.floor(trace.start / HOUR_SECONDS)
    series = {w.name: hourly(w, rates) for w in workloads}
    planned = schedule(rng, workloads, hours, start, options)
    injections = []
    for name, kind, k, first, last in planned:
        changed = {h: injected(series[name][h], kind, k) for h in range(first, last + 1)}
        excess = max(changed[h].usd - series[name][h].usd for h in changed)
        series[name][first : last + 1] = list(changed.values())
        injections.append(Injection(name, kind, k, base + first, base + last, excess))
    histories: dict[str, tuple[HourSpend, ...]] = {w.name: () for w in workloads}
    raised: list[SpendAnomaly] = []
    for i in range(hours):
        hour = base + i
        for w in workloads:
            histories[w.name] = record(histories[w.name], interval(hour, series[w.name][i]))
        if i >= DAY_HOURS:
            members = [
                Member(w.name, w.team, w.model, with_hours(histories[w.name])) for w in workloads
            ]
            raised.extend(detect(members, hour, cfg))
        if progress is not None:
            progress((i + 1) / hours)
    return score(
        trace.name, hours, options, cfg, injections, raised, range(base + DAY_HOURS, base + hours)
    )


def score(
    name: str,
    hours: int,
    options: Options,
    cfg: AnomalyConfig,
    injections: Sequence[Injection],
    raised: Sequence[SpendAnomaly],
    judged: range,
) -> AnomalyReplay:
    """Apply the scoring rules of the module's docstring."""
    by_workload: dict[str, list[Injection]] = {}
    for inj in injections:
        by_workload.setdefault(inj.workload, []).append(inj)
    true_positives = warning_true_positives = 0
    false_positive_causes: dict[str, int] = {}
    for anomaly in raised:
        top = anomaly.drivers[0] if anomaly.drivers else None
        if top is not None and any(i.covers(anomaly.hour) for i in by_workload.get(top.member, ())):
            true_positives += 1
            warning_true_positives += anomaly.severity == "warning"
        else:
            cause = top.cause.value if top is not None else "none"
            false_positive_causes[cause] = false_positive_causes.get(cause, 0) + 1
    verdicts = []
    for inj in injections:
        hit = next(
            (
                a
                for a in raised
                if inj.covers(a.hour) and a.drivers and a.drivers[0].member == inj.workload
            ),
            None,
        )
        verdicts.append(
            Verdict(
                inj,
                hit.hour if hit is not None else None,
                hit.drivers[0].cause if hit is not None else None,
            )
        )
    dirty = {h for inj in injections for h in range(inj.first, inj.last + 1)}
    return AnomalyReplay(
        trace=name,
        hours=hours,
        judged_hours=len(judged),
        workloads=options.workloads,
        seed=options.seed,
        config=cfg,
        verdicts=tuple(verdicts),
        raised=tuple(raised),
        true_positives=true_positives,
        warning_true_positives=warning_true_positives,
        false_positive_causes=false_positive_causes,
        false_alarms=sum(a.hour not in dirty for a in raised),
        clean_hours=sum(h not in dirty for h in judged),
    )


# ------------------------------------------------------------------ for a terminal


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_KIND_HEADERS = {
    Kind.RUNAWAY: "runaway",
    Kind.DEMAND: "demand",
    Kind.PRICE: "price",
    Kind.LARGER: "larger",
}


def table(results: Sequence[AnomalyReplay], cpu_seconds: Sequence[float]) -> str:
    """One row per trace, then the settings and a few of the anomalies raised."""
    columns = [
        Column("trace"),
        *(Column(h, numeric=True) for h in ("days", "workloads", "injected", "raised", "TP")),
        *(Column(h, numeric=True) for h in ("precision", "warnings", "warn. prec.", "recall")),
        *(Column(f"recall {h}", numeric=True) for h in _KIND_HEADERS.values()),
        *(Column(h, numeric=True) for h in ("< min $", "cause acc.", "median delay h")),
        *(Column(h, numeric=True) for h in ("false alarms/wl-week", "CPU s")),
    ]
    rows = []
    for r, cpu in zip(results, cpu_seconds, strict=True):
        by_kind = r.recall_by_kind()
        delay = r.median_delay_hours
        rows.append(
            [
                r.trace, f"{r.hours / DAY_HOURS:.1f}", str(r.workloads), str(r.injected),
                str(len(r.raised)), str(r.true_positives), _ratio(r.precision),
                str(r.warnings), _ratio(r.warning_precision), _ratio(r.recall),
                *(_ratio(by_kind[k.value]) for k in _KIND_HEADERS),
                str(r.below_min_excess), _ratio(r.cause_accuracy),
                "-" if delay is None else f"{delay:g}",
                _ratio(r.false_alarms_per_workload_week), f"{cpu:.1f}",
            ]
        )  # fmt: skip
    lines = [text_table(columns, rows)]
    if results:
        first = results[0]
        config = first.config.model_dump(by_alias=True)
        settings = ", ".join(f"{k} {json.dumps(v)}" for k, v in config.items())
        lines.append(f"seed {first.seed}; {settings}")
    for r in results:
        for message in (a.message for a in r.raised[:3]):
            lines.append(f"{r.trace}: {message}")
    return "\n".join(lines)
