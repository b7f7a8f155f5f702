"""The Inference section: autoscaling a GPU serving Deployment on its request queue."""

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, field_validator, model_validator

from gpufinops.api.base import (
    CRON,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ApiModel,
    cel,
    check_cron,
    check_timezone,
    rule,
)
from gpufinops.api.scaling import Behavior


class MetricsServer(StrEnum):
    VLLM = "vllm"
    TRITON = "triton"
    TGI = "tgi"
    SGLANG = "sglang"
    CUSTOM = "custom"


class FallbackBehavior(StrEnum):
    STATIC = "static"
    CURRENT_REPLICAS = "currentReplicas"
    CURRENT_REPLICAS_IF_HIGHER = "currentReplicasIfHigher"
    CURRENT_REPLICAS_IF_LOWER = "currentReplicasIfLower"


SCALABLE_KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "LeaderWorkerSet": ("leaderworkerset.x-k8s.io/v1", "leaderworkersets"),
    "Rollout": ("argoproj.io/v1alpha1", "rollouts"),
}
"""Kinds whose apiVersion may be left out, and their resource names (for RBAC checks)."""

KIND = r"^[A-Z][A-Za-z0-9]*$"
API_VERSION = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/v[0-9]+((alpha|beta)[0-9]+)?$"


class InferenceTargetRef(ApiModel):
    """The object serving the model, in the AIWorkload's namespace: anything with a
    ``/scale`` subresource (Deployment, StatefulSet, LeaderWorkerSet, Argo Rollout, a
    custom resource), as an HPA's or KEDA's scaleTargetRef names it."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.apiVersion) || self.kind in "
                + "[" + ", ".join(f"'{k}'" for k in SCALABLE_KINDS) + "]",
                "apiVersion is required for this kind: give the group/version that serves it, "
                "e.g. apiVersion: example.com/v1",
                ".apiVersion",
                "FieldValueRequired",
            )
        )
    )  # fmt: skip

    api_version: str | None = Field(
        default=None,
        max_length=253,
        pattern=API_VERSION,
        description="group/version of the kind (apps/v1 when left out for Deployment and "
        "StatefulSet; leaderworkerset.x-k8s.io/v1 for LeaderWorkerSet; argoproj.io/v1alpha1 "
        "for Rollout); required for any other kind.",
    )
    kind: str = Field(
        default="Deployment",
        max_length=63,
        pattern=KIND,
        description="Kind of the scaled object; it must have a /scale subresource.",
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of the object to scale.",
    )

    @model_validator(mode="after")
    def _known_or_versioned(self) -> "InferenceTargetRef":
        if self.api_version is None and self.kind not in SCALABLE_KINDS:
            raise ValueError(
                f"apiVersion is required for kind {self.kind}: give the group/version that "
                "serves it, e.g. apiVersion: example.com/v1"
            )
        return self

    @property
    def resolved_api_version(self) -> str:
        """The apiVersion, filled in for the kinds whose group is well known."""
        return self.api_version or SCALABLE_KINDS[self.kind][0]

    @property
    def is_deployment(self) -> bool:
        return self.kind == "Deployment" and self.resolved_api_version == "apps/v1"


class InferenceMetrics(ApiModel):
    """Where the queue and demand signals come from (Prometheus)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.server) || self.server != 'custom' || has(self.queueQuery)",
                "queueQuery is required when server is custom",
                ".queueQuery",
                "FieldValueRequired",
            )
        )
    )

    server: MetricsServer = Field(
        default=MetricsServer.VLLM,
        description="Serving engine whose metrics are read: vllm, triton, tgi, sglang, or "
        "custom (then queueQuery is required).",
    )
    model_name: str | None = Field(
        default=None,
        max_length=253,
        description="Value of the engine's model label (vLLM `model_name`) to select one "
        "model's series when several share a Prometheus.",
    )
    queue_query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL returning the number of waiting requests across the Deployment. "
        "Overrides the preset; required when server is custom.",
    )
    demand_query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL returning demand in requests per second (used by the forecaster). "
        "Overrides the preset.",
    )

    @model_validator(mode="after")
    def _custom_needs_query(self) -> "InferenceMetrics":
        if self.server == MetricsServer.CUSTOM and not self.queue_query:
            raise ValueError("queueQuery is required when server is custom")
        return self


