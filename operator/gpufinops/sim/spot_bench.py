"""Spot inference at equal SLO: the four policies of ``spot_policies`` on one demand
trace and one group of zone traces, each at its cheapest setting reaching the SLO.

Dollars, not GPU-hours, are compared: a spot GPU-hour and an on-demand one are not
the same price. Each policy is run over its own knob (KEDA's in-flight target for
``keda``, ``keda-spot`` and ``spothedge``; the headroom coverage for
``gpufinops-spot``) and read at the cheapest point whose attainment, preempted
requests counted as misses, reaches the target; a policy with none is
``unreachable`` and no ratio is claimed against it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpufinops.config.model import CapacityType, OperatorConfig
from gpufinops.core.scaling.headroom import COVERAGE
from gpufinops.sim.fleet import NOTICE_SECONDS, Zone, simulate_fleet, zones_of
from gpufinops.sim.policies import CorePolicy
from gpufinops.sim.run import build_policy
from gpufinops.sim.service import ServiceModel
from gpufinops.sim.spot import read_zone_trace
from gpufinops.sim.spot_policies import SPOT_POLICIES, build_spot_policy
from gpufinops.sim.threads import single_thread
from gpufinops.sim.traces import Trace, TraceError

KEDA_GRID = (0.5, 0.6, 0.7, 0.8)
"""KEDA's in-flight target (fraction of a saturated replica's) for the KEDA-sized
policies: the range where the on-demand sweep finds its SLO 0.99 points."""
KEDA_ON_DEMAND_GRID = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
"""KEDA on on-demand, the dollars every ratio divides by: 0.5 to 0.95 in 0.05 steps
(its runs are quick and made once per demand trace), so its reading is not held up
by the top of the coarser grid."""
COVERAGE_GRID = (COVERAGE, 0.995, 0.999)
"""gpufinops-spot's headroom coverage: the shipped 0.99 and two safer settings."""
ZONE_REPLICAS_PER_PEAK = 2
"""A fully available zone holds this many times the replicas of the peak minute at
100 % utilisation: enough that a single zone could carry the service at its peak."""


