"""Equal-SLO comparison: every baseline at its cheapest setting that meets the SLO.

A reactive baseline can always buy attainment with idle GPUs, so comparing
GPU-hours at whatever SLO each policy happens to reach says nothing. Each
baseline's knob is searched instead, and its cost is read at the cheapest
setting that reaches the target; when none does, the baseline is
``unreachable`` and no ratio is claimed against it.

The search is a bisection per SLO target (0.95, 0.99, 0.999 and the attainment
gpufinops reached) on the knob in [``LOW``, ``HIGH``], to ``PRECISION``: a larger
target means fewer replicas, so attainment falls as the knob rises and the cheapest
setting that reaches an SLO is the largest that does. A coarse grid (``COARSE``) is run
too: cost is not monotone in the knob (past some target KEDA's queue grows, and
in-flight requests scale it up again), so the cheapest setting reaching an SLO
may lie below the bisection's boundary. Every point evaluated is kept, and the
cost read is that of the cheapest evaluated point reaching the target: a setting
missed between points could only make the reading too expensive, never too cheap.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gpufinops.core.scaling.headroom import COVERAGE
from gpufinops.sim.run import POLICIES, SWEPT, PolicyRun, run_policy
from gpufinops.sim.service import Outcome, ServiceModel
from gpufinops.sim.traces import Trace

LOW, HIGH = 0.05, 1.0
"""The knob's range: keda's in-flight target and hpa's utilisation target, as a
fraction of a saturated replica's."""
PRECISION = 0.005
"""Bisection stops when the bracket is this narrow (a ratio moves well under 1 %)."""
COARSE = tuple(round(0.05 * i, 2) for i in range(1, 21))
"""0.05 to 1.00 by 0.05: the shape of each baseline's cost curve."""

COVERAGE_GRID = (0.9, 0.95, 0.98, 0.99, 0.993, 0.995, 0.997, 0.999)
"""The gpufinops policies' knob: the share of demand the calibrated headroom covers
(0.99 ships). A coarser search than the baselines': it can only overstate
gpufinops' cost at an SLO, never understate it."""

DEFAULT_SLO_TARGET = 0.99
SLO_TARGETS = (0.95, 0.99, 0.999)
"""Where iso-SLO costs are read (the bench's Pareto readings)."""


@dataclass(frozen=True)
class Sweep:
    policy: str
    points: tuple[PolicyRun, ...]
    slo_target: float

    @property
    def chosen(self) -> PolicyRun | None:
        """The cheapest point reaching the SLO target, if any."""
        ok = [p for p in self.points if p.slo_attainment >= self.slo_target]
        return min(ok, key=lambda p: (p.gpu_hours, -p.slo_attainment)) if ok else None

    @property
    def best(self) -> PolicyRun:
        """The point with the highest attainment (cheapest among ties)."""
        return max(self.points, key=lambda p: (p.slo_attainment, -p.gpu_hours))

    @property
    def reachable(self) -> bool:
        return self.chosen is not None

    def to_json(self) -> dict[str, Any]:
        chosen = self.chosen
        pick = chosen or self.best
        return {
            "status": "ok" if chosen is not None else "unreachable",
            "target": pick.target,
            "gpu_hours": pick.gpu_hours,
            "slo_attainment": pick.slo_attainment,
            "grid": [{"target": p.target, "gpu_hours": p.gpu_hours,
                      "slo_attainment": p.slo_attainment} for p in self.points],
        }  # fmt: skip


@dataclass
class Bench:
    """All policies on one trace, with the baselines at equal SLO."""

    trace: Trace
    model: ServiceModel
    slo_target: float
    results: dict[str, PolicyRun]
    sweeps: dict[str, Sweep]
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    core_sweeps: dict[str, Sweep] = field(default_factory=dict)
    """gpufinops and reactive over ``COVERAGE_GRID`` (the shipped setting included)."""

    def at(self, slo_target: float) -> "Bench":
        """The same runs compared at another SLO target (the sweeps are re-read)."""
        sweeps = {name: replace(s, slo_target=slo_target) for name, s in self.sweeps.items()}
        return replace(self, slo_target=slo_target, sweeps=sweeps)

    def at_gpufinops_slo(self) -> "Bench":
        """Compared at the attainment gpufinops reached: the issue's first reading of
        equal SLO, informative when gpufinops misses the fixed target."""
        return self.at(self.results["gpufinops"].slo_attainment)

    def iso_slo_costs(self, slos: Sequence[float] = SLO_TARGETS) -> dict[str, dict[str, Any]]:
        """GPU-hours of each policy at each SLO: a swept policy's cheapest setting that
        reaches it; any other's one run, if it reaches it (None: not reached)."""
        out: dict[str, dict[str, Any]] = {}
        for slo in slos:
            costs: dict[str, float | None] = {}
            for name in ("gpufinops", "reactive", "static"):
                run = self.results[name]
                costs[name] = run.gpu_hours if run.slo_attainment >= slo else None
                if name in self.core_sweeps:
                    chosen = replace(self.core_sweeps[name], slo_target=slo).chosen
                    costs[name] = chosen.gpu_hours if chosen is not None else None
            for name, s in self.sweeps.items():
                chosen = replace(s, slo_target=slo).chosen
                costs[name] = chosen.gpu_hours if chosen is not None else None
            out[f"{slo:g}"] = costs
        return out

    def iso_cost(self, policy: str) -> float | None:
        chosen = self.sweeps[policy].chosen if policy in self.sweeps else None
        return chosen.gpu_hours if chosen is not None else None

    @property
    def gpufinops_meets_target(self) -> bool:
        return self.results["gpufinops"].slo_attainment >= self.slo_target

    def ratios(self) -> dict[str, float | None]:
        """gpufinops GPU-hours over each comparison's; ``None`` when either side
        misses the SLO target (a cost at a lower SLO is not a saving)."""
        ours = self.results["gpufinops"].gpu_hours
        out: dict[str, float | None] = {}
        for policy in SWEPT:
            theirs = self.iso_cost(policy)
            ok = self.gpufinops_meets_target and theirs is not None and theirs > 0
            out[f"vs_{policy}"] = round(ours / theirs, 3) if ok and theirs else None
        oracle = self.results["oracle"].gpu_hours
        ok = self.gpufinops_meets_target and oracle > 0
        out["vs_oracle"] = round(ours / oracle, 3) if ok else None
        return out

    def notes(self) -> list[str]:
        out = []
        if not self.gpufinops_meets_target:
            got = self.results["gpufinops"].slo_attainment
            out.append(
                f"gpufinops reached SLO attainment {got:.4f} < target {self.slo_target}: "
                "its ratios do not count"
            )
        for policy, sweep in self.sweeps.items():
            if not sweep.reachable:
                best = sweep.best
                out.append(
                    f"{policy} is unreachable: no target it was run at reaches "
                    f"{self.slo_target} (best {best.slo_attainment:.4f} at target "
                    f"{best.target}, {best.gpu_hours:.0f} GPU-hours)"
                )
        return out