class Forecast(ApiModel):
    """Predictive scaling: start replicas before demand arrives, since GPU pods start slowly."""

    enabled: bool = Field(default=True, description="Use demand forecasts as well as the queue.")
    lead_time_seconds: int = Field(
        default=180,
        ge=0,
        le=3600,
        description="How far ahead to provision, in seconds: about the time a new replica "
        "takes to become ready (node, image and model load).",
    )
    history_days: int = Field(
        default=7, ge=1, le=28, description="Days of demand history the model learns from (1-28)."
    )
    quantile: float = Field(
        default=0.9,
        ge=0.5,
        le=0.99,
        description="Forecast quantile to provision for (0.5-0.99); higher trades cost for "
        "fewer queued requests at unexpected peaks.",
    )


class ScaleToZero(ApiModel):
    """Remove every replica while there is no traffic at all."""

    enabled: bool = Field(default=False, description="Allow scaling to zero replicas when idle.")
    idle_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="Seconds without requests before scaling to zero (as KEDA's cooldownPeriod).",
    )
    activation_threshold: float = Field(
        default=0.0,
        ge=0,
        le=1e9,
        description="At zero replicas, wake when demand (requests/s, from demandQuery or the "
        "preset's arrival rate) is above this, or any request is queued (as KEDA's "
        "activationThreshold). An engine's series are absent at zero: that is no queue, "
        "not a failed read, so fallback does not apply to it.",
    )


class Schedule(ApiModel):
    """A recurring window with a higher replica floor (for known peaks)."""

    name: str = Field(
        min_length=1, max_length=63, pattern=DNS_LABEL, description="Name of the window."
    )
    cron: str = Field(
        pattern=CRON,
        max_length=128,
        description="Start of each window, five-field cron (minute hour day month weekday).",
    )
    timezone: str = Field(
        default="UTC", max_length=64, description="IANA time zone of the cron, e.g. Europe/Paris."
    )
    duration_seconds: int = Field(
        gt=0, le=604800, description="Length of each window in seconds (at most a week)."
    )
    min_replicas: int = Field(ge=0, description="Replica floor while the window is open.")

    _cron = field_validator("cron")(check_cron)
    _timezone = field_validator("timezone")(check_timezone)


class Fallback(ApiModel):
    """What to do when the metrics cannot be read (KEDA's fallback)."""

    failure_threshold: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Consecutive failed metric reads before the fallback applies. Until then "
        "the current replicas are held; missing data never scales down.",
    )
    replicas: int = Field(ge=0, description="Replica count used by the fallback behaviour.")
    behavior: FallbackBehavior = Field(
        default=FallbackBehavior.STATIC,
        description="static: use `replicas`. currentReplicas: keep the current count. "
        "currentReplicasIfHigher/IfLower: the higher/lower of current and `replicas`.",
    )


PoolName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]


class SpotOverprovision(ApiModel):
    """Spot replicas run beyond those needed, so a preemption costs no capacity while
    its replacements start."""

    min_extra_replicas: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Extra spot replicas always run (SpotHedge's fixed over-provisioning).",
    )
    by_preemption_rate: bool = Field(
        default=True,
        description="Add the spot replicas expected to be preempted before a replacement "
        "would be ready, from each pool's observed preemption rate (status.spot.pools).",
    )


