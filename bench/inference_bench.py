"""Inference autoscaling benchmark: the tables in docs/benchmarks.md.

Run: ``.venv/bin/python bench/inference_bench.py [--jobs 2] [--write]``. For each
trace in ``../shared/traces`` (relative to the repository root) it runs every
policy through the simulator, sweeps the keda and hpa baselines for their
cheapest setting that reaches the SLO target, and backtests the forecaster at a
15-minute horizon on the multi-day traces. It prints markdown; ``--write``
replaces the generated part of docs/benchmarks.md. Traces that are absent are
skipped with a message.
"""

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from gpufinops.sim.backtest import METHODS, backtest  # noqa: E402
from gpufinops.sim.report import bench_markdown, goals  # noqa: E402
from gpufinops.sim.service import ServiceModel  # noqa: E402
from gpufinops.sim.sweep import bench  # noqa: E402
from gpufinops.sim.traces import read_trace  # noqa: E402

TRACES = ROOT.parent / "shared" / "traces"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- inference-bench:begin -->", "<!-- inference-bench:end -->"


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


def run_case(case: Case) -> tuple[str, str, str]:
    """Markdown section, summary row and backtest row (empty when not multi-day)."""
    started = time.process_time()
    trace = read_trace(TRACES / case.file, dict(case.select) or None)
    model = ServiceModel.normalised(trace, 40)
    result = bench(trace, model)
    policies = sum(r.cpu_seconds for r in result.results.values())
    fits = float(result.results["gpufinops"].details.get("forecast_fit_cpu_seconds", 0.0))
    sweeps = sum(p.cpu_seconds for s in result.sweeps.values() for p in s.points)
    cpu = {
        "all six policies": policies,
        "of which forecaster fits": fits,
        "baseline sweeps": sweeps,
        "total": time.process_time() - started,
    }
    section = f"### {trace.name}\n\n`{case.command}`\n\n" + bench_markdown(result, cpu)
    ours = result.results["gpufinops"]
    ratios = result.ratios()
    own = result.at_gpufinops_slo().ratios()
    g = goals(result)

    def iso(name: str) -> str:
        sweep = result.sweeps[name]
        pick = sweep.chosen
        if pick is None:
            best = sweep.best
            return f"unreachable (best {best.slo_attainment:.4f} at {best.target:.2f})"
        return f"{pick.gpu_hours:.0f} @ {pick.target:.2f} ({pick.slo_attainment:.4f})"

    def ratio(value: float | None) -> str:
        return "null" if value is None else f"{value:.3f}"

    row = (
        f"| {trace.name} | {trace.days:.1f} | {ours.gpu_hours:.0f} | {ours.slo_attainment:.4f} "
        f"| {ours.p95_wait_seconds:.2f} / {ours.p99_wait_seconds:.2f} | {iso('keda')} "
        f"| {iso('hpa')} | {result.results['oracle'].gpu_hours:.0f} | {ratio(ratios['vs_keda'])} "
        f"| {ratio(ratios['vs_hpa'])} | {ratio(ratios['vs_oracle'])} "
        f"| {'yes' if g['slo'] else 'no'} / {_yn(g['vs_keda'])} / {_yn(g['vs_oracle'])} "
        f"| {ratio(own['vs_keda'])} / {ratio(own['vs_hpa'])} "
        f"| {policies:.0f} ({fits:.0f}) |"
    )
    backtest_row = ""
    if case.multi_day:
        bt = backtest(trace, 900.0)
        cells = " | ".join(f"{bt.scores[m].smape:.2f} / {bt.scores[m].mase:.3f}" for m in METHODS)
        backtest_row = f"| {trace.name} | {bt.origins} | {bt.refits} | {cells} |"
    return section, row, backtest_row


def _yn(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def render(results: list[tuple[str, str, str]]) -> str:
    summary = [
        "| trace | days | gpufinops GPU-h | SLO | p95 / p99 wait s | keda iso-SLO GPU-h @ "
        "target | hpa iso-SLO GPU-h @ target | oracle GPU-h | vs_keda | vs_hpa | vs_oracle "
        "| goals: SLO / keda / oracle | vs_keda / vs_hpa at gpufinops' own SLO "
        "| CPU s, 6 policies (fits) |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|---|---:|",
        *(row for _, row, _ in results),
    ]
    backtests = [
        "| trace | origins | refits | gpufinops sMAPE % / MASE | seasonal naive | Holt-Winters |",
        "|---|---:|---:|---:|---:|---:|",
        *(row for _, _, row in results if row),
    ]
    parts = [
        "## Summary",
        "",
        *summary,
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
    parser.add_argument("--jobs", type=int, default=1, help="traces benchmarked in parallel")
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    args = parser.parse_args()
    cases = [c for c in CASES if (TRACES / c.file).exists()]
    for c in CASES:
        if c not in cases:
            print(f"skipped: trace {TRACES / c.file} not found", file=sys.stderr)
    if not cases:
        print(f"skipped: no traces in {TRACES} (see ../shared/traces/README.md)")
        return 0
    started = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(run_case, cases))
    else:
        results = [run_case(c) for c in cases]
    text = render(results)
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