def sweep(
    policy: str,
    trace: Trace,
    model: ServiceModel,
    slo_target: float,
    grid: Sequence[float] | None = None,
    on_point: Callable[[PolicyRun], None] | None = None,
    search: Sequence[float] = (),
) -> Sweep:
    """``grid``: exactly these knob values. Otherwise ``COARSE`` and a bisection for
    ``slo_target`` and each of ``search`` (see the module's docstring)."""
    points: dict[float, PolicyRun] = {}

    def run(target: float) -> PolicyRun:
        target = round(target, 4)
        if target not in points:
            _, result = run_policy(policy, trace, model, target=target)
            points[target] = result
            if on_point is not None:
                on_point(result)
        return points[target]

    if grid is not None:
        for target in grid:
            run(target)
    else:
        for target in COARSE:
            run(target)
        for slo in dict.fromkeys((slo_target, *search)):
            bisect(run, slo)
    return Sweep(policy, tuple(points[t] for t in sorted(points)), slo_target)


def bisect(run: Callable[[float], PolicyRun], slo: float) -> None:
    """Narrow [LOW, HIGH] to the largest knob whose run reaches ``slo`` (runs cached by
    the caller, so brackets shared between targets are not run twice)."""
    if run(HIGH).slo_attainment >= slo or run(LOW).slo_attainment < slo:
        return  # the cheapest setting reaches it, or none does
    low, high = LOW, HIGH
    while high - low > PRECISION:
        middle = (low + high) / 2
        if run(middle).slo_attainment >= slo:
            low = middle
        else:
            high = middle


def bench(
    trace: Trace,
    model: ServiceModel,
    *,
    slo_target: float = DEFAULT_SLO_TARGET,
    grid: Sequence[float] | None = None,
    refit_seconds: float | None = None,
    on_result: Callable[[str, PolicyRun], None] | None = None,
    coverage_grid: Sequence[float] = COVERAGE_GRID,
) -> Bench:
    """Every policy once at its default, then keda and hpa searched for their cheapest
    setting at each SLO target (or run over ``grid``)."""
    results: dict[str, PolicyRun] = {}
    outcomes: dict[str, Outcome] = {}
    for policy in POLICIES:
        outcome, result = run_policy(policy, trace, model, refit_seconds=refit_seconds)
        outcomes[policy] = outcome
        results[policy] = result
        if on_result is not None:
            on_result(policy, result)
    sweeps = {}
    for policy in SWEPT:

        def on_point(result: PolicyRun, label: str = f"{policy} sweep") -> None:
            if on_result is not None:
                on_result(label, result)

        search = (*SLO_TARGETS, results["gpufinops"].slo_attainment)
        sweeps[policy] = sweep(policy, trace, model, slo_target, grid, on_point, search)
    core_sweeps = {}
    for policy in ("gpufinops", "reactive") if coverage_grid else ():
        shipped = replace(results[policy], target=COVERAGE)
        points = [shipped]
        for coverage in coverage_grid:
            if coverage == COVERAGE:
                continue
            _, result = run_policy(
                policy, trace, model, target=coverage, refit_seconds=refit_seconds
            )
            points.append(result)
            if on_result is not None:
                on_result(f"{policy} sweep", result)
        points.sort(key=lambda p: p.target or 0.0)
        core_sweeps[policy] = Sweep(policy, tuple(points), slo_target)
    oracle = results["oracle"].gpu_hours
    results = {name: _with_oracle(r, oracle) for name, r in results.items()}
    return Bench(trace, model, slo_target, results, sweeps, outcomes, core_sweeps)


def _with_oracle(result: PolicyRun, oracle_gpu_hours: float) -> PolicyRun:
    return replace(result, oracle_gpu_hours=oracle_gpu_hours)
