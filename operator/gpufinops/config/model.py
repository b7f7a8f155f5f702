"""Operator configuration: validated once at start, with errors that name the field."""

from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpufinops.config.pricing import PricingTable, default_pricing


class ConfigError(ValueError):
    """The operator configuration is unusable; the message says where and how to fix it."""


class CapacityType(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"


class _Model(BaseModel):
    # A YAML file can say .inf or .nan; no price, rate or timeout of ours means either.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def _timezone(value: str) -> str:
    """An IANA zone name, checked at start rather than on every tick that reads it."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as UTC") from None
    return value


def _cron(value: str) -> str:
    """A five-field cron expression that fires on some date."""
    try:
        croniter(value, datetime(2024, 1, 1, tzinfo=UTC)).get_next(float)
    except Exception:  # croniter reports bad expressions with several exception types
        raise ValueError(f"invalid cron expression {value!r}, e.g. '0 20 * * *'") from None
    return value


class SelectorRequirement(_Model):
    """One ``matchExpressions`` entry of a Kubernetes label selector."""

    key: str = Field(min_length=1, max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> "SelectorRequirement":
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(_Model):
    """A Kubernetes label selector (every part must match)."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[SelectorRequirement] = Field(
        default_factory=list, alias="matchExpressions"
    )

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for e in self.match_expressions:
            present = e.key in labels
            if e.operator == "In" and labels.get(e.key) not in e.values:
                return False
            if e.operator == "NotIn" and present and labels[e.key] in e.values:
                return False
            if e.operator == "Exists" and not present:
                return False
            if e.operator == "DoesNotExist" and present:
                return False
        return True


class BasicAuth(_Model):
    """HTTP basic auth; the password always comes from a file (a mounted Secret)."""

    username: str | None = Field(default=None, min_length=1)
    username_file: str | None = Field(default=None, min_length=1, alias="usernameFile")
    password_file: str = Field(min_length=1, alias="passwordFile")

    @model_validator(mode="after")
    def _one_username(self) -> "BasicAuth":
        if (self.username is None) == (self.username_file is None):
            raise ValueError("give exactly one of username or usernameFile")
        return self


class TLSConfig(_Model):
    """How the server is verified and how the operator proves who it is (mTLS)."""

    ca_file: str | None = Field(default=None, min_length=1, alias="caFile")
    cert_file: str | None = Field(default=None, min_length=1, alias="certFile")
    key_file: str | None = Field(default=None, min_length=1, alias="keyFile")
    insecure_skip_verify: bool = Field(default=False, alias="insecureSkipVerify")

    @model_validator(mode="after")
    def _cert_and_key(self) -> "TLSConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("certFile and keyFile go together: give both or neither")
        return self


class SigV4Config(_Model):
    """AWS Signature V4 (Amazon Managed Prometheus), credentials from the default chain."""

    region: str = Field(min_length=1, pattern=r"^[a-z0-9-]+$")
    service: str = Field(default="aps", min_length=1)
    role_arn: str | None = Field(default=None, pattern=r"^arn:", alias="roleARN")
    """A role to assume first; without it, the pod's own identity (IRSA, Pod Identity)."""
    profile: str | None = Field(default=None, min_length=1)


