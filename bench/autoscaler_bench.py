"""Decision time per autoscaling tick for many Inference workloads.

Run: ``.venv/bin/python bench/autoscaler_bench.py [--workloads 500] [--rounds 5]``.

Two measurements, each with a baseline taken in the same run:

1. the pure decision core (``decide``) for N workloads with full stabilisation
   history, against the bare HPA formula ``ceil(current * metric / target)``;
2. whole controller ticks as the operator runs them (N concurrent ticks, each
   reading its signals from a real Prometheus that scrapes an exporter with
   N workloads' vLLM series, forecasting with a fitted model, deciding), against
   the floor cost of one Prometheus round trip (an instant query of ``vector(1)``).

Forecasters are fitted once and copied to every workload: fitting N models
would measure the refit (off the hot path, hourly) rather than the tick.
"""

import argparse
import asyncio
import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))

from tests.support.exporter import Exporter  # noqa: E402
from tests.support.promserver import PrometheusServer  # noqa: E402

from gpufinops.adapters.prometheus.client import PrometheusClient  # noqa: E402
from gpufinops.adapters.prometheus.workload import WorkloadSignals  # noqa: E402
from gpufinops.adapters.scale_targets import TargetView  # noqa: E402
from gpufinops.api.spec import AIWorkloadSpec  # noqa: E402
from gpufinops.controllers.inference import Effects, InferenceController  # noqa: E402
from gpufinops.core.forecast.model import DemandForecaster, ForecastSettings  # noqa: E402
from gpufinops.core.forecast.series import DemandSeries  # noqa: E402
from gpufinops.core.scaling.decide import ScalingSettings, ScalingState, Tick, decide  # noqa: E402
from gpufinops.core.scaling.observation import Observation  # noqa: E402
from gpufinops.localcluster.binaries import find_prometheus  # noqa: E402

DAY = 86_400.0


def spec_for(i: int, forecast: bool) -> AIWorkloadSpec:
    return AIWorkloadSpec.model_validate(
        {
            "type": "Inference",
            "costAllocation": {"team": "bench"},
            "inference": {
                "targetRef": {"name": f"llm-{i}"},
                "maxReplicas": 40,
                "forecast": {"enabled": forecast},
                "schedules": [
                    {"name": "office", "cron": "0 8 * * 1-5", "durationSeconds": 36000,
                     "minReplicas": 2, "timezone": "Europe/Paris"}
                ],
            },
        }
    )  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def bench_core(n: int, rounds: int) -> None:
    settings = [ScalingSettings.from_spec(spec_for(i, False).inference) for i in range(n)]  # type: ignore[arg-type]
    states = [ScalingState() for _ in range(n)]
    now = time.time()
    rng = np.random.default_rng(0)
    # warm the stabilisation history: 300 s of ticks every 15 s
    for step in range(21):
        for i in range(n):
            obs = Observation(queue_depth=float(rng.integers(0, 50)), running=8.0,
                              arrival_rate=float(rng.uniform(5, 50)), throughput=20.0)  # fmt: skip
            d = decide(settings[i], states[i], Tick(now + 15 * step, 5, 5, obs))
            states[i] = d.state
    per_tick: list[float] = []
    baseline: list[float] = []
    for r in range(rounds):
        obs = [Observation(queue_depth=float(rng.integers(0, 50)), running=8.0,
                           arrival_rate=float(rng.uniform(5, 50)), throughput=20.0)
               for _ in range(n)]  # fmt: skip
        t = now + 15 * (21 + r)
        start = time.perf_counter()
        for i in range(n):
            states[i] = decide(settings[i], states[i], Tick(t, 5, 5, obs[i])).state
        per_tick.append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(n):
            _ = math.ceil(5 * (obs[i].queue_depth or 0) / 5 / 5)
        baseline.append(time.perf_counter() - start)
    core = statistics.median(per_tick)
    floor = statistics.median(baseline)
    print(f"core decide(): {n} workloads in {core * 1e3:.1f} ms per tick "
          f"({core / n * 1e6:.1f} us each); bare HPA formula {floor * 1e3:.3f} ms; "
          f"ratio {core / floor:.0f}x")  # fmt: skip