@dataclass(frozen=True)
class SpotRun:
    policy: str
    target: float | None
    usd: float
    gpu_hours: float
    on_demand_gpu_hours: float
    spot_gpu_hours: float
    slo_attainment: float
    preempted_requests: int
    preemptions: int
    notices: int
    cpu_seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Pricing:
    spot_pool: str
    spot: float
    on_demand_pool: str
    on_demand: float
    """USD per GPU-hour."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def spot_pricing(config: OperatorConfig, on_demand_pool: str | None = None) -> Pricing:
    """The cheapest on-demand pool with a spot pool of the same GPU (``on_demand_pool``
    if named) and the cheapest such spot pool: a replica is one GPU of either."""
    priced = [p for p in config.node_pools if p.gpu_hourly_price_usd]
    kind = {p.name: p.gpu_type or p.instance_type for p in priced}
    spots = [p for p in priced if p.capacity_type == CapacityType.SPOT]
    ods = [p for p in priced if p.capacity_type == CapacityType.ON_DEMAND
           and any(kind[s.name] == kind[p.name] for s in spots)]  # fmt: skip
    if on_demand_pool is not None:
        ods = [p for p in ods if p.name == on_demand_pool]
    if not ods:
        named = f" named {on_demand_pool}" if on_demand_pool else ""
        raise ValueError(
            f"the config has no priced on-demand pool{named} with a spot pool of the same GPU"
        )
    od = min(ods, key=lambda p: p.gpu_hourly_price_usd)
    spot = min((s for s in spots if kind[s.name] == kind[od.name]),
               key=lambda p: p.gpu_hourly_price_usd)  # fmt: skip
    return Pricing(spot.name, spot.gpu_hourly_price_usd, od.name, od.gpu_hourly_price_usd)


def load_zones(
    paths: Sequence[Path], model: ServiceModel, zone_replicas: int | None
) -> tuple[Zone, ...]:
    if not paths:
        raise TraceError("give at least one --spot-trace")
    traces = [read_zone_trace(p) for p in paths]
    full = zone_replicas or ZONE_REPLICAS_PER_PEAK * (model.peak_replicas or model.max_replicas)
    return zones_of(traces, full)


def run_spot_policy(
    name: str,
    trace: Trace,
    model: ServiceModel,
    zones: tuple[Zone, ...],
    pricing: Pricing,
    target: float,
    *,
    notice_seconds: int = NOTICE_SECONDS,
    refit_seconds: float | None = None,
    drain_seconds: int | None = None,
) -> SpotRun:
    """One run; ``target`` is KEDA's in-flight target or gpufinops' coverage."""
    core = None
    if name == "gpufinops-spot":
        built = build_policy("gpufinops", trace, model, target, refit_seconds)
        assert isinstance(built, CorePolicy)
        core = built
    policy = build_spot_policy(name, model, zones, target, core)
    with single_thread():
        result = simulate_fleet(
            trace, model, policy, zones, notice_seconds=notice_seconds, drain_seconds=drain_seconds
        )
    out = result.outcome
    return SpotRun(
        policy=name,
        target=target,
        usd=round(result.usd((pricing.spot, pricing.on_demand)), 2),
        gpu_hours=round(out.gpu_hours, 3),
        on_demand_gpu_hours=round(result.on_demand_seconds / 3600, 3),
        spot_gpu_hours=round(result.spot_seconds / 3600, 3),
        slo_attainment=round(result.slo_attainment(), 5),
        preempted_requests=round(result.preempted_requests),
        preemptions=result.preemptions,
        notices=result.notices,
        cpu_seconds=round(out.cpu_seconds, 2),
    )


@dataclass
class SpotComparison:
    trace: str
    zones: tuple[str, ...]
    pricing: Pricing
    slo_target: float
    points: dict[str, list[SpotRun]] = field(default_factory=dict)
    zone_replicas: int = 0
    notice_seconds: int = NOTICE_SECONDS

    def chosen(self, policy: str) -> SpotRun | None:
        ok = [p for p in self.points[policy] if p.slo_attainment >= self.slo_target]
        return min(ok, key=lambda p: (p.usd, -p.slo_attainment)) if ok else None

    def shown(self, policy: str) -> tuple[SpotRun, bool]:
        """The point reported and whether it reaches the target (else the best one)."""
        chosen = self.chosen(policy)
        if chosen is not None:
            return chosen, True
        return max(self.points[policy], key=lambda p: (p.slo_attainment, -p.usd)), False

    def results(self) -> dict[str, dict[str, Any]]:
        out = {}
        for policy in self.points:
            run, ok = self.shown(policy)
            out[policy] = run.to_json() | {"status": "ok" if ok else "unreachable"}
        return out

    def ratios(self) -> dict[str, float | None]:
        """gpufinops-spot's dollars over each baseline's, both at the SLO target."""
        ours = self.chosen("gpufinops-spot")
        out: dict[str, float | None] = {}
        for theirs in ("keda", "spothedge"):
            other = self.chosen(theirs)
            ok = ours is not None and other is not None and other.usd > 0
            out[f"usd_vs_{theirs}"] = (
                round(ours.usd / other.usd, 3) if ok and ours and other else None
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "trace": self.trace,
            "zones": list(self.zones),
            "zone_replicas": self.zone_replicas,
            "notice_seconds": self.notice_seconds,
            "slo_target": self.slo_target,
            "pricing": self.pricing.to_json(),
            "results": self.results(),
            "ratios": self.ratios(),
            "grid": {p: [r.to_json() for r in runs] for p, runs in self.points.items()},
        }


def compare(
    trace: Trace,
    model: ServiceModel,
    zones: tuple[Zone, ...],
    pricing: Pricing,
    *,
    slo_target: float = 0.99,
    keda_grid: Sequence[float] = KEDA_GRID,
    coverage_grid: Sequence[float] = COVERAGE_GRID,
    notice_seconds: int = NOTICE_SECONDS,
    refit_seconds: float | None = None,
    policies: Sequence[str] = SPOT_POLICIES,
    on_point: Callable[[SpotRun], None] | None = None,
    known: dict[str, list[SpotRun]] | None = None,
) -> SpotComparison:
    """Every policy over its grid. ``known``: runs already made (keda on on-demand does
    not depend on the zones, so a benchmark over several zone groups runs it once)."""
    full = int(zones[0].replicas.max()) if zones else 0
    result = SpotComparison(
        trace.name, tuple(z.name for z in zones), pricing, slo_target,
        zone_replicas=full, notice_seconds=notice_seconds,
    )  # fmt: skip
    for policy in policies:
        if known is not None and policy in known:
            result.points[policy] = list(known[policy])
            continue
        grid = coverage_grid if policy == "gpufinops-spot" else keda_grid
        if policy == "keda" and keda_grid == KEDA_GRID:
            grid = KEDA_ON_DEMAND_GRID
        runs = []
        for target in grid:
            run = run_spot_policy(
                policy, trace, model, zones, pricing, target,
                notice_seconds=notice_seconds, refit_seconds=refit_seconds,
            )  # fmt: skip
            runs.append(run)
            if on_point is not None:
                on_point(run)
        result.points[policy] = runs
    return result


def spot_table(comparison: SpotComparison) -> str:
    """The human table: each policy at its cheapest point reaching the SLO."""
    from gpufinops.sim.terminal import Column, text_table

    columns = [
        Column("policy"), Column("status"),
        *(Column(h, numeric=True) for h in (
            "knob", "USD", "GPU-h", "on-demand GPU-h", "spot GPU-h", "SLO", "preempted req",
            "preemptions",
        )),
    ]  # fmt: skip
    rows = []
    for policy in comparison.points:
        run, ok = comparison.shown(policy)
        rows.append([
            policy, "ok" if ok else "unreachable", f"{run.target:g}", f"{run.usd:.0f}",
            f"{run.gpu_hours:.0f}", f"{run.on_demand_gpu_hours:.0f}",
            f"{run.spot_gpu_hours:.0f}", f"{run.slo_attainment:.4f}",
            str(run.preempted_requests), str(run.preemptions),
        ])  # fmt: skip
    ratios = comparison.ratios()
    shown = ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in ratios.items())
    p = comparison.pricing
    head = (
        f"spot: {comparison.trace} on zones {', '.join(comparison.zones)} "
        f"({p.spot_pool} ${p.spot:.4f}/GPU-h, {p.on_demand_pool} ${p.on_demand:.4f}/GPU-h), "
        f"SLO target {comparison.slo_target}"
    )
    return "\n".join([head, text_table(columns, rows), f"ratios: {shown}"])
