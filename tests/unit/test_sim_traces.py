"""Short simulator runs on the public production traces.

The traces live outside the repository (``../shared/traces`` from its root, see
the README there); each test skips with a message when its file is absent, saying
which file is missing (``tests.support.traces``). The short run itself also goes on
a synthetic trace, so that it is exercised without them.
The full-length numbers are in docs/benchmarks.md (bench/inference_bench.py).
"""

import numpy as np
import pytest
from tests.support.traces import trace_path

from gpufinops.sim.backtest import backtest
from gpufinops.sim.run import run_policy
from gpufinops.sim.service import ServiceModel
from gpufinops.sim.traces import Trace, read_trace

HOURS = 3600


def load(name: str, select: dict[str, str] | None = None) -> Trace:
    return read_trace(trace_path(name), select)


CASES = [
    ("azure-2024-conversation-10s.csv", None, "binned", 7.0),
    ("servegen-language-m-small-600s.csv", None, "binned", 14.0),
    ("azure-2023-conversation-requests.csv", None, "requests", 0.04),
    ("azure-2023-code-requests.csv", None, "requests", 0.039),
    ("alibaba-genai-qps.csv", {"request_type": "Generative Requests"}, "rate", 0.9),
]


def check_short_run(trace: Trace) -> None:
    """Six hours are enough to tell the policies apart and quick on any trace; the
    oracle, which knows the demand ahead, bounds every other policy's cost."""
    model = ServiceModel.normalised(trace, 40)
    head = trace.head(6 * HOURS)
    results = {p: run_policy(p, head, model)[1] for p in ("reactive", "keda", "hpa", "oracle")}
    oracle = results["oracle"]
    assert oracle.slo_attainment == 1.0
    assert oracle.p99_wait_seconds <= model.slo_wait_seconds + 1e-9
    for policy, result in results.items():
        assert result.gpu_hours >= oracle.gpu_hours * 0.999, policy
        assert 0.0 < result.slo_attainment <= 1.0
        assert result.max_replicas <= model.max_replicas


@pytest.mark.parametrize(("name", "select", "fmt", "days"), CASES)
def test_every_trace_reads_and_simulates(
    name: str, select: dict[str, str] | None, fmt: str, days: float
) -> None:
    trace = load(name, select)
    assert trace.format == fmt
    assert trace.days >= days
    assert trace.tokens == (fmt == "requests")
    check_short_run(trace)


def test_the_short_run_on_a_synthetic_trace() -> None:
    """The head of a trace and the policies' short run, without the trace files: a CI
    run without them still checks that the oracle bounds every policy."""
    seconds = np.arange(8 * HOURS)
    rng = np.random.default_rng(5)
    minutes = seconds // 60
    noise = rng.normal(0.0, 2.0, size=minutes[-1] + 1)[minutes]
    rate = np.maximum(30 + 20 * np.sin(2 * np.pi * seconds / (4 * HOURS)) + noise, 0.0)
    work = rate * 1.5
    trace = Trace("synthetic", 1_700_000_000.0, rate, work, "binned", 10.0)

    head = trace.head(6 * HOURS)
    assert head.seconds == 6 * HOURS and (head.name, head.start) == (trace.name, trace.start)
    np.testing.assert_array_equal(head.requests, rate[: 6 * HOURS])
    np.testing.assert_array_equal(head.work, work[: 6 * HOURS])
    assert (head.format, head.source_step, head.tokens) == ("binned", 10.0, False)
    assert trace.head(10 * HOURS).seconds == trace.seconds  # never longer than the trace
    check_short_run(trace)


def test_a_day_of_azure_2024_under_the_shipped_core_is_fast() -> None:
    trace = load("azure-2024-conversation-10s.csv")
    model = ServiceModel.normalised(trace, 40)
    day = trace.head(24 * HOURS)
    _, reactive = run_policy("reactive", day, model)
    _, gpufinops = run_policy("gpufinops", day, model)
    # a day is too little history to forecast: both are the reactive core
    assert gpufinops.details["forecast_used_share"] == 0.0
    assert gpufinops.gpu_hours == pytest.approx(reactive.gpu_hours)
    assert reactive.slo_attainment > 0.97
    assert reactive.cpu_seconds < 5.0


def test_forecaster_beats_seasonal_naive_at_15_minutes_on_azure_2024() -> None:
    trace = load("azure-2024-conversation-10s.csv").head(int(3.5 * 86400))
    result = backtest(trace, 900, stride_seconds=1800, refit_seconds=2 * 86400)
    assert result.scores["gpufinops"].smape < result.scores["seasonal_naive"].smape
