"""The inference service every policy runs on, in 1 s steps (docs/benchmarks.md).

Arrivals join one FIFO queue served as a fluid at the capacity of the ready
replicas; a request's wait is the backlog left ahead of it divided by that
capacity. Replicas are billed from the moment they are requested and serve
from ``startup_seconds`` later; scale-down removes the newest not-yet-ready
replicas first, as a ReplicaSet deletes pending pods before running ones.

Policies act every ``sync_seconds`` and see the signals as they were
``lag_seconds`` earlier. Between decisions nothing can change but replicas
becoming ready, so the queue advances in numpy blocks between those events
(the Lindley recursion in closed form), which keeps a week at 1 s in seconds.
"""

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gpufinops.core.forecast.series import FloatArray
from gpufinops.sim.traces import Trace, peak_rate

IntArray = npt.NDArray[np.int64]

EPSILON = 1e-9
"""Backlog below this (in requests) is float residue, not a queue."""

Progress = Callable[[float], None]


@dataclass(frozen=True)
class ServiceModel:
    """Everything about the service that is the same for every policy."""

    capacity_per_replica: float
    """mu: mean requests (work units) one ready replica serves per second."""
    startup_seconds: int = 180
    lag_seconds: int = 15
    sync_seconds: int = 15
    slo_wait_seconds: float = 2.0
    service_seconds: int = 5
    """Time a request spends being served once it leaves the queue. Only the
    ``running`` gauge depends on it (Little's law: running = served in the last
    ``service_seconds``), so a saturated replica has mu * service_seconds in flight."""
    rate_window_seconds: int = 60
    """Rates (arrivals, throughput, utilisation) are means over this window, as
    ``rate(...[1m])``."""
    min_replicas: int = 1
    """0: policies that can scale to zero do, after ``idle_seconds`` without traffic."""
    idle_seconds: int = 300
    """Scale-to-zero idle time (the AIWorkload's ``scaleToZero.idleSeconds``, KEDA's
    ``cooldownPeriod``); only used with ``min_replicas`` 0."""
    max_replicas: int = 1000
    peak_replicas: int | None = None
    """Replicas the trace's peak minute needs at 100 % utilisation, when normalised."""
    demand_signal: str = "completions"
    """What the gpufinops policies read as demand, for their rule and their forecaster's
    history: ``completions`` (the requests served: what the vLLM, TGI and SGLang presets
    read, the engines having no arrival counter) or ``arrivals`` (a ``demandQuery`` on
    the gateway's request counter)."""

    def __post_init__(self) -> None:
        if not self.capacity_per_replica > 0:
            raise ValueError("capacity per replica must be positive")
        if self.sync_seconds < 1 or self.startup_seconds < 0 or self.lag_seconds < 0:
            raise ValueError("sync must be >= 1 s; startup and lag must not be negative")
        if self.service_seconds < 1 or self.rate_window_seconds < 1:
            raise ValueError("service and rate window must be >= 1 s")
        if self.demand_signal not in DEMAND_SIGNALS:
            raise ValueError(f"demand signal must be one of {', '.join(DEMAND_SIGNALS)}")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError("need 0 <= min_replicas <= max_replicas and max_replicas >= 1")

    @classmethod
    def normalised(
        cls,
        trace: Trace,
        peak_replicas: int = 40,
        demand_signal: str = "completions",
        **options: int | float,
    ) -> "ServiceModel":
        """Capacity such that the trace's busiest minute needs ``peak_replicas``
        replicas at 100 % utilisation: traces of any size then compare."""
        peak = peak_rate(trace.work, 60)
        if peak <= 0:
            raise ValueError(f"trace {trace.name} has no requests")
        if peak_replicas < 1:
            raise ValueError("peak replicas must be >= 1")
        values = {"max_replicas": 10 * peak_replicas, **options}
        return cls(
            peak / peak_replicas,
            peak_replicas=peak_replicas,
            demand_signal=demand_signal,
            **values,  # type: ignore[arg-type]
        )

    def replicas_for(self, rate: float) -> int:
        """Replicas that serve ``rate`` at 100 % utilisation (at least ``min_replicas``)."""
        need = math.ceil(rate / self.capacity_per_replica - EPSILON)
        return min(max(need, self.min_replicas, 1), self.max_replicas)


DEMAND_SIGNALS = ("completions", "arrivals")


