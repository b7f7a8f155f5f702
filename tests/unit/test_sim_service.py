"""The service model on traces small enough to work out by hand."""

from dataclasses import dataclass, field

import numpy as np
import pytest

from gpufinops.sim.policies import Planned, Static, oracle_plan
from gpufinops.sim.service import ServiceModel, View, simulate
from gpufinops.sim.traces import Trace


def trace(values: list[float], start: float = 1_700_000_000.0) -> Trace:
    arr = np.asarray(values, dtype=np.float64)
    return Trace("hand", start, arr, arr.copy(), "binned", 1.0)


def model(**kw: float) -> ServiceModel:
    base: dict[str, float] = {
        "capacity_per_replica": 2.0,
        "startup_seconds": 0,
        "lag_seconds": 0,
        "sync_seconds": 5,
        "slo_wait_seconds": 1.0,
        "service_seconds": 2,
        "rate_window_seconds": 4,
        "max_replicas": 50,
    }
    base.update(kw)
    return ServiceModel(**base)  # type: ignore[arg-type]


@dataclass
class Script:
    """Requests the given count at the given seconds; records what it saw."""

    plan: dict[int, int]
    name: str = "script"
    seen: list[View] = field(default_factory=list)

    def decide(self, view: View) -> int:
        self.seen.append(view)
        return self.plan.get(view.second, view.current)


def test_a_burst_queues_and_drains_at_the_ready_capacity() -> None:
    out = simulate(trace([5, 0, 0, 0]), model(), Static(1), initial=1)
    np.testing.assert_allclose(out.backlog, [3, 1, 0, 0])
    # every request of second 0 waits for the 3 left ahead at 2/s
    np.testing.assert_allclose(out.waits(), [1.5, 0.5, 0, 0])
    attained, p95, p99 = out.wait_stats()
    assert attained == 0.0 and p95 == p99 == 1.5
    assert out.gpu_hours == pytest.approx(4 / 3600)


def test_load_under_capacity_never_waits() -> None:
    out = simulate(trace([3.9] * 20), model(), Static(2), initial=2)
    assert out.backlog.max() == 0
    assert out.wait_stats() == (1.0, 0.0, 0.0)


def test_slo_attainment_counts_requests_not_seconds() -> None:
    # the 7 requests of second 0 wait 0.75 s (miss), the 1 of second 3 none (hit)
    m = model(capacity_per_replica=4.0, slo_wait_seconds=0.5)
    out = simulate(trace([7, 0, 0, 1]), m, Static(1), initial=1)
    np.testing.assert_allclose(out.backlog, [3, 0, 0, 0])
    attained, _, _ = out.wait_stats()
    assert attained == pytest.approx(1 / 8)


def test_replicas_start_after_startup_and_are_billed_from_the_request() -> None:
    policy = Script({5: 3})
    out = simulate(trace([0] * 30), model(startup_seconds=10), policy, initial=1)
    np.testing.assert_array_equal(out.billed, [1] * 5 + [3] * 25)
    np.testing.assert_array_equal(out.ready, [1] * 15 + [3] * 15)
    assert out.scale_events == 1


def test_scale_down_removes_replicas_not_ready_yet_first() -> None:
    policy = Script({5: 4, 10: 2})
    out = simulate(trace([0] * 30), model(startup_seconds=10), policy, initial=1)
    # 3 requested at 5 (ready at 15); at 10 two of them are cancelled
    np.testing.assert_array_equal(out.billed, [1] * 5 + [4] * 5 + [2] * 20)
    np.testing.assert_array_equal(out.ready, [1] * 15 + [2] * 15)
    # below the ready count, ready replicas go at once
    policy = Script({5: 3, 20: 1})
    out = simulate(trace([0] * 30), model(startup_seconds=10), policy, initial=1)
    np.testing.assert_array_equal(out.ready, [1] * 15 + [3] * 5 + [1] * 10)


def test_capacity_arriving_mid_period_serves_from_that_second() -> None:
    # ready at 7, between decisions at 5 and 10
    policy = Script({0: 1, 5: 2})
    out = simulate(trace([4] * 10), model(startup_seconds=2, lag_seconds=0), policy, initial=1)
    # 2/s served until second 7, then 4/s: backlog grows by 2 per second, then stays
    np.testing.assert_allclose(out.backlog, [2, 4, 6, 8, 10, 12, 14, 14, 14, 14])


def test_policies_see_signals_as_of_the_lag() -> None:
    policy = Script({})
    values = [6.0] * 10 + [0.0] * 15
    simulate(trace(values), model(lag_seconds=5, sync_seconds=5), policy, initial=1)
    first = policy.seen[0]  # decision at 10 sees second 5's state
    assert (first.second, first.current, first.ready) == (10, 1, 1)
    # backlog grows 4/s from 0: 20 after 5 s
    assert first.queue_depth == pytest.approx(20.0)
    assert first.arrival_rate == pytest.approx(6.0)  # mean of seconds 1-4
    assert first.throughput == pytest.approx(2.0)
    assert first.utilization == pytest.approx(1.0)
    assert first.running == pytest.approx(4.0)  # served over the last 2 s
    assert first.in_flight == pytest.approx(24.0)
    later = policy.seen[2]  # at 20 sees second 15: 40 queued by 10, drained 2/s since
    assert later.arrival_rate == pytest.approx(0.0)
    assert later.queue_depth == pytest.approx(30.0)


def test_nothing_is_decided_before_the_first_scrape() -> None:
    policy = Script({0: 9})
    out = simulate(trace([0] * 12), model(lag_seconds=5, sync_seconds=5), policy, initial=2)
    assert [v.second for v in policy.seen] == [10]
    assert out.decisions.tolist() == [2, 2, 2]


def test_normalisation_puts_the_peak_minute_at_the_requested_replicas() -> None:
    t = trace([1.0] * 600 + [8.0] * 60 + [1.0] * 600)
    m = ServiceModel.normalised(t, peak_replicas=40)
    assert m.capacity_per_replica == pytest.approx(8.0 / 40)
    assert m.replicas_for(8.0) == 40
    assert m.max_replicas == 400


def test_oracle_plan_is_feasible_and_minimal() -> None:
    rng = np.random.default_rng(7)
    values = rng.gamma(2.0, 3.0, size=300)
    m = model(capacity_per_replica=1.0, slo_wait_seconds=2.0, sync_seconds=15)
    plan = oracle_plan(values, m)
    out = simulate(trace(list(values)), m, Planned(plan, 15), initial=int(plan[0]))
    assert out.waits().max() <= 2.0 + 1e-9
    assert out.wait_stats()[0] == 1.0
    # one replica fewer in any period (with the same history) breaks the SLO
    for i in range(len(plan)):
        if plan[i] <= 1:
            continue
        fewer = plan.copy()
        fewer[i] -= 1
        worse = simulate(trace(list(values)), m, Planned(fewer, 15), initial=int(fewer[0]))
        assert worse.waits()[i * 15 : (i + 1) * 15].max() > 2.0
