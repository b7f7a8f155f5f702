"""Inference autoscaling benchmark: the tables in docs/benchmarks.md.

Run: ``.venv/bin/python bench/inference_bench.py [--jobs 2] [--write]``. For each
trace in ``../shared/traces`` (relative to the repository root) it runs every
policy through the simulator, searches each baseline's knob (and the gpufinops
policies' headroom coverage) for its cheapest setting at SLO 0.95, 0.99 and
0.999, bills every policy at the packaged config's on-demand A100 price, and
backtests the forecaster at a 15-minute horizon on the multi-day traces. On the
multi-day traces it then varies the start-up time, the scrape lag and the
missing bins (the sensitivity table). It prints markdown; ``--write`` replaces
the generated part of docs/benchmarks.md and writes each trace's Pareto plot and
JSON to docs/bench/. Traces that are absent are skipped with a message. Every
number it prints comes with the commit and library versions that produced it.
"""

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from gpufinops.config.model import load_config  # noqa: E402
from gpufinops.core.cost.accounting import gpu_prices  # noqa: E402
from gpufinops.sim.backtest import METHODS, backtest  # noqa: E402
from gpufinops.sim.report import (  # noqa: E402
    bench_json,
    bench_markdown,
    environment,
    environment_line,
    goals,
    pareto_plot,
)
from gpufinops.sim.run import run_policy  # noqa: E402
from gpufinops.sim.service import ServiceModel  # noqa: E402
from gpufinops.sim.sweep import bench, sweep  # noqa: E402
from gpufinops.sim.traces import read_trace  # noqa: E402

TRACES = ROOT.parent / "shared" / "traces"
DOC = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "docs" / "bench"
BEGIN, END = "<!-- inference-bench:begin -->", "<!-- inference-bench:end -->"
POOL = "a100-on-demand"
SENSITIVITY_COVERAGE = (0.95, 0.99, 0.995, 0.999)
"""The gpufinops policies' coverage in the sensitivity runs (coarser than the main
runs: it can only overstate their cost at 0.99)."""


@dataclass(frozen=True)
class Case:
    file: str
    select: tuple[tuple[str, str], ...] = ()
    multi_day: bool = True

    @property
    def command(self) -> str:
        select = "".join(f" --select '{k}={v}'" for k, v in self.select)
        return f"gpufinops bench inference ../shared/traces/{self.file}{select}"


CASES = (
    Case("azure-2024-conversation-10s.csv"),
    Case("servegen-language-m-small-600s.csv"),
    Case("alibaba-genai-qps.csv", (("request_type", "Generative Requests"),), multi_day=False),
)


@dataclass(frozen=True)
class Variant:
    label: str
    flags: str
    model: dict[str, int] = field(default_factory=dict)
    fill_missing: bool = False


VARIANTS = (
    Variant("start-up 60 s", "--startup-seconds 60", {"startup_seconds": 60}),
    Variant("start-up 300 s", "--startup-seconds 300", {"startup_seconds": 300}),
    Variant("start-up 600 s", "--startup-seconds 600", {"startup_seconds": 600}),
    Variant("scrape lag 60 s", "--lag-seconds 60", {"lag_seconds": 60}),
    Variant("missing bins filled", "--fill-missing", fill_missing=True),
)


def pricing() -> tuple[str, float]:
    return POOL, gpu_prices(load_config(None))[POOL]