@dataclass(frozen=True)
class View:
    """What a policy knows at a decision: replica counts now, signals as of the lag."""

    now: float
    """Epoch seconds."""
    second: int
    """Seconds since the start of the trace."""
    current: int
    """Replicas requested (ready or starting)."""
    ready: int
    queue_depth: float
    """Requests waiting (0 before the first scrape)."""
    running: float
    arrival_rate: float | None
    """Mean over the rate window; ``None`` before any data."""
    throughput: float | None
    utilization: float | None
    """Served / capacity of the ready replicas over the rate window (GPU duty cycle)."""
    served: FloatArray | None = None
    """Cumulative work served by the end of each second (index 0: none yet); only
    ``served[: scraped + 1]`` is known at this decision."""
    scraped: int = 0
    """The last second the signals cover (now less the scrape lag)."""

    @property
    def in_flight(self) -> float:
        return self.queue_depth + self.running


class Policy(Protocol):
    """A scaling policy: one replica count per decision."""

    name: str

    def decide(self, view: View) -> int: ...


@dataclass
class Outcome:
    """Per-second record of one run, and the numbers the benchmark reports."""

    policy: str
    trace: Trace
    model: ServiceModel
    billed: IntArray
    """Replicas paid for in each second (ready or starting)."""
    ready: IntArray
    backlog: FloatArray
    """Requests waiting at the end of each second."""
    decisions: IntArray
    """Replicas requested at each decision."""
    scale_events: int
    cpu_seconds: float
    forecast: FloatArray | None = None
    """Forecast peak (requests/s) at each decision, NaN when none was used."""

    @property
    def gpu_hours(self) -> float:
        return float(self.billed.sum()) / 3600.0

    def waits(self) -> FloatArray:
        """Queue wait of the requests arriving in each second (inf without ready replicas)."""
        capacity = self.ready.astype(np.float64) * self.model.capacity_per_replica
        out = np.zeros(self.backlog.shape, dtype=np.float64)
        queued = self.backlog > EPSILON
        ok = queued & (capacity > 0)
        out[ok] = self.backlog[ok] / capacity[ok]
        out[queued & (capacity <= 0)] = np.inf
        return out

    def cold_starts(self) -> dict[str, float | int | None]:
        """What scaling to zero cost in waiting: requests arriving while no replica is
        ready wait until the first one is (and for the queue ahead of them then).

        ``cold_starts``: times replicas went from none to some; ``cold_start_requests``:
        requests that arrived with none ready; their p50/p95/max wait (None when none
        did, inf when no replica ever came back).
        """
        ready = self.ready
        requests = self.trace.requests
        cold = (ready == 0) & (requests > 0)
        billed = self.billed
        wakes = int(np.count_nonzero((billed[1:] > 0) & (billed[:-1] == 0)))
        total = float(requests[cold].sum())
        if total <= 0:
            return {"cold_starts": wakes, "cold_start_requests": 0,
                    "cold_start_p50_wait_seconds": None, "cold_start_p95_wait_seconds": None,
                    "cold_start_max_wait_seconds": None}  # fmt: skip
        seconds = np.arange(ready.size)
        # The first second at or after each one with a ready replica (size: none again).
        next_ready = np.full(ready.size + 1, ready.size, dtype=np.int64)
        for t in range(ready.size - 1, -1, -1):
            next_ready[t] = t if ready[t] > 0 else next_ready[t + 1]
        at = next_ready[:-1][cold]
        waits = np.full(at.shape, np.inf)
        back = at < ready.size
        idx = at[back]
        capacity = ready[idx].astype(np.float64) * self.model.capacity_per_replica
        waits[back] = (idx - seconds[cold][back]) + self.backlog[idx] / capacity
        weights = requests[cold]
        order = np.argsort(waits, kind="stable")
        cumulative = np.cumsum(weights[order]) / total

        sorted_waits = waits[order]

        def quantile(q: float) -> float:
            index = min(int(np.searchsorted(cumulative, q)), order.size - 1)
            return float(sorted_waits[index])

        return {
            "cold_starts": wakes,
            "cold_start_requests": round(total),
            "cold_start_p50_wait_seconds": round(quantile(0.5), 1),
            "cold_start_p95_wait_seconds": round(quantile(0.95), 1),
            "cold_start_max_wait_seconds": round(float(waits.max()), 1),
        }

    def wait_stats(self) -> tuple[float, float, float]:
        """SLO attainment and p95/p99 wait, each request weighted once."""
        waits = self.waits()
        weights = self.trace.requests
        total = float(weights.sum())
        if total <= 0:
            return 1.0, 0.0, 0.0
        attained = float(weights[waits <= self.model.slo_wait_seconds + EPSILON].sum()) / total
        order = np.argsort(waits, kind="stable")
        cumulative = np.cumsum(weights[order])

        def quantile(q: float) -> float:
            i = int(np.searchsorted(cumulative, q * total - EPSILON * total))
            return float(waits[order[min(i, order.size - 1)]])

        return min(attained, 1.0), quantile(0.95), quantile(0.99)


