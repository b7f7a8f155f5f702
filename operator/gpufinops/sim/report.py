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


def bench_markdown(bench: Bench, cpu: dict[str, float] | None = None) -> str:
    oracle = bench.results["oracle"].gpu_hours
    lines = [
        f"**{bench.trace.name}** ({bench.trace.days:.1f} days; μ = "
        f"{bench.model.capacity_per_replica:.4g} req/s per replica; SLO target "
        f"{bench.slo_target})",
        "",
        "| policy | setting | GPU-hours | x oracle | SLO attainment | p95 wait s | p99 wait s "
        "| scale events | CPU s | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, r, note in _rows(bench):
        lines.append(
            f"| {label} | {_target(r)} | {r.gpu_hours:.0f} | {r.gpu_hours / oracle:.3f} "
            f"| {r.slo_attainment:.4f} | {_wait(r.p95_wait_seconds)} "
            f"| {_wait(r.p99_wait_seconds)} | {r.scale_events} | {r.cpu_seconds:.1f} | {note} |"
        )
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


def bench_json(bench: Bench, cpu: dict[str, float] | None = None) -> dict[str, Any]:
    model = bench.model
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
        "iso_slo": {name: s.to_json() for name, s in bench.sweeps.items()},
        "ratios": bench.ratios(),
        "goals": goals(bench),
        "at_gpufinops_slo": _at_own_slo(bench),
        "notes": bench.notes(),
        "cpu_seconds": cpu or {},
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