async def bench_ticks(n: int, rounds: int) -> None:
    exporter = Exporter().start()
    for i in range(n):
        labels = {"namespace": "bench", "pod": f"llm-{i}-7d9f8c6b5-x2x4z"}
        exporter.set("vllm:num_requests_waiting", labels, float(i % 17))
        exporter.set("vllm:num_requests_running", labels, 4.0)
        exporter.set_rate("vllm:request_success_total", labels, 3.0 + i % 5)
        exporter.set("vllm:kv_cache_usage_perc", labels, 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        server = PrometheusServer(find_prometheus(install=True), Path(tmp), [exporter.target])
        server.start()
        try:
            await _ticks(server.url, n, rounds)
        finally:
            server.stop()
            exporter.stop()


class _StaticHistory:
    """Signals from Prometheus; the demand history from memory (refits are not ticks)."""

    def __init__(self, signals: WorkloadSignals, history: DemandSeries) -> None:
        self.signals = signals
        self.history = history

    def observe(self) -> Observation:
        return self.signals.observe()

    def demand_history(self, now: float) -> DemandSeries | None:
        return self.history


async def _ticks(url: str, n: int, rounds: int) -> None:
    client = PrometheusClient(url, timeout=10)
    deadline = time.monotonic() + 60
    while client.instant('count(vllm:num_requests_waiting{namespace="bench"})') != n:
        if time.monotonic() > deadline:
            raise SystemExit("Prometheus never scraped every workload")
        await asyncio.sleep(0.5)
    now = time.time()
    rng = np.random.default_rng(1)
    t = np.arange(8 * 1440) * 60.0 + (now - 8 * DAY)
    values = 20 + 10 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 1, t.size)
    history = DemandSeries(float(t[0]), 60.0, values.astype(np.float64))
    fitted = DemandForecaster(ForecastSettings())
    fit_start = time.perf_counter()
    report = fitted.fit(history, now)
    fit_seconds = time.perf_counter() - fit_start
    controllers: list[tuple[InferenceController, AIWorkloadSpec, TargetView]] = []
    for i in range(n):
        spec = spec_for(i, True)
        source = _StaticHistory(WorkloadSignals(client, "bench", spec), history)
        effects = Effects(scale=lambda r: None, write_status=lambda p: None,
                          post_event=lambda t, r, m: None)  # fmt: skip
        c = InferenceController("bench", f"w{i}", source, effects, None, now, 5)
        model = copy.deepcopy(fitted)
        c.forecasts.use(model.settings)
        c.forecasts.swap(model, model.settings)
        controllers.append((c, spec, TargetView(5, 5, "app=x", 1)))
    walls: list[float] = []
    for r in range(rounds):
        tick_now = now + 15 * r
        start = time.perf_counter()
        await asyncio.gather(*(c.tick(s, 1, d, [], tick_now) for c, s, d in controllers))
        walls.append(time.perf_counter() - start)
    probe = []
    for _ in range(50):
        start = time.perf_counter()
        client.instant("vector(1)")
        probe.append(time.perf_counter() - start)
    rt = statistics.median(probe)
    wall = statistics.median(walls)
    queries = 5
    print(f"forecaster fit (once, copied to all): {fit_seconds:.2f} s, {report.reason}")
    print(f"controller ticks: {n} workloads, {queries} instant queries + forecast + decide each")
    print(f"  wall per round (all {n} concurrently): median {wall:.2f} s, max {max(walls):.2f} s "
          f"over {rounds} rounds; per workload {wall / n * 1e3:.2f} ms")  # fmt: skip
    print(
        f"  Prometheus round trip (vector(1)): median {rt * 1e3:.2f} ms; "
        f"per-workload tick / ({queries} round trips) = {wall / n / (queries * rt):.2f}x"
    )
    print(f"  fits the 15 s sync period: {'yes' if wall < 15 else 'NO'} "
          f"({wall / 15:.0%} of it)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bench_core(args.workloads, args.rounds * 4)
    asyncio.run(bench_ticks(args.workloads, args.rounds))


if __name__ == "__main__":
    main()
