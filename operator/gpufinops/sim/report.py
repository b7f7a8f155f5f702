"""Showing results: a table for a terminal, markdown for docs, JSON, a plot."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpufinops.core.forecast.series import FloatArray
from gpufinops.sim.run import PolicyRun
from gpufinops.sim.service import Outcome, ServiceModel
from gpufinops.sim.sweep import Bench
from gpufinops.sim.terminal import Column, text_table
from gpufinops.sim.traces import Trace

VS_KEDA_GOAL = 0.75
"""At least 25 % fewer GPU-hours than KEDA at equal SLO."""
VS_ORACLE_GOAL = 1.15


def _wait(value: float) -> str:
    return "inf" if not np.isfinite(value) else f"{value:.2f}"


def _target(result: PolicyRun) -> str:
    return "" if result.target is None else f"{result.target:.2f}"


def describe_model(trace: Trace, model: ServiceModel) -> str:
    tokens = ", token-aware work" if trace.tokens else ""
    tokens += f", {trace.filled_bins} missing bins filled" if trace.filled_bins else ""
    return (
        f"{trace.name}: {trace.days:.2f} days at 1 s, {trace.format}{tokens}; "
        f"capacity {model.capacity_per_replica:.4g} req/s per replica "
        f"(peak minute = {model.peak_replicas} replicas), startup {model.startup_seconds} s, "
        f"lag {model.lag_seconds} s, sync {model.sync_seconds} s, SLO wait <= "
        f"{model.slo_wait_seconds:g} s"
    )


_RESULT_COLUMNS = [
    Column("policy"),
    *(Column(h, numeric=True) for h in ("target", "GPU-h", "x oracle", "SLO")),
    *(Column(h, numeric=True) for h in ("p95 s", "p99 s", "events", "CPU s")),
]


def results_table(results: Sequence[PolicyRun], oracle_gpu_hours: float | None = None) -> str:
    """One row per policy, for a terminal."""
    rows = [
        [
            r.policy,
            _target(r),
            f"{r.gpu_hours:.1f}",
            f"{r.gpu_hours / oracle_gpu_hours:.3f}" if oracle_gpu_hours else "",
            f"{r.slo_attainment:.4f}",
            _wait(r.p95_wait_seconds),
            _wait(r.p99_wait_seconds),
            str(r.scale_events),
            f"{r.cpu_seconds:.1f}",
        ]
        for r in results
    ]
    return text_table(_RESULT_COLUMNS, rows)


def _rows(bench: Bench) -> list[tuple[str, PolicyRun, str]]:
    """(label, result, note) per row: the baselines at their iso-SLO setting."""
    out = []
    for name in ("gpufinops", "reactive"):
        out.append((name, bench.results[name], "default spec"))
    for name, sweep in bench.sweeps.items():
        chosen = sweep.chosen
        if chosen is not None:
            out.append((name, chosen, "cheapest setting reaching the SLO target"))
        else:
            out.append((name, sweep.best, "**unreachable**: best setting shown"))
    out.append(("static", bench.results["static"], "peak need, always on"))
    out.append(("oracle", bench.results["oracle"], "perfect foresight, instant start"))
    return out


def _ratio(value: float | None) -> str:
    return "null" if value is None else f"{value:.3f}"


def bench_markdown(
    bench: Bench,
    cpu: dict[str, float] | None = None,
    pricing: tuple[str, float] | None = None,
) -> str:
    oracle = bench.results["oracle"].gpu_hours
    price = pricing[1] if pricing is not None else None
    billed = f"; billed at {pricing[0]}, ${pricing[1]:.4g}/GPU-hour" if pricing else ""
    lines = [
        f"**{bench.trace.name}** ({bench.trace.days:.1f} days; μ = "
        f"{bench.model.capacity_per_replica:.4g} req/s per replica; SLO target "
        f"{bench.slo_target}; demand read: {bench.model.demand_signal}{billed})",
        "",
        "| policy | setting | GPU-hours | USD | x oracle | SLO attainment | p95 wait s "
        "| p99 wait s | scale events | CPU s | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, r, note in _rows(bench):
        dollars = usd(r.gpu_hours, price)
        lines.append(
            f"| {label} | {_target(r)} | {r.gpu_hours:.0f} "
            f"| {'' if dollars is None else f'{dollars:,.0f}'} | {r.gpu_hours / oracle:.3f} "
            f"| {r.slo_attainment:.4f} | {_wait(r.p95_wait_seconds)} "
            f"| {_wait(r.p99_wait_seconds)} | {r.scale_events} | {r.cpu_seconds:.1f} | {note} |"
        )
    lines += ["", iso_slo_table(bench)]
    ratios = bench.ratios()
    lines += [
        "",
        f"Ratios (gpufinops GPU-hours / theirs at equal SLO): vs_keda {_ratio(ratios['vs_keda'])}"
        f", vs_hpa {_ratio(ratios['vs_hpa'])}, vs_oracle {_ratio(ratios['vs_oracle'])}.",
    ]
    lines.append("Goals: " + "; ".join(goal_lines(bench)) + ".")
    lines.append(own_slo_line(bench))
    for note in bench.notes():
        lines.append(f"Note: {note}.")
    if cpu:
        lines.append("CPU: " + ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items()) + ".")
    lines.append(environment_line(environment()))
    return "\n".join(lines)


def iso_slo_table(bench: Bench) -> str:
    """GPU-hours of every policy at each SLO (``-``: not reached), and gpufinops' ratio
    to keda's and to the same core's without forecasts, each at its cheapest setting
    that reaches it (the gpufinops policies over ``COVERAGE_GRID``)."""
    costs = bench.iso_slo_costs()
    names = ["gpufinops", "reactive", *bench.sweeps, "static"]
    head = "| SLO | " + " | ".join(names) + " | gpufinops / keda | gpufinops / reactive |"
    lines = [head, "|---:|" + "---:|" * (len(names) + 2)]
    for slo, c in costs.items():
        cells = ["-" if c[n] is None else f"{c[n]:.0f}" for n in names]
        ours = c["gpufinops"]

        def ratio(theirs: float | None, ours: float | None = ours) -> str:
            return "-" if ours is None or not theirs else f"{ours / theirs:.3f}"

        lines.append(
            f"| {slo} | " + " | ".join(cells) + f" | {ratio(c.get('keda'))} "
            f"| {ratio(c['reactive'])} |"
        )
    return "\n".join(lines)


def goal_lines(bench: Bench) -> list[str]:
    g = goals(bench)
    slo = bench.results["gpufinops"].slo_attainment

    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "missed")

    return [
        f"SLO >= {bench.slo_target} {mark(g['slo'])} ({slo:.4f})",
        f"vs_keda <= {VS_KEDA_GOAL} {mark(g['vs_keda'])}",
        f"vs_oracle <= {VS_ORACLE_GOAL} {mark(g['vs_oracle'])}",
    ]


def goals(bench: Bench) -> dict[str, bool | None]:
    ratios = bench.ratios()
    keda, oracle = ratios["vs_keda"], ratios["vs_oracle"]
    return {
        "slo": bench.gpufinops_meets_target,
        "vs_keda": None if keda is None else keda <= VS_KEDA_GOAL,
        "vs_oracle": None if oracle is None else oracle <= VS_ORACLE_GOAL,
    }


def environment() -> dict[str, str]:
    """What produced a result: the commit and the library versions that decide it."""
    import platform
    import subprocess
    from importlib import metadata

    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        commit += "+changes" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown (not a git checkout)"
    out = {"commit": commit, "python": platform.python_version()}
    for package in ("gpufinops", "numpy", "scikit-learn", "statsmodels"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def environment_line(env: dict[str, str]) -> str:
    return "Produced by " + ", ".join(f"{k} {v}" for k, v in env.items()) + "."


def usd(gpu_hours: float | None, usd_per_gpu_hour: float | None) -> float | None:
    if gpu_hours is None or usd_per_gpu_hour is None:
        return None
    return round(gpu_hours * usd_per_gpu_hour, 2)


def bench_json(
    bench: Bench,
    cpu: dict[str, float] | None = None,
    pricing: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """``pricing``: (pool, USD per GPU-hour) every policy is billed at."""
    model = bench.model
    price = pricing[1] if pricing is not None else None
    iso = bench.iso_slo_costs()
    return {
        "trace": bench.trace.name,
        "days": round(bench.trace.days, 3),
        "model": {
            "capacity_per_replica": model.capacity_per_replica,
            "peak_replicas": model.peak_replicas,
            "startup_seconds": model.startup_seconds,
            "lag_seconds": model.lag_seconds,
            "sync_seconds": model.sync_seconds,
            "slo_wait_seconds": model.slo_wait_seconds,
            "service_seconds": model.service_seconds,
            "token_aware": bench.trace.tokens,
        },
        "slo_target": bench.slo_target,
        "results": {name: r.to_json() for name, r in bench.results.items()},
        "iso_slo": {name: s.to_json() for name, s in {**bench.sweeps, **bench.core_sweeps}.items()},
        "ratios": bench.ratios(),
        "goals": goals(bench),
        "at_gpufinops_slo": _at_own_slo(bench),
        "notes": bench.notes(),
        "cpu_seconds": cpu or {},
        "demand_signal": model.demand_signal,
        "iso_slo_costs": {
            slo: {name: {"gpu_hours": h, "usd": usd(h, price)} for name, h in costs.items()}
            for slo, costs in iso.items()
        },
        "pricing": (
            {"pool": pricing[0], "usd_per_gpu_hour": pricing[1]} if pricing is not None else None
        ),
        "usd": {name: usd(r.gpu_hours, price) for name, r in bench.results.items()},
        "environment": environment(),
    }


def _at_own_slo(bench: Bench) -> dict[str, Any]:
    own = bench.at_gpufinops_slo()
    return {
        "slo_target": own.slo_target,
        "iso_slo": {name: s.to_json() for name, s in own.sweeps.items()},
        "ratios": own.ratios(),
    }


def own_slo_line(bench: Bench) -> str:
    """The comparison at the attainment gpufinops reached, in one sentence."""
    own = bench.at_gpufinops_slo()
    ratios = own.ratios()
    parts = []
    for name, sweep in own.sweeps.items():
        pick = sweep.chosen
        if pick is None:
            parts.append(f"{name} unreachable")
        else:
            parts.append(
                f"{name} {pick.gpu_hours:.0f} GPU-hours at {pick.target:.2f} "
                f"({pick.slo_attainment:.4f}), vs_{name} {_ratio(ratios[f'vs_{name}'])}"
            )
    return f"At gpufinops' own attainment ({own.slo_target:.4f}): " + "; ".join(parts) + "."


def pareto_plot(bench: Bench, path: Path | str) -> None:
    """GPU-hours against SLO attainment: each swept policy's points as a curve, the
    others as single points, the SLO targets as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpufinops.sim.sweep import SLO_TARGETS

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for name, sweep in {**bench.core_sweeps, **bench.sweeps}.items():
        points = sorted(sweep.points, key=lambda p: p.slo_attainment)
        ax.plot([p.slo_attainment for p in points], [p.gpu_hours for p in points], "o-",
                ms=3, lw=1, label=f"{name} (swept)")  # fmt: skip
    for name in ("gpufinops", "reactive", "static", "oracle"):
        r = bench.results[name]
        shipped = " (as shipped)" if name in bench.core_sweeps else ""
        ax.plot([r.slo_attainment], [r.gpu_hours], "s", ms=6, label=name + shipped)
    for slo in SLO_TARGETS:
        ax.axvline(slo, color="0.6", lw=0.6, ls=":")
    ax.set_xlim(max(0.9, ax.get_xlim()[0]), 1.0005)
    ax.set_xlabel("SLO attainment (share of requests waiting <= the SLO)")
    ax.set_ylabel("GPU-hours")
    ax.set_title(describe_model(bench.trace, bench.model), fontsize=7)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot(outcomes: Sequence[Outcome], path: Path | str, title: str | None = None) -> None:
    """Demand, replicas per policy and the forecast, in replicas (demand / mu)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = outcomes[0]
    trace, mu = first.trace, first.model.capacity_per_replica
    n = trace.seconds
    bucket = max(60, int(np.ceil(n / 4000 / 60)) * 60)  # at most ~4000 points per line
    m = n // bucket
    if m == 0:
        bucket, m = 1, n
    hours = np.arange(m) * bucket / 3600.0

    def per_bucket(values: np.ndarray) -> FloatArray:
        used = np.asarray(values[: m * bucket], dtype=np.float64)
        means: FloatArray = used.reshape(m, bucket).mean(axis=1)
        return means

    fig, ax = plt.subplots(figsize=(14, 5), dpi=110)
    ax.fill_between(hours, per_bucket(trace.work) / mu, color="0.85", label="demand / capacity")
    for outcome in outcomes:
        ax.plot(hours, per_bucket(outcome.billed), lw=0.9, label=f"{outcome.policy} replicas")
        if outcome.forecast is not None and np.isfinite(outcome.forecast).any():
            sync = outcome.model.sync_seconds
            ticks = np.arange(outcome.forecast.shape[0]) * sync
            start = outcome.model.lag_seconds // sync + 1 if outcome.model.lag_seconds else 0
            t = ticks[start : start + outcome.forecast.shape[0]] / 3600.0
            f = outcome.forecast[: t.shape[0]] / mu
            ax.plot(t, f, lw=0.6, ls="--", label=f"{outcome.policy} forecast peak / capacity")
    ax.set_xlabel("hours since trace start")
    ax.set_ylabel("replicas")
    ax.set_title(title or describe_model(trace, first.model), fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