def run_case(case: Case, write: bool) -> tuple[str, str, str]:
    """Markdown section, summary row and backtest row (empty when not multi-day)."""
    started = time.process_time()
    trace = read_trace(TRACES / case.file, dict(case.select) or None)
    model = ServiceModel.normalised(trace, 40)
    result = bench(trace, model)
    price = pricing()
    policies = sum(r.cpu_seconds for r in result.results.values())
    fits = float(result.results["gpufinops"].details.get("forecast_fit_cpu_seconds", 0.0))
    sweeps = sum(p.cpu_seconds for s in result.sweeps.values() for p in s.points)
    core = sum(p.cpu_seconds for s in result.core_sweeps.values() for p in s.points)
    cpu = {
        "all six policies": policies,
        "of which forecaster fits": fits,
        "baseline searches": sweeps,
        "gpufinops and reactive coverage grids": core,
        "total": time.process_time() - started,
    }
    if write:
        OUT.mkdir(parents=True, exist_ok=True)
        pareto_plot(result, OUT / f"{trace.name}-pareto.png")
        doc = bench_json(result, cpu, price)
        (OUT / f"{trace.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    section = f"### {trace.name}\n\n`{case.command}`\n\n" + bench_markdown(result, cpu, price)
    if write:
        section += (
            f"\n\nPareto: [plot](bench/{trace.name}-pareto.png), "
            f"[JSON](bench/{trace.name}.json) (`--json`, `--pareto FILE.png`)."
        )
    ours = result.results["gpufinops"]
    iso = result.iso_slo_costs()
    g = goals(result)

    def cell(slo: str, name: str) -> str:
        value = iso[slo][name]
        return "-" if value is None else f"{value:.0f}"

    def ratio(slo: str, theirs: str) -> str:
        a, b = iso[slo]["gpufinops"], iso[slo][theirs]
        return "-" if a is None or not b else f"{a / b:.3f}"

    row = (
        f"| {trace.name} | {trace.days:.1f} | {ours.gpu_hours:.0f} ({ours.slo_attainment:.4f}) "
        + "".join(
            f"| {cell(s, 'gpufinops')} / {cell(s, 'keda')} / {cell(s, 'reactive')} "
            f"| {ratio(s, 'keda')} / {ratio(s, 'reactive')} "
            for s in ("0.95", "0.99", "0.999")
        )
        + f"| {'yes' if g['slo'] else 'no'} | {policies:.0f} ({fits:.0f}) |"
    )
    backtest_row = ""
    if case.multi_day:
        bt = backtest(trace, 900.0)
        cells = " | ".join(f"{bt.scores[m].smape:.2f} / {bt.scores[m].mase:.3f}" for m in METHODS)
        backtest_row = f"| {trace.name} | {bt.origins} | {bt.refits} | {cells} |"
    return section, row, backtest_row


def run_variant(case: Case, variant: Variant) -> str:
    """One sensitivity row: each policy at its cheapest setting reaching SLO 0.99."""
    trace = read_trace(TRACES / case.file, dict(case.select) or None, variant.fill_missing)
    model = ServiceModel.normalised(trace, 40, **variant.model)  # type: ignore[arg-type]
    cheapest: dict[str, float | None] = {}
    shipped = None
    for name in ("gpufinops", "reactive"):
        points = [run_policy(name, trace, model, target=c)[1] for c in SENSITIVITY_COVERAGE]
        ok = [p.gpu_hours for p in points if p.slo_attainment >= 0.99]
        cheapest[name] = min(ok) if ok else None
        if name == "gpufinops":
            shipped = points[SENSITIVITY_COVERAGE.index(0.99)]
    keda = sweep("keda", trace, model, 0.99).chosen
    cheapest["keda"] = keda.gpu_hours if keda is not None else None

    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    def ratio(a: float | None, b: float | None) -> str:
        return "-" if a is None or not b else f"{a / b:.3f}"

    assert shipped is not None
    ours = cheapest["gpufinops"]
    return (
        f"| {trace.name} | {variant.label} | `{variant.flags or '(none)'}` "
        f"| {shipped.gpu_hours:.0f} ({shipped.slo_attainment:.4f}) "
        f"| {show(ours)} | {show(cheapest['reactive'])} | {show(cheapest['keda'])} "
        f"| {ratio(ours, cheapest['keda'])} | {ratio(ours, cheapest['reactive'])} |"
    )


def _yn(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def render(results: list[tuple[str, str, str]], sensitivity: list[str]) -> str:
    summary = [
        "| trace | days | gpufinops as shipped: GPU-h (SLO) "
        "| SLO 0.95: GPU-h of gpufinops / keda / reactive | ratio to keda / to reactive "
        "| SLO 0.99: GPU-h | ratios | SLO 0.999: GPU-h | ratios | shipped meets 0.99 "
        "| CPU s, 6 policies (fits) |",
        "|---|---:|---:|---|---|---|---|---|---|---|---:|",
        *(row for _, row, _ in results),
    ]
    backtests = [
        "| trace | origins | refits | gpufinops sMAPE % / MASE | seasonal naive | Holt-Winters |",
        "|---|---:|---:|---:|---:|---:|",
        *(row for _, _, row in results if row),
    ]
    variants = [
        "| trace | variant | flags | gpufinops as shipped: GPU-h (SLO) "
        "| gpufinops iso-0.99 GPU-h | reactive iso-0.99 | keda iso-0.99 "
        "| gpufinops / keda | gpufinops / reactive |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
        *sensitivity,
    ]
    parts = [
        environment_line(environment()),
        "",
        "## Summary",
        "",
        "Each policy at its cheapest setting that reaches the SLO (`-`: none does); "
        "ratios are gpufinops' GPU-hours over keda's and over the same core's without "
        "forecasts (reactive).",
        "",
        *summary,
        "",
        "## Sensitivity (SLO 0.99)",
        "",
        "The same, per variant of the service model: `gpufinops bench inference TRACE "
        "FLAGS`; the gpufinops policies at coverage 0.95, 0.99, 0.995 and 0.999 only, keda "
        "searched as above.",
        "",
        *variants,
        "",
        "## Forecast backtest (15-minute horizon, peak of the per-minute demand)",
        "",
        *backtests,
        "",
        "## Per trace",
        "",
        "\n\n".join(section for section, _, _ in results),
    ]
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument(
        "--no-sensitivity", action="store_true", help="skip the sensitivity variants"
    )
    args = parser.parse_args()
    cases = [c for c in CASES if (TRACES / c.file).exists()]
    for c in CASES:
        if c not in cases:
            print(f"skipped: trace {TRACES / c.file} not found", file=sys.stderr)
    if not cases:
        print(f"skipped: no traces in {TRACES} (see ../shared/traces/README.md)")
        return 0
    started = time.perf_counter()
    variants = (
        [] if args.no_sensitivity else [(c, v) for c in cases if c.multi_day for v in VARIANTS]
    )
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        mains = [pool.submit(run_case, c, args.write) for c in cases]
        others = [pool.submit(run_variant, c, v) for c, v in variants]
        results = [f.result() for f in mains]
        rows: dict[str, list[str]] = {}
        for (c, _), f in zip(variants, others, strict=True):
            rows.setdefault(c.file, []).append(f.result())
    sensitivity: list[str] = []
    for c in cases:
        if c.file in rows:
            sensitivity += rows[c.file]
    text = render(results, sensitivity)
    print(text)
    print(f"\n(wall time {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.write:
        doc = DOC.read_text()
        head, _, rest = doc.partition(BEGIN)
        _, found, tail = rest.partition(END)
        if not found:
            print(f"error: {DOC} has no {BEGIN} ... {END} block", file=sys.stderr)
            return 1
        DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
        print(f"updated {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
