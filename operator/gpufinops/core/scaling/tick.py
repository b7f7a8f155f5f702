"""One Inference tick as a plan: the replicas to set, the conditions, the Events.

The controller reads the target, the signals and the forecast, and calls
``plan_inference`` once; it then carries the steps out in order (scale, post)
and writes status. The simulator calls the same function tick for tick, so
what it measures includes the manual override, the budget ceiling, pausing
and Recommend mode, not only the arithmetic of ``decide``.

What a tick remembers beyond the persisted ``ScalingState`` (``Said``) only
keeps Events and status writes from repeating themselves; losing it on a
restart costs at most one repeated Event.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from gpufinops.api.spec import AIWorkloadSpec, Mode
from gpufinops.api.status import Condition, ConditionStatus, ConditionType
from gpufinops.core.conditions import find_condition, set_condition
from gpufinops.core.cost.budget import Action, replica_ceiling
from gpufinops.core.events import EventReason, PostEvent
from gpufinops.core.forecast.report import ForecastPoint, ForecastReport
from gpufinops.core.scaling.decide import Decision, ScalingSettings, ScalingState, Tick, decide
from gpufinops.core.scaling.observation import Observation
from gpufinops.core.scaling.plan import plan_scale
from gpufinops.core.scaling.target import TargetUnavailable, TargetView

CONFLICTING_AUTOSCALER = "ConflictingAutoscaler"
PAUSED_ANNOTATION = "gpufinops.dev/paused"
"""``"true"`` pauses the workload's autoscaling (KEDA's ``autoscaling.keda.sh/paused``)."""

_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def same_words(a: str, b: str) -> bool:
    """Whether two texts differ at most in their numbers ("demand 19/s" and "demand 19.5/s")."""
    return _NUMBER.sub("#", a) == _NUMBER.sub("#", b)


@dataclass(frozen=True)
class Scale:
    """Set the target's replicas (through its scale subresource)."""

    replicas: int


Step = Scale | PostEvent


@dataclass(frozen=True)
class Said:
    """What earlier ticks of this process said: Events and rewrites are not repeated."""

    last_action: tuple[str, int] | None = None
    fallback_on: bool = False
    explained: tuple[tuple[object, ...], str] | None = None
    """The decision last explained (action and replica counts) and its reason."""


@dataclass(frozen=True)
class InferenceTick:
    """What one tick observed, as plain data."""

    spec: AIWorkloadSpec
    namespace: str
    generation: int | None
    target: TargetView | TargetUnavailable | None
    """None: not found."""
    conflicts: Sequence[str]
    """Other autoscalers (HPA, ScaledObject, another AIWorkload) driving the target."""
    now: float
    conditions: Sequence[Condition]
    observation: Observation | None = None
    """The signals; None when the tick stops before reading them (no target, conflicts)."""
    forecast: ForecastPoint | None = None
    report: ForecastReport | None = None
    enforcement: Action | None = None
    """The budget enforcement the cost loop recorded in status (``recorded_enforcement``)."""
    paused: bool = False
    headroom_coverage: float | None = None
    """The calibrated headroom's coverage instead of the shipped one (the benchmark
    sweeps it; the operator never sets it)."""
    disrupted: bool = False
    """Spot replicas preempted are being replaced (``SpotPlan.replacing`` of the last
    tick): the calibrated headroom does not score this tick."""


@dataclass
class InferencePlan:
    outcome: str
    """What the tick came to, for the ticks metric: decided, target_not_found, ..."""
    conditions: list[Condition]
    said: Said
    state: ScalingState
    steps: list[Step] = field(default_factory=list)
    decision: Decision | None = None
    desired: int | None = None
    action: str | None = None
    reason: str | None = None

    @property
    def events(self) -> list[PostEvent]:
        return [s for s in self.steps if isinstance(s, PostEvent)]


def target_name(spec: AIWorkloadSpec) -> str:
    assert spec.inference is not None
    return f"{spec.inference.target_ref.kind}/{spec.inference.target_ref.name}"


def needs_signals(tick: InferenceTick) -> bool:
    """Whether the tick goes on to read signals: a target it may scale, no rival."""
    return isinstance(tick.target, TargetView) and not tick.conflicts


def plan_inference(tick: InferenceTick, state: ScalingState, said: Said) -> InferencePlan:
    """The tick's plan. ``tick.observation`` must be set when ``needs_signals(tick)``."""
    return _Planner(tick, state, said).plan()