def initial_replicas(trace: Trace, model: ServiceModel) -> int:
    """What every policy starts with: enough for the first minute, all ready."""
    first = trace.work[: model.rate_window_seconds]
    return model.replicas_for(float(first.mean()) if first.size else 0.0)


def simulate(
    trace: Trace,
    model: ServiceModel,
    policy: Policy,
    *,
    initial: int | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Run ``policy`` over ``trace`` on ``model``."""
    started = time.process_time()
    n = trace.seconds
    mu = model.capacity_per_replica
    sync, startup = model.sync_seconds, model.startup_seconds
    cum_work = np.concatenate(([0.0], np.cumsum(trace.work)))
    cum_served = np.zeros(n + 1)
    cum_capacity = np.zeros(n + 1)
    backlog = np.zeros(n)
    ready_s = np.zeros(n, dtype=np.int64)
    billed_s = np.zeros(n, dtype=np.int64)
    decisions = np.zeros(math.ceil(n / sync), dtype=np.int64)

    current = initial if initial is not None else initial_replicas(trace, model)
    current = min(max(current, model.min_replicas), model.max_replicas)
    ready = current
    pending: deque[int] = deque()  # ready times of starting replicas, oldest first
    queue = 0.0
    events = 0
    report_every = max(1, len(decisions) // 200)
    for tick, t in enumerate(range(0, n, sync)):
        view = observe(trace, model, t, current, ready, cum_work, cum_served, cum_capacity, backlog)
        if view is None:
            # Nothing scraped yet: every policy holds what it started with.
            decisions[tick] = current
        else:
            desired = int(policy.decide(view))
            desired = min(max(desired, model.min_replicas), model.max_replicas)
            decisions[tick] = desired
            if desired > current:
                events += 1
                if startup <= 0:
                    ready += desired - current
                else:
                    pending.extend([t + startup] * (desired - current))
            elif desired < current:
                events += 1
                drop = current - desired
                while drop and pending:
                    pending.pop()
                    drop -= 1
                ready -= drop
            current = desired

        end = min(t + sync, n)
        a = t
        while a < end:
            while pending and pending[0] <= a:
                pending.popleft()
                ready += 1
            b = min(end, pending[0]) if pending else end
            queue = advance(queue, ready * mu, a, b, cum_work, cum_served, cum_capacity, backlog)
            ready_s[a:b] = ready
            billed_s[a:b] = current
            a = b
        if progress is not None and tick % report_every == 0:
            progress(end / n)
    if progress is not None:
        progress(1.0)
    return Outcome(
        getattr(policy, "name", type(policy).__name__),
        trace,
        model,
        billed_s,
        ready_s,
        backlog,
        decisions,
        events,
        time.process_time() - started,
    )


def observe(
    trace: Trace,
    model: ServiceModel,
    t: int,
    current: int,
    ready: int,
    cum_work: FloatArray,
    cum_served: FloatArray,
    cum_capacity: FloatArray,
    backlog: FloatArray,
) -> View | None:
    """What a policy sees at second ``t``: the signals as of the scrape lag earlier
    (None before the first scrape). Shared by every simulator so all read the same."""
    s = t - model.lag_seconds
    if s <= 0:
        return None
    w0 = max(0, s - model.rate_window_seconds)
    span = float(s - w0)
    done = cum_served[s] - cum_served[w0]
    offered = cum_capacity[s] - cum_capacity[w0]
    q = float(backlog[s - 1])
    return View(
        trace.start + t,
        t,
        current,
        ready,
        q if q > EPSILON else 0.0,
        float(cum_served[s] - cum_served[max(0, s - model.service_seconds)]),
        float(cum_work[s] - cum_work[w0]) / span,
        float(done) / span,
        float(done / offered) if offered > 0 else None,
        cum_served,
        s,
    )


def advance(
    queue: float,
    capacity: float,
    a: int,
    b: int,
    cum_work: FloatArray,
    cum_served: FloatArray,
    cum_capacity: FloatArray,
    backlog: FloatArray,
) -> float:
    """Serve seconds ``[a, b)`` at a constant ``capacity`` (the Lindley recursion in
    closed form), filling the per-second records; returns the queue left at ``b``."""
    steps = np.arange(1, b - a + 1, dtype=np.float64)
    arrived = cum_work[a + 1 : b + 1] - cum_work[a]
    net = arrived - capacity * steps
    left = net - np.minimum(np.minimum.accumulate(net), -queue)
    backlog[a:b] = left
    cum_served[a + 1 : b + 1] = cum_served[a] + queue + arrived - left
    cum_capacity[a + 1 : b + 1] = cum_capacity[a] + capacity * steps
    return float(left[-1])