class SpotInference(ApiModel):
    """Serve part of the replicas from spot GPU pools: an on-demand base, spot above it
    spread over several pools, replaced by on-demand while spot is short.

    The scaled Deployment keeps the on-demand replicas; for each spot pool the operator
    runs a copy of it (``<target>-spot-<pool>``, owned by the AIWorkload) pinned to
    that pool, so the Service in front of the Deployment serves them all."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.pools.all(p, self.pools.exists_one(q, q == p))",
                "pools must not repeat a pool",
                ".pools",
            )
        )
    )

    pools: list[PoolName] = Field(
        min_length=1,
        max_length=8,
        description="Spot node pools of the operator config (capacityType spot) to spread "
        "spot replicas over, e.g. one per zone. A pool must admit this namespace.",
    )
    on_demand_base_replicas: int = Field(
        default=1,
        ge=0,
        le=10000,
        description="Replicas always kept on on-demand: size it for the traffic that must be "
        "served through a preemption, until replacements are ready.",
    )
    on_demand_percent_above_base: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Share (0-100) of the replicas above the base also kept on on-demand.",
    )
    overprovision: SpotOverprovision = Field(
        default_factory=SpotOverprovision,
        json_schema_extra={"default": {}},
        description="Spot replicas run beyond those needed.",
    )
    unavailable_seconds: int = Field(
        default=900,
        ge=60,
        le=86400,
        description="How long a pool is left alone after it was interrupted or could not "
        "place a replica; its share goes to the other pools, or to on-demand.",
    )
    pending_timeout_seconds: int = Field(
        default=180,
        ge=10,
        le=3600,
        description="A spot replica unschedulable this long marks its pool as short of spot.",
    )

    @field_validator("pools")
    @classmethod
    def _unique(cls, pools: list[str]) -> list[str]:
        if len(set(pools)) != len(pools):
            raise ValueError("pools must not repeat a pool")
        return pools


_INFERENCE_RULES = cel(
    rule(
        "self.minReplicas <= self.maxReplicas",
        "minReplicas must be less than or equal to maxReplicas",
        ".minReplicas",
    ),
    rule(
        "!has(self.fallback) || self.fallback.replicas <= self.maxReplicas",
        "fallback.replicas must be less than or equal to maxReplicas",
        ".fallback.replicas",
    ),
    rule(
        "!has(self.schedules) || self.schedules.all(s, s.minReplicas <= self.maxReplicas)",
        "each schedule's minReplicas must be less than or equal to maxReplicas",
        ".schedules",
    ),
)


class Inference(ApiModel):
    """Autoscaling of a GPU inference Deployment on its request queue and forecast demand."""

    model_config = ConfigDict(json_schema_extra=_INFERENCE_RULES)

    target_ref: InferenceTargetRef = Field(
        description="The object to scale (its /scale subresource)."
    )
    min_replicas: int = Field(
        default=1, ge=0, le=10000, description="Fewest replicas kept while active (>= 0)."
    )
    max_replicas: int = Field(ge=1, le=10000, description="Most replicas ever run (>= 1).")
    metrics: InferenceMetrics = Field(
        default_factory=InferenceMetrics,
        json_schema_extra={"default": {}},
        description="Signals read from Prometheus.",
    )
    target_queue_depth_per_replica: float = Field(
        default=5.0,
        gt=0,
        description="Waiting requests each replica may have before another is needed (> 0).",
    )
    capacity_per_replica: float | None = Field(
        default=None,
        gt=0,
        description="Requests per second one replica sustains, from your load tests. "
        "When unset the operator learns it from throughput while requests queue.",
    )
    kv_cache_target_usage: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="KV-cache pressure trigger: keep the mean KV-cache usage of the ready "
        "replicas at or below this fraction (0-1], needing ceil(ready x usage / target) "
        "replicas; the larger of this and the queue's need wins. LLM replicas run out of "
        "KV cache before their queue grows. Read from vLLM kv_cache_usage_perc, SGLang "
        "token_usage; engines without such a metric (Triton, TGI) scale on the queue alone.",
    )
    forecast: Forecast = Field(
        default_factory=Forecast,
        json_schema_extra={"default": {}},
        description="Predictive scaling.",
    )
    behavior: Behavior | None = Field(
        default=None, description="Scale-up and scale-down rules with HPA semantics."
    )
    scale_to_zero: ScaleToZero | None = Field(
        default=None, description="Scaling to zero replicas while idle."
    )
    schedules: list[Schedule] | None = Field(
        default=None,
        max_length=20,
        description="Recurring windows with a higher replica floor.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    fallback: Fallback | None = Field(
        default=None, description="Behaviour while metrics cannot be read."
    )
    spot: SpotInference | None = Field(
        default=None,
        description="Serve replicas above an on-demand base from spot GPU pools.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> "Inference":
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be less than or equal to maxReplicas")
        if self.fallback is not None and self.fallback.replicas > self.max_replicas:
            raise ValueError("fallback.replicas must be less than or equal to maxReplicas")
        for s in self.schedules or []:
            if s.min_replicas > self.max_replicas:
                raise ValueError(
                    "each schedule's minReplicas must be less than or equal to maxReplicas"
                )
        return self
