"""The four policies of the spot inference comparison (docs/benchmarks.md).

Each sizes the service with a policy of ``sim.policies`` (KEDA, or the gpufinops
core) and places the replicas over on-demand and the spot zones:

- ``keda``: every replica on on-demand.
- ``keda-spot``: every replica in the first zone's spot pool (pending while it has
  no capacity): KEDA pointed at a spot node pool.
- ``spothedge``: SkyServe's SpotHedge (arXiv 2411.01438): ``N`` from KEDA, ``N +
  SPOTHEDGE_EXTRA`` spot replicas spread over the zones not recently preempted (a
  zone is left after a preemption or a launch pending past the timeout; all zones
  return when none is left), ``N`` minus the ready spot replicas on on-demand. It
  does not act on interruption notices.
- ``gpufinops-spot``: the gpufinops core's desired count (``CorePolicy``) split by
  the shipped ``core.scaling.spot.plan_spot`` every tick, fed what the operator
  sees (ready, starting, pending and the oldest pending's age, pods under a
  notice), with the spec's defaults; it drains on notices.
"""

from __future__ import annotations

from dataclasses import replace

from gpufinops.api.inference import SpotInference
from gpufinops.core.scaling.spot import (
    OnDemandObservation,
    PoolObservation,
    PoolRecord,
    SpotSettings,
    plan_spot,
)
from gpufinops.sim.fleet import ON_DEMAND, Fleet, Zone
from gpufinops.sim.policies import CorePolicy, Keda, keda_target
from gpufinops.sim.service import Policy, ServiceModel, View

SPOT_POLICIES = ("gpufinops-spot", "keda", "keda-spot", "spothedge")
SPOTHEDGE_EXTRA = 2
"""SpotHedge's fixed over-provisioning, in replicas."""
SPOTHEDGE_PENDING_SECONDS = 180.0
"""A launch pending this long counts as a failure in its zone (as plan_spot's default)."""


class Sized:
    """Asks the sizing policy for a total, with the view it would have on its own:
    ``current`` is its own last answer (its Deployment's replicas), not the fleet's."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.total: int | None = None

    def __call__(self, view: View | None, fleet: Fleet) -> int:
        if self.total is None:
            self.total = sum(fleet.requested.values())
        if view is not None:
            mine = replace(view, current=self.total, ready=min(view.ready, self.total))
            self.total = max(int(self.inner.decide(mine)), 0)
        return self.total


class KedaOn:
    """KEDA with all its replicas in one class (on-demand, or one zone's spot pool)."""

    drains = False

    def __init__(self, name: str, keda: Keda, place: str) -> None:
        self.name = name
        self.size = Sized(keda)
        self.place = place

    def decide(self, view: View | None, fleet: Fleet) -> dict[str, int]:
        return {self.place: self.size(view, fleet)}


class SpotHedge:
    drains = False

    def __init__(self, keda: Keda, zones: tuple[str, ...], extra: int = SPOTHEDGE_EXTRA) -> None:
        self.name = "spothedge"
        self.size = Sized(keda)
        self.zones = zones
        self.extra = extra
        self.active = set(zones)

    def decide(self, view: View | None, fleet: Fleet) -> dict[str, int]:
        n = self.size(view, fleet)
        classes = fleet.classes
        for z in self.zones:
            seen = classes[z]
            stuck = (
                seen.pending_since is not None
                and view is not None
                and view.now - seen.pending_since >= SPOTHEDGE_PENDING_SECONDS
            )
            if seen.preempted or stuck:
                self.active.discard(z)
        if not self.active:
            self.active = set(self.zones)
        want = n + self.extra if n > 0 else 0
        # Live spot replicas stay where they are; pending ones in a left zone are cancelled.
        keep = {z: classes[z].healthy + (classes[z].pending if z in self.active else 0)
                for z in self.zones}  # fmt: skip
        out = dict(keep)
        surplus = sum(keep.values()) - want
        while surplus > 0:
            z = max(self.zones, key=lambda z: (out[z], z not in self.active))
            out[z] -= 1
            surplus -= 1
        active = [z for z in self.zones if z in self.active]
        for _ in range(-surplus):
            z = min(active, key=lambda z: (out[z], active.index(z)))
            out[z] += 1
        ready_spot = sum(classes[z].ready for z in self.zones)
        out[ON_DEMAND] = max(0, n - ready_spot)
        return out


class GpufinopsSpot:
    drains = True

    def __init__(self, core: CorePolicy, zones: tuple[str, ...], model: ServiceModel) -> None:
        self.name = "gpufinops-spot"
        self.core = core
        self.size = Sized(core)
        spec = SpotInference.model_validate({"pools": list(zones)})
        self.settings = SpotSettings.from_spec(spec, float(model.startup_seconds))
        self.records: dict[str, PoolRecord] = {}
        self.released: frozenset[str] = frozenset()
        """Noticed replicas the last plan removes (``plan.drain``)."""

    def decide(self, view: View | None, fleet: Fleet) -> dict[str, int]:
        desired = self.size(view, fleet)
        if view is None:
            # Nothing scraped yet: the replicas it started with, on on-demand (a plan
            # now would date the pools' records to no real instant).
            return {ON_DEMAND: desired}
        now = view.now
        pools = {
            z: PoolObservation(
                ready=c.ready, starting=c.starting, pending=c.pending,
                pending_since=c.pending_since, noticed=c.noticed,
                notice_reason="SpotInterruptionNotice (simulated)" if c.noticed else "",
            )
            for z, c in fleet.classes.items() if z != ON_DEMAND
        }  # fmt: skip
        od = fleet.classes[ON_DEMAND]
        on_demand = OnDemandObservation(fleet.requested.get(ON_DEMAND, 0), od.ready)
        plan = plan_spot(desired, self.settings, on_demand, pools, self.records, now)
        self.records = dict(plan.records)
        self.core.disrupted = plan.replacing  # as the operator passes it to the next tick
        # The plan's pool counts hold the noticed replicas it keeps serving; here those
        # are apart from their class (as pods marked to go first), so not asked again.
        self.released = frozenset(plan.drain)
        kept = {z: sum(n not in self.released for n in pools[z].noticed) for z in pools}
        return {ON_DEMAND: plan.on_demand, **{z: n - kept.get(z, 0) for z, n in plan.spot.items()}}


def build_spot_policy(
    name: str,
    model: ServiceModel,
    zones: tuple[Zone, ...],
    target: float,
    core: CorePolicy | None = None,
) -> GpufinopsSpot | SpotHedge | KedaOn:
    """``target``: KEDA's in-flight target (fraction of a saturated replica's) for the
    KEDA-sized policies; ignored by ``gpufinops-spot``, which takes ``core``."""
    names = tuple(z.name for z in zones)
    if name == "gpufinops-spot":
        if core is None:
            raise ValueError("gpufinops-spot needs the core policy")
        return GpufinopsSpot(core, names, model)
    keda = Keda(keda_target(target, model), model, cooldown_seconds=model.idle_seconds)
    if name == "keda":
        return KedaOn("keda", keda, ON_DEMAND)
    if name == "keda-spot":
        return KedaOn("keda-spot", keda, names[0])
    if name == "spothedge":
        return SpotHedge(keda, names)
    raise ValueError(f"unknown spot policy {name!r} (one of {', '.join(SPOT_POLICIES)})")
