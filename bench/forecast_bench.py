"""Forecaster benchmark on the Azure LLM conversation trace (2024).

Run: ``.venv/bin/python bench/forecast_bench.py``. Prints the fit time on 7
days of history at a 60 s step, the cost of one ``peak()`` call, and the
walk-forward pinball loss of the model against the seasonal-naive forecast
(fit on days 1-5, scored on days 6-7). Reads the trace from
``../shared/traces`` relative to the repository root and exits cleanly when
it is absent.
"""

import csv
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import sklearn.ensemble  # noqa: F401  (loaded up front: the fit timing excludes imports)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from gpufinops.core.forecast import (  # noqa: E402
    DemandForecaster,
    DemandSeries,
    ForecastSettings,
)

TRACE = ROOT.parent / "shared" / "traces" / "azure-2024-conversation-10s.csv"
DAY = 86400.0


def load_binned(path: Path) -> DemandSeries:
    """Binned ``timestamp,requests`` trace as requests/s (ISO or numeric timestamps)."""
    times: list[float] = []
    counts: list[float] = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            raw = row["timestamp"]
            try:
                stamp = float(raw)
            except ValueError:
                stamp = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
            times.append(stamp)
            counts.append(float(row["requests"]))
    step = float(np.median(np.diff(times)))
    return DemandSeries(times[0], step, np.asarray(counts, dtype=np.float64) / step)


def pinball(actual: np.ndarray, forecast: np.ndarray, q: float) -> float:
    diff = actual - forecast
    return float(np.mean(np.maximum(q * diff, (q - 1.0) * diff)))


def main() -> None:
    if not TRACE.exists():
        print(f"skipped: trace {TRACE} not found (see ../shared/traces/README.md)")
        return
    settings = ForecastSettings()
    step = settings.step_seconds
    demand = load_binned(TRACE).resample(step)
    values = demand.values
    lead = settings.lead_steps
    season = settings.season_steps

    week = DemandSeries(demand.start, step, values[: int(7 * DAY / step)])
    forecaster = DemandForecaster(settings)
    started = time.perf_counter()
    report = forecaster.fit(week, week.end)
    fit_seconds = time.perf_counter() - started
    print(f"fit on {len(week)} samples (7 days at {step:g} s): {fit_seconds:.2f} s")
    print(f"  report: {report.reason} (holdout ratio {report.backtest_ratio:.3f})")

    recent = week.tail(forecaster.lookback_seconds)
    durations = []
    for _ in range(1000):
        started = time.perf_counter()
        forecaster.peak(recent, recent.end)
        durations.append(time.perf_counter() - started)
    ms = np.asarray(durations) * 1000.0
    print(f"peak(): mean {ms.mean():.2f} ms, p99 {np.percentile(ms, 99):.2f} ms over 1000 calls")

    train_end = int(5 * DAY / step)
    walker = DemandForecaster(settings)
    walker.fit(DemandSeries(demand.start, step, values[:train_end]), demand.start + 5 * DAY)
    model, naive, actual, last = [], [], [], []
    started = time.perf_counter()
    for end in range(train_end, len(values) - lead + 1):
        tail = DemandSeries(demand.start, step, values[:end]).tail(walker.lookback_seconds)
        now = tail.end
        walker.observe(tail, now)
        path = walker.forecast_path(tail, now)
        future = values[end : end + lead]
        past = values[end - season : end - season + lead]
        if path is None or np.all(np.isnan(future)) or np.all(np.isnan(past)):
            continue
        model.append(float(np.max(path)))
        naive.append(float(np.nanmax(past)))
        actual.append(float(np.nanmax(future)))
        last.append(float(values[end - 1]))
    walk_seconds = time.perf_counter() - started
    q = settings.quantile
    a = np.asarray(actual)
    m_loss, n_loss = pinball(a, np.asarray(model), q), pinball(a, np.asarray(naive), q)
    covered = float(np.mean(a <= np.asarray(model)))
    print(
        f"walk-forward days 6-7 ({len(a)} forecasts, {walk_seconds:.1f} s): pinball@{q:g} "
        f"model {m_loss:.3f} vs seasonal naive {n_loss:.3f} req/s, ratio {m_loss / n_loss:.3f}; "
        f"actual peak <= forecast {covered:.1%} of the time"
    )
    # A stronger yardstick than seasonal naive at a few minutes' lead: the last
    # value times the training-period quantile of (lead-window peak / last value).
    train = values[:train_end]
    peaks = np.lib.stride_tricks.sliding_window_view(train[1:], lead).max(axis=1)
    factor = float(np.nanquantile(peaks / np.maximum(train[: len(peaks)], 1e-9), q))
    p_loss = pinball(a, np.asarray(last) * factor, q)
    print(
        f"  for reference, calibrated persistence (last value x {factor:.3f}): "
        f"{p_loss:.3f} req/s, model/persistence ratio {m_loss / p_loss:.3f}"
    )
    final = walker.report
    print(f"  rolling backtest at the end: {final.reason}, ratio {final.online_ratio:.3f}")


if __name__ == "__main__":
    main()
