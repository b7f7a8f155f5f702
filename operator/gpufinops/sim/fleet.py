"""The inference service on several capacity classes: on-demand, and spot in each zone.

The queue, the signals and the billing are those of ``service.simulate``; what is added
is where replicas run and what happens to them there (docs/benchmarks.md, "Spot
replicas"):

- **Classes.** A policy asks for a replica count per class, as the operator runs one
  Deployment per pool; the class's ReplicaSet keeps that count, so a preempted
  replica is replaced in the same class.
- **Capacity.** A zone holds at most ``capacity(z, t)`` replicas: its availability
  trace at ``t`` (wrapped when shorter than the service trace), scaled so that full
  availability holds ``zone_replicas``. A replica over capacity stays *pending*: not
  billed, not serving (a Pending pod), and is placed, oldest first, when capacity
  returns. A launch also needs the capacity ``notice_seconds`` ahead: capacity about
  to be reclaimed is not offered (otherwise every tick of a notice window would
  place a replica only to notice it). On-demand always has capacity.
- **Preemption.** When a zone's capacity ``notice_seconds`` ahead is below its
  replicas, the excess (newest first) gets an interruption notice and is terminated
  at the end of it. A policy that drains (``drains``) sees it as noticed; it serves
  until the policy releases it (``released``: removed gracefully, its in-flight
  requests finish) or until its end, when its share of the running requests is
  re-queued and counted in ``preempted``, as for any other policy, which keeps it
  serving until it is terminated. Capacity falling
  with no notice given (a replica placed after the notice instant) terminates at
  once, re-queueing for every policy.
- **Time.** Every event falls on a decision tick: capacity is read at tick
  instants, so the spot trace's step (30 s to 600 s) is sampled every
  ``sync_seconds``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gpufinops.sim.service import (
    EPSILON,
    IntArray,
    Outcome,
    Progress,
    ServiceModel,
    View,
    advance,
    initial_replicas,
    observe,
)
from gpufinops.sim.spot import SpotTrace
from gpufinops.sim.traces import Trace

ON_DEMAND = "on-demand"
NOTICE_SECONDS = 120
"""AWS's two-minute interruption notice (GCP gives 30 s)."""


