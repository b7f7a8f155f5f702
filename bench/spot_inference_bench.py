"""Spot inference benchmark: the spot section of docs/benchmarks.md.

Run: ``.venv/bin/python bench/spot_inference_bench.py --spot-traces DIR [--jobs 2]
[--write]``, DIR a local copy of the SkyPilot spot-traces repository (never copied
into this one). For each multi-day trace in ``../shared/traces`` and each zone group
below, it runs the four policies of ``gpufinops.sim.spot_policies`` over their knobs
and reads each one's dollars at SLO 0.99, preempted requests counted as misses
(``gpufinops bench inference TRACE --spot-trace FILE ...``, without the on-demand
policies that command also runs). Groups under ``16-node`` are for evaluation only:
nothing was tuned on them and they are reported in rows of their own. Missing traces
are skipped with a message.
"""

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from gpufinops.config.model import load_config  # noqa: E402
from gpufinops.sim.report import environment, environment_line  # noqa: E402
from gpufinops.sim.service import ServiceModel  # noqa: E402
from gpufinops.sim.spot import EVALUATION_ONLY  # noqa: E402
from gpufinops.sim.spot_bench import (  # noqa: E402
    COVERAGE_GRID,
    KEDA_GRID,
    KEDA_ON_DEMAND_GRID,
    SpotRun,
    compare,
    load_zones,
    spot_pricing,
)
from gpufinops.sim.spot_policies import SPOT_POLICIES  # noqa: E402
from gpufinops.sim.traces import read_trace  # noqa: E402

TRACES = ROOT.parent / "shared" / "traces"
DOC = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "docs" / "bench"
BEGIN, END = "<!-- spot-bench:begin -->", "<!-- spot-bench:end -->"
DEMAND = ("azure-2024-conversation-10s.csv", "servegen-language-m-small-600s.csv")
"""The multi-day demand traces."""
MAX_ZONES = 8
"""spec.inference.spot.pools holds at most 8 pools: the first 8 zones by name."""


@dataclass(frozen=True)
class Group:
    folder: str
    suffix: str
    """The instance type's file-name suffix, e.g. ``_v100_1.json``."""

    @property
    def evaluation_only(self) -> bool:
        return EVALUATION_ONLY.search(self.folder) is not None

    @property
    def label(self) -> str:
        return f"{self.folder}/*{self.suffix}"

    def files(self, root: Path) -> list[Path]:
        return sorted((root / self.folder).glob(f"*{self.suffix}"))[:MAX_ZONES]


GROUPS = (
    Group("availability/1-node/aws-02-15-2023", "_v100_1.json"),
    Group("preemption/1-node/aws-04-22-2023", "_v100_1.json"),
    Group("availability/16-node/aws-08-27-2023", "_v100_1.json"),
)
KEDA_SPOT_GRID = (0.5, 0.7)
"""keda-spot's grid, coarser than the others': on one zone it is far from the SLO."""


def keda_on_demand(file: str) -> list[SpotRun]:
    """KEDA on on-demand does not depend on the zones: run once per demand trace."""
    trace = read_trace(TRACES / file)
    model = ServiceModel.normalised(trace, 40)
    result = compare(trace, model, (), spot_pricing(load_config(None)), policies=("keda",))
    return result.points["keda"]


def run_pair(file: str, group: Group, root: Path, keda: list[SpotRun]) -> dict[str, Any]:
    started = time.perf_counter()
    trace = read_trace(TRACES / file)
    model = ServiceModel.normalised(trace, 40)
    zones = load_zones(group.files(root), model, None)
    pricing = spot_pricing(load_config(None))
    known = {"keda": keda, "keda-spot": []}
    result = compare(trace, model, zones, pricing, known=known)
    keda_spot = compare(
        trace, model, zones, pricing, keda_grid=KEDA_SPOT_GRID, policies=("keda-spot",)
    )
    result.points["keda-spot"] = keda_spot.points["keda-spot"]
    doc = result.to_json()
    doc["group"] = group.label
    doc["evaluation_only"] = group.evaluation_only
    doc["files"] = [str(p.relative_to(root)) for p in group.files(root)]
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    return doc