class _Planner:
    def __init__(self, tick: InferenceTick, state: ScalingState, said: Said) -> None:
        self.tick, self.state, self.said = tick, state, said
        self.conditions = list(tick.conditions)
        self.steps: list[Step] = []
        self.stamp = datetime.fromtimestamp(tick.now, tz=UTC)

    def _condition(self, ctype: str, status: ConditionStatus, reason: str, message: str) -> bool:
        """Set a condition; True when its status changed (worth an Event)."""
        before = find_condition(self.conditions, ctype)
        self.conditions = set_condition(
            self.conditions, type=ctype, status=status, reason=reason, message=message,
            now=self.stamp, generation=self.tick.generation,
        )  # fmt: skip
        return before is None or before.status != status

    def _event(self, type: str, reason: EventReason, message: str) -> None:
        self.steps.append(PostEvent(type, reason, message))

    def _done(self, outcome: str, **decided: object) -> InferencePlan:
        plan = InferencePlan(outcome, self.conditions, self.said, self.state, self.steps)
        for key, value in decided.items():
            setattr(plan, key, value)
        return plan

    def plan(self) -> InferencePlan:
        tick = self.tick
        target = target_name(tick.spec)
        current = tick.target
        if current is None:
            if self._condition(
                ConditionType.READY, ConditionStatus.FALSE, "TargetNotFound",
                f"{target} not found in namespace {tick.namespace}",
            ):  # fmt: skip
                self._event(
                    "Warning", EventReason.TARGET_NOT_FOUND, f"{target} not found; nothing to scale"
                )
            return self._done("target_not_found")
        if isinstance(current, TargetUnavailable):
            # Not scalable (no /scale), or the operator may not read it: nothing is decided
            # from a count it cannot see, and the message says what to fix.
            message = f"{target}: {current.message}"
            if self._condition(ConditionType.READY, ConditionStatus.FALSE, current.reason, message):
                self._event("Warning", EventReason(current.reason), message)
            return self._done("target_unavailable")
        if tick.conflicts:
            rivals = ", ".join(tick.conflicts)
            changed = self._condition(
                CONFLICTING_AUTOSCALER, ConditionStatus.TRUE, "AnotherAutoscalerTargetsDeployment",
                f"{rivals} also scales {target}; gpufinops will not act until it is removed",
            )  # fmt: skip
            self._condition(
                ConditionType.READY, ConditionStatus.FALSE, CONFLICTING_AUTOSCALER,
                f"{rivals} also scales {target}",
            )  # fmt: skip
            if changed:
                self._event(
                    "Warning", EventReason.CONFLICTING_AUTOSCALER,
                    f"{rivals} also scales {target}: not acting, to avoid a fight",
                )  # fmt: skip
            return self._done("conflicting_autoscaler")
        if find_condition(self.conditions, CONFLICTING_AUTOSCALER) is not None:
            self._condition(
                CONFLICTING_AUTOSCALER, ConditionStatus.FALSE, "NoOtherAutoscaler",
                f"no other autoscaler targets {target}",
            )  # fmt: skip
        return self._decide(current, target)

    def _decide(self, current: TargetView, target: str) -> InferencePlan:
        tick = self.tick
        spec, inference = tick.spec, tick.spec.inference
        assert inference is not None and tick.observation is not None
        peak = tick.forecast.peak if tick.forecast is not None else None
        settings = ScalingSettings.from_spec(inference)
        if tick.headroom_coverage is not None:
            settings = replace(settings, coverage=tick.headroom_coverage)
        decision = decide(
            settings, self.state,
            Tick(tick.now, current.replicas, current.ready, tick.observation, peak,
                 tick.disrupted),
        )  # fmt: skip
        self.state = decision.state
        # A budget binds a person's count too: `kubectl scale aiw` is open to whoever may
        # edit the workload, the budget is an admin's (docs/security.md).
        ceiling = replica_ceiling(
            tick.enforcement, spec.budget is not None, inference.min_replicas, current.replicas
        )
        scaled = plan_scale(decision, manual_replicas=spec.replicas, ceiling=ceiling)
        desired, action = scaled.desired, scaled.action
        reason = self._settled(
            (action, desired, decision.recommended, current.replicas, current.ready), scaled.reason
        )
        self._signal_conditions(decision)
        self._pause_condition(target)
        # Paused (annotation gpufinops.dev/paused) decides and says so, as Recommend does.
        recommend_only = spec.mode == Mode.RECOMMEND or tick.paused
        if desired != current.replicas and not recommend_only:
            self.steps.append(Scale(desired))
            self._event(
                "Normal", scaled.event_reason, f"{target} {current.replicas} → {desired}: {reason}"
            )
        elif desired != current.replicas and (action, desired) != self.said.last_action:
            self._event(
                "Normal", EventReason.RECOMMENDATION,
                f"would scale {target} {current.replicas} → {desired}: {reason}",
            )  # fmt: skip
        if self.said.last_action != (action, desired):
            self.said = replace(self.said, last_action=(action, desired))
        if decision.metrics_available or decision.fallback_active:
            self._condition(
                ConditionType.READY, ConditionStatus.TRUE,
                "Paused" if tick.paused else "Recommending" if recommend_only else "Scaling",
                f"{'recommending' if recommend_only else 'scaling'} {target}: {reason}",
            )  # fmt: skip
        else:
            self._condition(
                ConditionType.READY, ConditionStatus.FALSE, "MetricsUnavailable",
                f"holding {target} at {current.replicas} replicas: {reason}",
            )  # fmt: skip
        return self._done(
            "decided", decision=decision, desired=desired, action=action, reason=reason
        )

    def _settled(self, decision: tuple[object, ...], reason: str) -> str:
        """The reason as last said when only its measured numbers moved.

        The same decision (action, desired, recommended, current and ready replicas)
        explained with a demand of 19.5/s instead of 19/s is not news: rewriting the
        reason would rewrite ``lastDecision`` and the Ready condition, a status write
        (and a watch event for every watcher) on nearly every tick under real load.
        The numbers in status.replicas stay exact; the reason keeps the figures of
        the tick that made the decision (``lastDecision.time``).
        """
        said = self.said.explained
        if said is not None and said[0] == decision and same_words(said[1], reason):
            return said[1]
        self.said = replace(self.said, explained=(decision, reason))
        return reason

    def _pause_condition(self, target: str) -> None:
        """``Paused`` as KEDA names it; an Event when it turns on or off."""
        before = find_condition(self.conditions, ConditionType.PAUSED)
        if self.tick.paused:
            if self._condition(
                ConditionType.PAUSED, ConditionStatus.TRUE, "PausedByAnnotation",
                f"annotation {PAUSED_ANNOTATION}=true: {target} is not scaled (decisions "
                f"are still made and shown); set it to false or remove it to resume",
            ):  # fmt: skip
                self._event(
                    "Normal",
                    EventReason.AUTOSCALING_PAUSED,
                    f"{PAUSED_ANNOTATION}=true: not scaling",
                )
        elif before is not None and before.status == ConditionStatus.TRUE:
            self._condition(
                ConditionType.PAUSED, ConditionStatus.FALSE, "Resumed",
                f"{PAUSED_ANNOTATION} is not true: scaling {target}",
            )  # fmt: skip
            self._event("Normal", EventReason.AUTOSCALING_RESUMED, f"scaling {target} again")

    def _signal_conditions(self, decision: Decision) -> None:
        before = find_condition(self.conditions, ConditionType.METRICS_AVAILABLE)
        if decision.metrics_available:
            self._condition(
                ConditionType.METRICS_AVAILABLE, ConditionStatus.TRUE, "QueueSignalRead",
                "queue and demand signals are being read",
            )  # fmt: skip
            if before is not None and before.status == ConditionStatus.FALSE:
                self._event("Normal", EventReason.METRICS_AVAILABLE, "signals are read again")
        elif self._condition(
            ConditionType.METRICS_AVAILABLE, ConditionStatus.FALSE, EventReason.METRICS_UNAVAILABLE,
            decision.reason,
        ):  # fmt: skip
            self._event("Warning", EventReason.METRICS_UNAVAILABLE, decision.reason)
        if decision.fallback_active:
            self._condition(
                ConditionType.FALLBACK, ConditionStatus.TRUE, "FallbackActive", decision.reason
            )
        elif find_condition(self.conditions, ConditionType.FALLBACK) is not None:
            self._condition(
                ConditionType.FALLBACK, ConditionStatus.FALSE, "NoFallback",
                "replicas come from the signals",
            )  # fmt: skip
        if decision.fallback_active and not self.said.fallback_on:
            self._event("Warning", EventReason.FALLBACK_ACTIVATED, decision.reason)
        if self.said.fallback_on != decision.fallback_active:
            self.said = replace(self.said, fallback_on=decision.fallback_active)
        report = self.tick.report
        if report is None:
            return
        status = ConditionStatus.TRUE if report.ready else ConditionStatus.FALSE
        if self._condition(ConditionType.PREDICTION_READY, status, report.reason, report.message):
            self._event(
                "Normal" if report.ready else "Warning",
                EventReason.PREDICTION_READY if report.ready else EventReason.PREDICTION_NOT_READY,
                report.message,
            )