@dataclass(frozen=True)
class Zone:
    """A spot zone's capacity in replicas, sampled by ``capacity``."""

    name: str
    step_seconds: float
    replicas: IntArray
    """Replicas obtainable at each step of the trace."""

    def capacity(self, second: int) -> int:
        return int(self.replicas[int(second // self.step_seconds) % len(self.replicas)])


def zones_of(traces: Sequence[SpotTrace], zone_replicas: int) -> tuple[Zone, ...]:
    """Each trace as a zone: ``count / full x zone_replicas`` replicas, ``full`` the
    trace's largest count (a 1-node trace is then all or nothing). Names repeat-proof."""
    if zone_replicas < 1:
        raise ValueError("a zone must hold at least one replica")
    zones: list[Zone] = []
    seen: set[str] = set()
    for i, trace in enumerate(traces):
        name = trace.zone if trace.zone not in seen else f"{trace.zone}-{i}"
        seen.add(name)
        full = max(int(trace.available.max()), 1)
        scaled = (trace.available.astype(np.int64) * zone_replicas) // full
        zones.append(Zone(name, trace.step_seconds, scaled))
    return tuple(zones)


@dataclass
class Replica:
    created: int
    placed: int | None = None
    """When it got a node (None: pending)."""
    ready_at: int | None = None
    ends: int | None = None
    """Its preemption instant, once noticed."""
    uid: int = 0

    def ready(self, t: int) -> bool:
        return self.ready_at is not None and self.ready_at <= t


@dataclass(frozen=True)
class ClassView:
    """A class's replicas as the operator sees them (from pods and node taints)."""

    ready: int = 0
    starting: int = 0
    pending: int = 0
    pending_since: float | None = None
    """Epoch s of the oldest pending replica's creation."""
    noticed: tuple[str, ...] = ()
    """Drained replicas under a notice (only for a policy that drains)."""
    preempted: int = 0
    """Replicas terminated by a preemption since the last decision."""

    @property
    def healthy(self) -> int:
        return self.ready + self.starting


@dataclass(frozen=True)
class Fleet:
    requested: Mapping[str, int]
    """Replicas asked for per class (the Deployments' spec)."""
    classes: Mapping[str, ClassView]

    def ready(self) -> int:
        return sum(c.ready for c in self.classes.values())


class FleetPolicy(Protocol):
    name: str
    drains: bool

    def decide(self, view: View | None, fleet: Fleet) -> dict[str, int]:
        """Replicas per class; ``view`` None before the first scrape (hold the total)."""
        ...


@dataclass
class FleetOutcome:
    outcome: Outcome
    on_demand_seconds: float
    spot_seconds: float
    preempted_work: float
    """Work units re-queued by preemptions."""
    preemptions: int
    """Replicas terminated by a preemption."""
    notices: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def preempted_requests(self) -> float:
        trace = self.outcome.trace
        work = float(trace.work.sum())
        return self.preempted_work * float(trace.requests.sum()) / work if work > 0 else 0.0

    def slo_attainment(self) -> float:
        """Share of requests within the SLO, a re-queued request counted a miss (strict:
        it counts even when its first wait had been within the SLO)."""
        attained, _, _ = self.outcome.wait_stats()
        total = float(self.outcome.trace.requests.sum())
        if total <= 0:
            return 1.0
        return max(0.0, attained * total - self.preempted_requests) / total

    def usd(self, prices: tuple[float, float]) -> float:
        """``prices``: (spot, on-demand) USD per GPU-hour."""
        spot, on_demand = prices
        return (self.spot_seconds * spot + self.on_demand_seconds * on_demand) / 3600.0


def simulate_fleet(
    trace: Trace,
    model: ServiceModel,
    policy: FleetPolicy,
    zones: Sequence[Zone],
    *,
    notice_seconds: int = NOTICE_SECONDS,
    drain_seconds: int | None = None,
    progress: Progress | None = None,
) -> FleetOutcome:
    """Run ``policy`` over ``trace`` with its replicas on on-demand and ``zones``.

    ``drain_seconds``: how long before its preemption a noticed replica of a draining
    policy stops taking new work (None or 0: it serves to the end, unless the policy
    releases it first, as the operator removes a noticed pod once its replacement is
    ready; ``notice_seconds``: at the notice); its replacement is asked for at the
    notice either way."""
    drain = 0 if drain_seconds is None else min(max(drain_seconds, 0), notice_seconds)

    def draining_serves(r: Replica, t: int) -> bool:
        return r.ready(t) and r.ends is not None and t < r.ends - drain

    started = time.process_time()
    n, sync, startup = trace.seconds, model.sync_seconds, model.startup_seconds
    mu = model.capacity_per_replica
    by_name = {z.name: z for z in zones}
    cum_work = np.concatenate(([0.0], np.cumsum(trace.work)))
    cum_served = np.zeros(n + 1)
    cum_capacity = np.zeros(n + 1)
    backlog = np.zeros(n)
    ready_s = np.zeros(n, dtype=np.int64)
    billed_s = np.zeros(n, dtype=np.int64)
    decisions = np.zeros(math.ceil(n / sync), dtype=np.int64)
    classes: dict[str, list[Replica]] = {ON_DEMAND: [], **{z.name: [] for z in zones}}
    draining: dict[str, list[Replica]] = {z.name: [] for z in zones}
    preempted = {name: 0 for name in classes}
    totals = {"od": 0.0, "spot": 0.0, "requeued": 0.0, "preemptions": 0, "notices": 0}
    counter = [0]
    queue, events = 0.0, 0
    initial = min(max(initial_replicas(trace, model), model.min_replicas), model.max_replicas)
    requested: dict[str, int] = {}
    report_every = max(1, len(decisions) // 200)

    def serving(t: int) -> int:
        ready = sum(r.ready(t) for c in classes.values() for r in c)
        return ready + sum(draining_serves(r, t) for d in draining.values() for r in d)

    def running_share(t: int) -> float:
        """In-flight work of one ready replica now (Little: served over the service time)."""
        ready = serving(t)
        s = max(t, 1)
        running = float(cum_served[s] - cum_served[max(0, s - model.service_seconds)])
        return running / ready if ready else 0.0

    def terminate(zone: str, replica: Replica, t: int, requeue: bool) -> None:
        nonlocal queue
        if requeue and replica.ready(t):
            share = shares[0]
            queue += share
            totals["requeued"] += share
        preempted[zone] += 1
        totals["preemptions"] += 1

    shares = [0.0]
    for tick, t in enumerate(range(0, n, sync)):
        shares[0] = running_share(t)  # before any replica of this tick goes
        for z in zones:
            # Notices run out: drained replicas go; noticed ones still serving are killed.
            done = [r for r in draining[z.name] if r.ends is not None and r.ends <= t]
            for r in done:
                draining[z.name].remove(r)
                # Still taking work up to its end: its in-flight requests are lost.
                terminate(z.name, r, t, requeue=draining_serves(r, t - 1))
            members = classes[z.name]
            for r in [r for r in members if r.ends is not None and r.ends <= t]:
                members.remove(r)
                terminate(z.name, r, t, requeue=True)
            # Capacity below the replicas already there: no notice was possible.
            placed = [r for r in members if r.placed is not None]
            over = len(placed) + len(draining[z.name]) - z.capacity(t)
            while over > 0 and draining[z.name]:
                gone = draining[z.name].pop()
                terminate(z.name, gone, t, requeue=draining_serves(gone, t))
                over -= 1
            newest_noticed_first = sorted(placed, key=lambda r: (r.ends is None, -(r.placed or 0)))
            for r in newest_noticed_first[: max(over, 0)]:
                members.remove(r)
                terminate(z.name, r, t, requeue=True)
            # Notices for what the capacity ahead will not hold.
            placed = [r for r in members if r.placed is not None]
            held = len(draining[z.name]) + sum(r.ends is not None for r in placed)
            fresh = [r for r in placed if r.ends is None]
            excess = len(fresh) + held - z.capacity(t + notice_seconds)
            for r in sorted(fresh, key=lambda r: -(r.placed or 0))[: max(excess, 0)]:
                r.ends = t + notice_seconds
                totals["notices"] += 1
                if policy.drains:
                    members.remove(r)
                    draining[z.name].append(r)

        serving_ready = serving(t)
        current = sum(requested.values()) if requested else initial
        view = observe(
            trace, model, t, current, serving_ready, cum_work, cum_served, cum_capacity, backlog
        )
        fleet = Fleet(dict(requested), _views(classes, draining, preempted, t, trace.start))
        for name in preempted:
            preempted[name] = 0
        if not requested:
            fleet = Fleet({ON_DEMAND: initial}, fleet.classes)
        wanted = policy.decide(view, fleet)
        # Noticed replicas the policy lets go (their replacements serve): removed
        # gracefully, their in-flight requests finishing.
        released: frozenset[str] = getattr(policy, "released", frozenset())
        for z in zones:
            for r in [r for r in draining[z.name] if f"{z.name}-{r.uid}" in released]:
                draining[z.name].remove(r)
        for name in wanted:
            if name not in classes:
                raise ValueError(f"policy {policy.name} asked for unknown class {name!r}")
        for name, members in classes.items():
            want = max(int(wanted.get(name, 0)), 0)
            if want != len(members):
                events += 1 if requested else 0
            while len(members) < want:
                counter[0] += 1
                members.append(Replica(created=t, uid=counter[0]))
            # Scale down: pending first, then starting, then ready; newest first.
            while len(members) > want:
                victim = max(
                    members,
                    key=lambda r: (r.placed is None, not r.ready(t), r.created, r.uid),
                )
                members.remove(victim)
            requested[name] = want
        decisions[tick] = sum(requested.values())
        # Placement: on-demand at once; spot while the zone has room, oldest first.
        for name, members in classes.items():
            room = (
                math.inf
                if name == ON_DEMAND
                else min(by_name[name].capacity(t), by_name[name].capacity(t + notice_seconds))
                - len(draining[name])
                - sum(r.placed is not None for r in members)
            )
            for r in sorted((r for r in members if r.placed is None), key=lambda r: r.uid):
                if room <= 0:
                    break
                r.placed = t
                r.ready_at = t if tick == 0 else t + startup
                room -= 1

        end = min(t + sync, n)
        a = t
        while a < end:
            ready = serving(a)
            nxt = [
                r.ready_at for c in classes.values() for r in c
                if r.ready_at is not None and a < r.ready_at < end
            ] + [
                r.ends - drain for d in draining.values() for r in d
                if r.ends is not None and a < r.ends - drain < end
            ]  # fmt: skip
            b = min(nxt) if nxt else end
            queue = advance(queue, ready * mu, a, b, cum_work, cum_served, cum_capacity, backlog)
            ready_s[a:b] = ready
            a = b
        od = sum(r.placed is not None for r in classes[ON_DEMAND])
        spot = sum(
            sum(r.placed is not None for r in classes[z.name]) + len(draining[z.name])
            for z in zones
        )
        billed_s[t:end] = od + spot
        totals["od"] += od * (end - t)
        totals["spot"] += spot * (end - t)
        if queue < EPSILON:
            queue = 0.0
        if progress is not None and tick % report_every == 0:
            progress(end / n)
    outcome = Outcome(
        policy.name, trace, model, billed_s, ready_s, backlog, decisions, events,
        time.process_time() - started,
    )  # fmt: skip
    return FleetOutcome(
        outcome,
        totals["od"],
        totals["spot"],
        totals["requeued"],
        int(totals["preemptions"]),
        int(totals["notices"]),
    )


def _views(
    classes: Mapping[str, list[Replica]],
    draining: Mapping[str, list[Replica]],
    preempted: Mapping[str, int],
    t: int,
    start: float,
) -> dict[str, ClassView]:
    out = {}
    for name, members in classes.items():
        pending = [r.created for r in members if r.placed is None]
        ready = sum(r.ready(t) for r in members)
        placed = sum(r.placed is not None for r in members)
        out[name] = ClassView(
            ready=ready,
            starting=placed - ready,
            pending=len(pending),
            pending_since=start + min(pending) if pending else None,
            noticed=tuple(f"{name}-{r.uid}" for r in draining.get(name, ())),
            preempted=preempted.get(name, 0),
        )
    return out