def save(doc: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    parts = doc["group"].split("/")
    out = OUT / f"spot-{doc['trace']}-{parts[0]}-{parts[1]}-{parts[2]}.json"
    out.write_text(json.dumps(doc | {"environment": environment()}, indent=2) + "\n")


def _cell(result: dict[str, Any]) -> str:
    mark = "" if result["status"] == "ok" else " ✗"
    return (
        f"{result['usd']:.0f} / {result['gpu_hours']:.0f} / {result['slo_attainment']:.4f} / "
        f"{result['preempted_requests']}{mark}"
    )


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def row(doc: dict[str, Any]) -> str:
    r = doc["results"]
    ratios = doc["ratios"]
    vs_keda, vs_hedge = ratios["usd_vs_keda"], ratios["usd_vs_spothedge"]
    goal = vs_keda is not None and vs_keda <= 0.55 and vs_hedge is not None and vs_hedge < 1
    cells = " | ".join(_cell(r[p]) for p in SPOT_POLICIES)
    return (
        f"| {doc['trace']} | {doc['group']} ({len(doc['zones'])} zones) | {cells} "
        f"| {_ratio(vs_keda)} | {_ratio(vs_hedge)} | {'yes' if goal else 'no'} |"
    )


def render(docs: list[dict[str, Any]]) -> str:
    head = (
        "| demand trace | spot zones | "
        + " | ".join(f"{p}: USD / GPU-h / SLO / preempted" for p in SPOT_POLICIES)
        + " | gpufinops-spot / keda (USD) | gpufinops-spot / spothedge | goals met |"
    )
    rule = "|---|---|" + "---:|" * len(SPOT_POLICIES) + "---:|---:|---|"
    tuned = [row(d) for d in docs if not d["evaluation_only"]]
    held = [row(d) for d in docs if d["evaluation_only"]]
    knobs = []
    for d in docs:
        picks = ", ".join(f"{p} {d['results'][p]['target']:g}" for p in SPOT_POLICIES)
        knobs.append(f"| {d['trace']} | {d['group']} | {picks} | {d['wall_seconds']:.0f} |")
    p = docs[0]["pricing"] if docs else {}
    parts = [
        environment_line(environment()),
        "",
        f"Prices: spot `{p.get('spot_pool')}` ${p.get('spot', 0):.4f} per GPU-hour, "
        f"on-demand `{p.get('on_demand_pool')}` ${p.get('on_demand', 0):.4f} (the packaged "
        "config's one GPU type with both). Each cell: the policy at its cheapest knob reaching "
        "SLO 0.99 (✗: none does; its best point is shown). Grids: KEDA target "
        f"{', '.join(f'{k:g}' for k in KEDA_GRID)} (keda on on-demand: "
        f"{KEDA_ON_DEMAND_GRID[0]:g} to {KEDA_ON_DEMAND_GRID[-1]:g} by 0.05); gpufinops coverage "
        f"{', '.join(f'{k:g}' for k in COVERAGE_GRID)}. Goals: gpufinops-spot <= 0.55 x "
        "keda's dollars and below spothedge's, both at SLO >= 0.99.",
        "",
        "### Tuning and development traces",
        "",
        head,
        rule,
        *tuned,
        "",
        "### Evaluation only (`availability/16-node`: never tuned on)",
        "",
        head,
        rule,
        *held,
        "",
        "### Knobs read and wall time",
        "",
        "| demand trace | spot zones | knob of each policy at its reading | wall s |",
        "|---|---|---|---:|",
        *knobs,
    ]
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spot-traces", type=Path, required=True,
        help="a local copy of the SkyPilot spot-traces repository",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument(
        "--render", action="store_true",
        help="only rebuild the section from the docs/bench/spot-*.json written before",
    )  # fmt: skip
    args = parser.parse_args()
    files = [f for f in DEMAND if (TRACES / f).exists()]
    for f in DEMAND:
        if f not in files:
            print(f"skipped: trace {TRACES / f} not found", file=sys.stderr)
    groups = [g for g in GROUPS if g.files(args.spot_traces)]
    for g in GROUPS:
        if g not in groups:
            print(f"skipped: no {g.label} under {args.spot_traces}", file=sys.stderr)
    if not files or not groups:
        print("skipped: no demand traces or no spot traces (see ../shared/traces/README.md)")
        return 0
    started = time.perf_counter()
    docs: list[dict[str, Any]] = []
    if args.render:
        docs = [json.loads(p.read_text()) for p in sorted(OUT.glob("spot-*.json"))]
    else:
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            kedas = {f: pool.submit(keda_on_demand, f) for f in files}
            keda = {f: fut.result() for f, fut in kedas.items()}
            # The longest runs first, so the two workers finish together.
            pairs = [(f, g) for f in reversed(files) for g in groups]
            futures = [pool.submit(run_pair, f, g, args.spot_traces, keda[f]) for f, g in pairs]
            for fut in as_completed(futures):
                d = fut.result()
                docs.append(d)
                if args.write:
                    save(d)
                print(row(d), file=sys.stderr, flush=True)
    docs.sort(key=lambda d: (d["trace"], d["group"]))
    text = render(docs)
    print(text)
    print(f"\n(wall time {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.write or args.render:
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