class HTTPClientConfig(_Model):
    """How an HTTP endpoint (Prometheus, Alertmanager) is reached: Prometheus' http_config."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with every request, e.g. ``X-Scope-OrgID`` for a Mimir, Cortex or Thanos tenant."""
    bearer_token_file: str | None = Field(default=None, min_length=1, alias="bearerTokenFile")
    """Re-read when the file changes, so a rotated token is used without a restart."""
    basic_auth: BasicAuth | None = Field(default=None, alias="basicAuth")
    tls: TLSConfig = Field(default_factory=TLSConfig)
    sigv4: SigV4Config | None = None

    @field_validator("headers")
    @classmethod
    def _no_credentials_inline(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in ("authorization", "proxy-authorization"):
                raise ValueError(
                    f"header {name!r}: put credentials in bearerTokenFile or basicAuth "
                    "(files from a Secret), not in the config"
                )
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> "HTTPClientConfig":
        given = [
            key
            for key, value in (
                ("bearerTokenFile", self.bearer_token_file),
                ("basicAuth", self.basic_auth),
                ("sigv4", self.sigv4),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give one way to authenticate, not {' and '.join(given)}")
        return self


class QueryConfinement(StrEnum):
    NAMESPACE = "Namespace"
    """Every selector of a custom query gets the workload's namespace matcher."""
    NONE = "None"
    """Custom queries run as written (a cluster whose AIWorkload authors are all trusted)."""


class CustomQueryConfig(_Model):
    """Tenants' own PromQL (``queueQuery``, ``demandQuery``, ``server: custom``)."""

    confinement: QueryConfinement = QueryConfinement.NAMESPACE
    namespace_label: str = Field(
        default="namespace", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", alias="namespaceLabel"
    )
    """The label that carries the Kubernetes namespace in your series."""
    trusted_namespace_selector: LabelSelector | None = Field(
        default=None, alias="trustedNamespaceSelector"
    )
    """Namespaces (by labels an admin sets) whose custom queries run unconfined."""
    workers: int = Field(default=4, ge=1, le=64)
    """Threads that run custom queries, apart from the operator's own queries."""
    per_namespace: int = Field(default=1, ge=1, le=64, alias="perNamespace")
    """Custom queries of one namespace in flight at once; the rest of its ticks wait."""


class QueryLimits(_Model):
    """What one answer may weigh; checked while reading, so an oversized one is never loaded."""

    max_series: int = Field(default=2, ge=2, le=1_000_000, alias="maxSeries")
    """Series a workload's own query may return (one is used; more is refused)."""
    max_response_bytes: int = Field(default=1 << 20, ge=4096, le=1 << 30, alias="maxResponseBytes")
    """Bytes of one workload query's answer (instant or range)."""
    max_batch_series: int = Field(default=200_000, ge=1, alias="maxBatchSeries")
    """Series of one batch query (one preset metric for every workload)."""
    max_batch_response_bytes: int = Field(
        default=32 << 20, ge=4096, le=1 << 30, alias="maxBatchResponseBytes"
    )
    """Bytes of one batch query's answer."""


class PrometheusConfig(HTTPClientConfig):
    url: str = Field(default="http://127.0.0.1:9090", pattern=r"^https?://")
    timeout_seconds: float = Field(default=10, gt=0, le=300, alias="timeoutSeconds")
    """Sent to Prometheus as the query's ``timeout`` too, so it stops evaluating."""
    custom_queries: CustomQueryConfig = Field(
        default_factory=lambda: CustomQueryConfig(), alias="customQueries"
    )
    limits: QueryLimits = Field(default_factory=QueryLimits)


class FocusConfig(_Model):
    """Who the FOCUS export names as billing account, provider and invoice issuer."""

    billing_account_id: str = Field(default="gpufinops", min_length=1, alias="billingAccountId")
    """The account the spend is charged to: the cluster's name in a shared bill."""
    billing_account_name: str | None = Field(default=None, alias="billingAccountName")
    provider_name: str = Field(default="Kubernetes", min_length=1, alias="providerName")
    publisher_name: str = Field(default="Kubernetes", min_length=1, alias="publisherName")
    invoice_issuer_name: str = Field(default="gpufinops", min_length=1, alias="invoiceIssuerName")
    """No invoice is issued: the spend is allocated, so the allocator is named."""


class CostConfig(_Model):
    timezone: str = Field(default="UTC", description="Time zone of calendar days and months.")
    _timezone = field_validator("timezone")(_timezone)
    currency: str = Field(default="USD")
    interval_seconds: float = Field(default=60.0, gt=0, le=3600, alias="intervalSeconds")
    """How often spend is accrued into each workload's status.cost."""
    ledger_namespace: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        alias="ledgerNamespace",
    )
    """Where the month's spend of every workload is kept (ConfigMaps), out of tenants'
    reach; default: the operator's own namespace (``POD_NAMESPACE``), none outside a pod."""
    focus: FocusConfig = Field(default_factory=FocusConfig)
    power_usage_effectiveness: float = Field(default=1.0, ge=1.0, le=3.0, alias="pue")
    """Facility energy over IT energy of the data centres the pools run in: GPU energy
    is multiplied by it (1: the GPUs' own draw only)."""
    output_token_weight: float = Field(default=4.0, gt=0, le=100, alias="outputTokenWeight")
    """How many input tokens' worth of GPU time an output token is charged (per-token
    unit costs): API list prices put output at 3-5 times input."""


class AnomalyConfig(_Model):
    """When an hour's spend is an anomaly: against the same hour of the past days, not a
    fixed threshold (see ``core.cost.anomaly``)."""

    enabled: bool = True
    threshold: float = Field(default=4.0, gt=0, le=100)
    """How many robust deviations (1.4826 x the median absolute deviation, or
    ``relativeFloor`` x the median when larger) above the median an hour must spend."""
    relative_floor: float = Field(default=0.1, ge=0, le=10, alias="relativeFloor")
    """The least deviation, as a fraction of the median: a flat history does not turn a
    cent more into an anomaly."""
    min_excess_usd_per_hour: float = Field(default=1.0, ge=0, alias="minExcessUSDPerHour")
    """Excesses smaller than this (USD in the hour) are never anomalies: nobody acts on them."""
    lookback_days: int = Field(default=7, ge=2, le=7, alias="lookbackDays")
    """Days of the same hour the baseline is the median of (the history kept is 8 days)."""
    min_days: int = Field(default=3, ge=2, le=7, alias="minDays")
    """Days of history an hour needs before it is judged; a member with fewer is new."""

    @model_validator(mode="after")
    def _days(self) -> "AnomalyConfig":
        if self.min_days > self.lookback_days:
            raise ValueError("anomalies.minDays must not exceed anomalies.lookbackDays")
        return self


class AlertingConfig(_Model):
    """Where budget alerts go besides Kubernetes Events (both optional)."""

    alertmanager_url: str | None = Field(
        default=None, pattern=r"^https?://", alias="alertmanagerURL"
    )
    """Base URL of an Alertmanager; alerts are POSTed to <url>/api/v2/alerts."""
    webhook_url: str | None = Field(default=None, pattern=r"^https?://", alias="webhookURL")
    """Any HTTP endpoint that accepts one JSON object per alert."""
    alertmanager_client: HTTPClientConfig = Field(
        default_factory=HTTPClientConfig, alias="alertmanagerClient"
    )
    """Headers, credentials and TLS for the Alertmanager, as for Prometheus."""
    webhook_url_file: str | None = Field(default=None, min_length=1, alias="webhookURLFile")
    """A file holding the webhook URL (a mounted Secret: such URLs often carry a token).
    Read at every delivery, so a rotated Secret is used without a restart."""

    @model_validator(mode="after")
    def _one_webhook(self) -> "AlertingConfig":
        if self.webhook_url and self.webhook_url_file:
            raise ValueError("give webhookURL or webhookURLFile, not both")
        return self

    timeout_seconds: float = Field(default=5.0, gt=0, le=60, alias="timeoutSeconds")


class ShutdownWindow(_Model):
    """A recurring window in which idle nodes may be shut down (e.g. nights, weekends)."""

    cron: str = Field(min_length=1, max_length=128)
    duration_seconds: int = Field(gt=0, le=604800, alias="durationSeconds")
    timezone: str = "UTC"

    _cron = field_validator("cron")(_cron)
    _timezone = field_validator("timezone")(_timezone)


class ShutdownProvider(StrEnum):
    KUBERNETES = "kubernetes"
    """Delete the Node object: ends the billing only where deleting a Node removes its
    machine (Karpenter's termination finalizer, KWOK), see ``nodeDeletionEndsBilling``."""
    KARPENTER = "karpenter"
    CLUSTER_API = "cluster-api"
    DRAIN = "drain"
    """Cordon and drain only; the cluster's node autoscaler removes the empty node."""


class IdleShutdownDefaults(_Model):
    """Idle GPU node shutdown, for the whole cluster or one pool."""

    enabled: bool = False
    idle_after_seconds: int = Field(default=600, ge=1, alias="idleAfterSeconds")
    gpu_utilization_below_percent: float | None = Field(
        default=None, ge=0, le=100, alias="gpuUtilizationBelowPercent"
    )
    gpu_utilization_node_label: str = Field(
        default="Hostname",
        min_length=1,
        pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",  # a Prometheus label name: it goes into PromQL
        alias="gpuUtilizationNodeLabel",
    )
    """Label of DCGM_FI_DEV_GPU_UTIL that holds the node name (dcgm-exporter: Hostname)."""
    max_nodes_per_interval: int = Field(default=1, ge=1, alias="maxNodesPerInterval")
    max_percent: float | None = Field(default=None, gt=0, le=100, alias="maxPercent")
    schedule: list[ShutdownWindow] = Field(default_factory=list)
    """Empty: any time. Otherwise only inside one of these windows."""
    provider: ShutdownProvider = ShutdownProvider.KUBERNETES
    interval_seconds: float = Field(default=30.0, gt=0, alias="intervalSeconds")
    drain_timeout_seconds: float = Field(default=600.0, gt=0, alias="drainTimeoutSeconds")
    dry_run: bool = Field(default=True, alias="dryRun")
    deletion_delay_after_taint_seconds: float = Field(
        default=5.0, ge=0, le=600, alias="deletionDelayAfterTaintSeconds"
    )
    """How old the taint must be before the provider removes the node: a pod the scheduler
    had already chosen this node for binds meanwhile, and keeps it."""
    node_deletion_ends_billing: bool = Field(default=False, alias="nodeDeletionEndsBilling")
    """For the ``kubernetes`` provider: deleting a Node object removes its machine on this
    pool (a controller watches Node deletions). Without it, only nodes known to be
    removed that way (Karpenter's termination finalizer, KWOK) are deleted."""


class NodePool(_Model):
    """A group of identical GPU nodes, found by its labels, with its price."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    selector: dict[str, str] = Field(min_length=1)
    instance_type: str = Field(alias="instanceType")
    capacity_type: CapacityType = Field(alias="capacityType")
    gpu_type: str | None = Field(default=None, alias="gpuType")
    gpus_per_node: int | None = Field(default=None, gt=0, alias="gpusPerNode")
    hourly_price_usd: float | None = Field(default=None, ge=0, alias="hourlyPriceUSD")
    gpu_power_watts: float | None = Field(default=None, ge=0, le=10000, alias="gpuPowerWatts")
    """Power one GPU of the pool draws, W (its TDP, an upper bound, unless measured):
    energy is GPU-hours x this. Unset: the pool's energy is unknown, not zero."""
    grid_intensity: float | None = Field(
        default=None, ge=0, le=5000, alias="gridIntensityGramsPerKWh"
    )
    """Carbon intensity of the pool's region's grid, gCO2e per kWh (location-based)."""
    interruption_rate_per_month: float | None = Field(
        default=None, ge=0, le=1, alias="interruptionRatePerMonth"
    )
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    idle_shutdown: IdleShutdownDefaults | None = Field(default=None, alias="idleShutdown")
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")
    """Namespaces whose AIWorkloads may use this pool (as a Kueue ClusterQueue's);
    unset: every namespace."""

    @property
    def gpu_hourly_price_usd(self) -> float:
        """Price of one GPU-hour on this pool (instance price / GPUs per node)."""
        assert self.hourly_price_usd is not None and self.gpus_per_node is not None
        return self.hourly_price_usd / self.gpus_per_node


class JobTemplatePolicy(StrEnum):
    BASELINE = "Baseline"
    UNRESTRICTED = "Unrestricted"


class TenancyConfig(_Model):
    """What the operator does on a tenant's behalf (docs/security.md)."""

    job_templates: JobTemplatePolicy = Field(
        default=JobTemplatePolicy.BASELINE, alias="jobTemplates"
    )
    """Baseline: a jobTemplate's pods get nothing beyond Pod Security's baseline profile,
    the default ServiceAccount and an allowed priority class. Unrestricted: anything."""
    allowed_priority_classes: list[str] = Field(
        default_factory=list, alias="allowedPriorityClasses"
    )


class GpuResourceConfig(_Model):
    """An extended resource that is a GPU (a glob), e.g. a renamed time-sliced resource."""

    pattern: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9*?.\-_/\[\]]+$")
    gpus_per_unit: float | None = Field(default=None, ge=0, le=64, alias="gpusPerUnit")
    """GPUs one unit is worth; unset: derived from the name (MIG profile, ``.shared``)."""


class GroupBudget(_Model):
    """Spending limits of a team's or a namespace's AIWorkloads together, USD per period."""

    monthly_usd: float | None = Field(default=None, ge=0, alias="monthlyUSD")
    daily_usd: float | None = Field(default=None, ge=0, alias="dailyUSD")
    alert_thresholds: list[float] = Field(
        default=[0.5, 0.8, 1.0], min_length=1, max_length=10, alias="alertThresholds"
    )

    @model_validator(mode="after")
    def _valid(self) -> "GroupBudget":
        if self.monthly_usd is None and self.daily_usd is None:
            raise ValueError("set monthlyUSD or dailyUSD (or both)")
        t = self.alert_thresholds
        if any(not 0 < x <= 1.5 for x in t) or any(b <= a for a, b in pairwise(t)):
            raise ValueError("alertThresholds: fractions in (0, 1.5], ascending")
        return self


class GroupBudgets(_Model):
    """Budgets over the spend of all AIWorkloads of a team or of a namespace: set by the
    platform admin (the operator config), not by the tenants they limit. They alert
    (Alertmanager, webhook, metrics); enforcement stays with each workload's budget."""

    teams: dict[str, GroupBudget] = Field(default_factory=dict, max_length=1000)
    """By ``costAllocation.team``."""
    namespaces: dict[str, GroupBudget] = Field(default_factory=dict, max_length=1000)
    """By namespace."""


class OperatorConfig(_Model):
    """Cluster-wide settings of the operator."""

    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    node_pools: list[NodePool] = Field(default_factory=list, alias="nodePools")
    idle_shutdown: IdleShutdownDefaults = Field(
        default_factory=IdleShutdownDefaults, alias="idleShutdown"
    )
    pricing_file: str | None = Field(default=None, alias="pricingFile")
    gpu_resources: list[GpuResourceConfig] = Field(default_factory=list, alias="gpuResources")
    """Extra GPU resources, matched before the built-in ones (see ``core.gpus``)."""
    tenancy: TenancyConfig = Field(default_factory=TenancyConfig)
    budgets: GroupBudgets = Field(default_factory=GroupBudgets)
    anomalies: AnomalyConfig = Field(default_factory=AnomalyConfig)
    """Spend anomalies of workloads, teams and models (Events, alerts, the report)."""

    @model_validator(mode="after")
    def _unique_pools(self) -> "OperatorConfig":
        names = [p.name for p in self.node_pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"node pool names must be unique; repeated: {', '.join(dupes)}")
        return self

    def pool(self, name: str) -> NodePool | None:
        return next((p for p in self.node_pools if p.name == name), None)

    def idle_shutdown_for(self, pool: NodePool) -> IdleShutdownDefaults:
        """The pool's own settings when it has them, else the cluster-wide defaults."""
        return pool.idle_shutdown or self.idle_shutdown


def _fill_prices(config: OperatorConfig, table: PricingTable) -> OperatorConfig:
    """Complete each pool's price and GPU count from the table, or say what is missing."""
    for i, pool in enumerate(config.node_pools):
        known = table.find(pool.instance_type)
        if pool.gpus_per_node is None:
            if known is None:
                raise ConfigError(
                    f"nodePools[{i}] ({pool.name}): gpusPerNode is required because instance "
                    f"type {pool.instance_type!r} is not in the pricing table"
                )
            pool.gpus_per_node = known.gpus
        if pool.gpu_type is None and known is not None:
            pool.gpu_type = known.gpu_type
        if pool.hourly_price_usd is None:
            price = None
            if known is not None:
                price = known.spot if pool.capacity_type == CapacityType.SPOT else known.on_demand
            if price is None:
                raise ConfigError(
                    f"nodePools[{i}] ({pool.name}): hourlyPriceUSD is required because the "
                    f"pricing table has no {pool.capacity_type} price for {pool.instance_type!r}"
                )
            pool.hourly_price_usd = price
    return config


def _format(error: ValidationError) -> str:
    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)


def parse_config(data: Any, pricing: PricingTable | None = None) -> OperatorConfig:
    """Validate a config document (already parsed YAML) and complete its prices."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("operator config must be a YAML mapping at the top level")
    try:
        config = OperatorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid operator config: {_format(exc)}") from exc
    if pricing is None and config.pricing_file:
        pricing = _read_pricing(config.pricing_file)
    return _fill_prices(config, pricing or default_pricing())


def _read_pricing(path: str) -> PricingTable:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return PricingTable.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"pricingFile {path!r}: invalid pricing table: {_format(exc)}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"pricingFile {path!r}: not valid YAML: {exc}") from exc
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, or not UTF-8
        raise ConfigError(f"pricingFile: cannot read it: {exc}") from exc


def load_config(path: Path | None) -> OperatorConfig:
    """Read the config file, or the packaged default when no path is given."""
    if path is None:
        text = resources.files("gpufinops.config").joinpath("default.yaml").read_text()
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8 text
            raise ConfigError(f"cannot read operator config {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"operator config {path or 'default'} is not valid YAML: {exc}") from exc
    return parse_config(data)
