"""``gpufinops report``: spend by team, project, model and workload, from the cluster.

The numbers are the ones the operator persists in each AIWorkload's
``status.cost`` and ``status.budget``, so the report needs neither
Prometheus nor the operator running. Aggregation is a pure function of the
objects and ``now``: totals of a day or month that has ended read as zero
(the core's ``as_of``), exactly as the budget logic sees them.

Rightsizing recommendations (``status.recommendations``) are listed with
their estimated monthly saving; a workload's savings are alternatives, so the
report shows the largest as the workload's potential, never their sum.

Spend anomalies that started in the past week are listed with their explanation,
judged from each workload's ``status.spendHistory`` by the operator's own rules
(``core.cost.anomaly``, the thresholds of ``--config``).

``--format focus`` writes a FinOps FOCUS 1.2 dataset, so the spend can be joined
with cloud bills in the same tool: one row per workload, day and capacity type,
for the complete days of one month (``--month``, default the current one), so two
exports never overlap and a closed month's export is final. Columns FOCUS does
not define are prefixed ``x_``; what does not apply is NULL (an empty cell).
"""

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from gpufinops.api.status import CostStatus, ObservedUsage, Recommendation
from gpufinops.config.model import AnomalyConfig, ConfigError, FocusConfig, load_config
from gpufinops.core.cost.accounting import (
    UNSET,
    CostTotals,
    DaySpend,
    as_of,
    month_footprint,
    project_month,
)
from gpufinops.core.cost.anomaly import (
    Member,
    SpendAnomaly,
    detect_hours,
    epoch_hour,
    hour_label,
    read_history,
    with_hours,
)
from gpufinops.core.cost.periods import month_bounds, next_day_start, zone
from gpufinops.core.tenancy import NamespaceView, booked_spec

DIMENSIONS = ("team", "project", "model", "environment", "cost_center", "workload")


@dataclass(frozen=True)
class WorkloadSpend:
    """One AIWorkload's spend and budget position as of the report's ``now``."""

    namespace: str
    name: str
    type: str
    team: str
    project: str
    model: str
    environment: str
    cost_center: str
    hourly_usd: float
    today_usd: float
    month_to_date_usd: float
    projected_month_usd: float
    budget_state: str
    budget_used_percent: int | None
    enforcement: str
    last_accounted_time: str | None
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    """kind, message and estimated_monthly_saving_usd of each, largest saving first."""
    potential_monthly_saving_usd: float = 0.0
    """The largest single saving (recommendations are alternatives, not additive)."""
    month_kwh: float = 0.0
    """GPU energy of the month so far (pools with a power figure)."""
    month_kg_co2e: float = 0.0
    """Its emissions (pools with a grid intensity)."""
    observed_hours: float | None = None
    """Hours of usage the recommendations rest on (``status.observedUsage``)."""
    observed_since: str | None = None
    observed_until: str | None = None
    """The evidence window: first and last instant observed."""
    days: tuple[DaySpend, ...] = ()
    """Spend per day and capacity type (``status.cost.daily``): the FOCUS rows."""

    @property
    def workload(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Group:
    """Spend summed over the workloads sharing one value of a dimension."""

    dimension: str
    name: str
    workloads: int
    hourly_usd: float
    today_usd: float
    month_to_date_usd: float
    projected_month_usd: float
    month_kwh: float = 0.0
    month_kg_co2e: float = 0.0


def _totals(raw: Any) -> CostTotals:
    try:
        return CostTotals.from_status(CostStatus.model_validate(raw or {}))
    except ValidationError:
        return CostTotals()


def _recommendations(raw: Any) -> list[dict[str, Any]]:
    """Valid entries of ``status.recommendations``; malformed ones are left out, not fatal."""
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            r = Recommendation.model_validate(item)
        except ValidationError:
            continue
        out.append(
            {"kind": r.kind, "message": r.message,
             "estimated_monthly_saving_usd": r.estimated_monthly_saving_usd}
        )  # fmt: skip
    return sorted(out, key=lambda r: -float(r["estimated_monthly_saving_usd"]))


def _evidence(raw: Any) -> tuple[float | None, str | None, str | None]:
    """(hours observed, since, until) of ``status.observedUsage``; nothing when malformed."""
    try:
        seen = ObservedUsage.model_validate(raw) if raw else None
    except ValidationError:
        seen = None
    if seen is None:
        return None, None, None
    since, until = seen.observed_since, seen.observed_until
    return (
        round(sum(seen.observed_hours), 2),
        _z(since) if since is not None else None,
        _z(until) if until is not None else None,
    )


def workload_spend(obj: Mapping[str, Any], now: datetime, tz: ZoneInfo) -> WorkloadSpend:
    """One object as reported: unset costAllocation keys are ``__unset__``."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    alloc = spec.get("costAllocation") or {}
    budget = status.get("budget") or {}
    totals = _totals(status.get("cost"))
    recommendations = _recommendations(status.get("recommendations"))
    hours, since, until = _evidence(status.get("observedUsage"))
    month_kwh, month_kg = month_footprint(totals, now, tz)
    seen = as_of(totals, now, tz)
    last = totals.last_accounted_time
    return WorkloadSpend(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        type=str(spec.get("type") or UNSET),
        team=str(alloc.get("team") or UNSET),
        project=str(alloc.get("project") or UNSET),
        model=str(alloc.get("model") or UNSET),
        environment=str(alloc.get("environment") or UNSET),
        cost_center=str(alloc.get("costCenter") or UNSET),
        hourly_usd=seen.hourly_usd,
        today_usd=seen.today_usd,
        month_to_date_usd=seen.month_to_date_usd,
        projected_month_usd=project_month(totals, now, tz) if last is not None else 0.0,
        budget_state=str(budget.get("state") or ("NoBudget" if not spec.get("budget") else "")),
        budget_used_percent=budget.get("usedPercent"),
        enforcement=str(budget.get("enforcement") or "None"),
        last_accounted_time=last.isoformat() if last is not None else None,
        recommendations=recommendations,
        potential_monthly_saving_usd=max(
            (float(r["estimated_monthly_saving_usd"]) for r in recommendations), default=0.0
        ),
        days=totals.days,
        month_kwh=round(month_kwh, 6),
        month_kg_co2e=round(month_kg, 6),
        observed_hours=hours,
        observed_since=since,
        observed_until=until,
    )


def group_by(rows: Iterable[WorkloadSpend], dimension: str) -> list[Group]:
    """Sums per value of ``dimension``, most expensive month first."""
    acc: dict[str, list[WorkloadSpend]] = {}
    for r in rows:
        key = r.workload if dimension == "workload" else str(getattr(r, dimension))
        acc.setdefault(key, []).append(r)
    groups = [
        Group(
            dimension,
            name,
            len(members),
            sum(m.hourly_usd for m in members),
            sum(m.today_usd for m in members),
            sum(m.month_to_date_usd for m in members),
            sum(m.projected_month_usd for m in members),
            round(sum(m.month_kwh for m in members), 6),
            round(sum(m.month_kg_co2e for m in members), 6),
        )
        for name, members in acc.items()
    ]
    return sorted(groups, key=lambda g: (-g.month_to_date_usd, g.name))


@dataclass(frozen=True)
class Report:
    now: datetime
    tz: str
    workloads: list[WorkloadSpend]
    groups: dict[str, list[Group]]
    anomalies: list[SpendAnomaly] = field(default_factory=list)
    """Spend anomalies that started in the past week, oldest first."""


ANOMALY_WINDOW_HOURS = 7 * 24


def _member(obj: Mapping[str, Any], now: datetime) -> Member | None:
    """The workload as spend anomalies judge it; None without a readable history."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    hours, _ = read_history((obj.get("status") or {}).get("spendHistory"), now)
    if not hours:
        return None
    a = spec.get("costAllocation") or {}
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    return Member(name, str(a.get("team") or UNSET), a.get("model") or None, with_hours(hours))


def build_report(
    objects: Iterable[Mapping[str, Any]],
    now: datetime,
    tz_name: str,
    anomalies: AnomalyConfig | None = None,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> Report:
    """The whole report from AIWorkload objects as the API returns them (pure).

    With ``namespace_labels``, spend is grouped as the operator books it: to the team
    its namespace's ``gpufinops.dev/team`` label names, whatever the spec claims."""
    tz = zone(tz_name)
    objects = [_booked(o, namespace_labels) for o in objects]
    rows = sorted(
        (workload_spend(o, now, tz) for o in objects),
        key=lambda r: (-r.month_to_date_usd, r.workload),
    )
    members = [m for m in (_member(o, now) for o in objects) if m is not None]
    latest = epoch_hour(now) - 1  # the last hour that has ended
    hours = range(latest - ANOMALY_WINDOW_HOURS + 1, latest + 1)
    found = detect_hours(members, hours, anomalies or AnomalyConfig())
    return Report(now, tz_name, rows, {d: group_by(rows, d) for d in DIMENSIONS}, found)


def _booked(
    obj: Mapping[str, Any], labels: Mapping[str, Mapping[str, str]] | None
) -> Mapping[str, Any]:
    if labels is None or not isinstance(obj.get("spec"), Mapping):
        return obj
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    view = NamespaceView(namespace, dict(labels.get(namespace) or {}))
    return {**obj, "spec": booked_spec(obj["spec"], view)}


def anomaly_json(a: SpendAnomaly) -> dict[str, Any]:
    return {
        "hour": hour_label(a.hour),
        "scope": a.scope,
        "group": a.group,
        "usd": round(a.usd, 2),
        "expected_usd": round(a.expected_usd, 2),
        "excess_usd": round(a.excess, 2),
        "severity": a.severity,
        "drivers": [
            {
                "workload": d.member,
                "cause": d.cause.value,
                "excess_usd": round(d.excess, 2),
                "replicas": round(d.replicas, 2),
                "expected_replicas": _rounded(d.expected_replicas),
                "desired_replicas": _rounded(d.desired),
                "tokens": round(d.tokens),
                "expected_tokens": _rounded(d.expected_tokens, 0),
                "pools": {p: round(x, 2) for p, x in d.pools},
            }
            for d in a.drivers
        ],
        "message": a.message,
    }


def _rounded(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def _money(value: float) -> str:
    return f"${value:,.2f}"


def render_table(report: Report) -> str:
    """Spend per value of each dimension, then budgets, then recommendations, for people."""
    # Imported here: only this format draws tables, and every command builds this parser.
    from gpufinops.sim.terminal import Column, text_table

    money = [Column(h, numeric=True)
             for h in ("today", "month", "projected", "$/h", "kWh", "kgCO2e")]  # fmt: skip
    out = [f"GPU spend as of {report.now.isoformat(timespec='seconds')} ({report.tz})", ""]
    for dimension, groups in report.groups.items():
        spend = [
            [
                g.name,
                _money(g.today_usd),
                _money(g.month_to_date_usd),
                _money(g.projected_month_usd),
                f"{g.hourly_usd:,.2f}",
                f"{g.month_kwh:,.1f}",
                f"{g.month_kg_co2e:,.1f}",
            ]
            for g in groups
        ]
        out += [text_table([Column(f"by {dimension}"), *money], spend), ""]
    budgets = [
        [r.workload, r.budget_state, _percent(r.budget_used_percent), r.enforcement]
        for r in report.workloads
    ]
    columns = [Column("budgets"), Column("state"), Column("used", numeric=True)]
    out.append(text_table([*columns, Column("enforcement")], budgets))
    advised = [
        [
            r.workload,
            str(rec["kind"]),
            _money(float(rec["estimated_monthly_saving_usd"])),
            str(rec["message"]),
            _window(r),
        ]
        for r in report.workloads
        for rec in r.recommendations
    ]
    if advised:
        columns = [Column("recommendations"), Column("kind"), Column("saves/month", numeric=True)]
        out += ["", text_table([*columns, Column("why"), Column("evidence")], advised)]
    if report.anomalies:
        found = [
            [hour_label(a.hour), f"{a.scope} {a.group}", _money(a.usd), _money(a.expected_usd),
             "; ".join(d.describe() for d in a.drivers[:3])]
            for a in report.anomalies
        ]  # fmt: skip
        columns = [
            Column("spend anomalies (past 7 days)"),
            Column("of"),
            Column("spent in the hour", numeric=True),
            Column("usual", numeric=True),
        ]
        out += ["", text_table([*columns, Column("why")], found)]
    return "\n".join(out) + "\n"


def _window(r: WorkloadSpend) -> str:
    """``36.5 h, 2026-11-01 to 2026-11-03``: how much the recommendation rests on."""
    if r.observed_hours is None:
        return "-"
    since, until = (r.observed_since or "?")[:10], (r.observed_until or "?")[:10]
    return f"{r.observed_hours:g} h, {since} to {until}"


def _percent(value: int | None) -> str:
    return "-" if value is None else f"{value}%"


def render_json(report: Report) -> str:
    doc = {
        "time": report.now.isoformat(),
        "timezone": report.tz,
        "workloads": [_without_days(asdict(r)) for r in report.workloads],
        **{f"by_{d}": [asdict(g) for g in gs] for d, gs in report.groups.items()},
        "total": {
            "today_usd": sum(r.today_usd for r in report.workloads),
            "month_to_date_usd": sum(r.month_to_date_usd for r in report.workloads),
            "projected_month_usd": sum(r.projected_month_usd for r in report.workloads),
            "month_kwh": round(sum(r.month_kwh for r in report.workloads), 6),
            "month_kg_co2e": round(sum(r.month_kg_co2e for r in report.workloads), 6),
            "potential_monthly_saving_usd": sum(
                r.potential_monthly_saving_usd for r in report.workloads
            ),
        },
        "anomalies": [anomaly_json(a) for a in report.anomalies],
    }
    return json.dumps(doc, indent=2) + "\n"


def _without_days(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "days"}


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _cell(value: Any) -> Any:
    """A CSV cell: recommendations as ``Kind ($saving): message`` joined by ``; ``."""
    if isinstance(value, list):
        return "; ".join(
            f"{r['kind']} ({_money(float(r['estimated_monthly_saving_usd']))}): {r['message']}"
            for r in value
        )
    return value


def render_csv(report: Report) -> str:
    fields = [f for f in WorkloadSpend.__dataclass_fields__ if f != "days"]
    return _csv(fields, ([_cell(getattr(r, f)) for f in fields] for r in report.workloads))


FOCUS_VERSION = "1.2"
FOCUS_COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName",
    "BillingAccountType", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart",
    "CapacityReservationId", "CapacityReservationStatus", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart",
    "CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName",
    "CommitmentDiscountQuantity", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "CommitmentDiscountUnit", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "ContractedUnitPrice", "EffectiveCost", "InvoiceId", "InvoiceIssuerName", "ListCost",
    "ListUnitPrice", "PricingCategory", "PricingCurrency", "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice", "PricingQuantity",
    "PricingUnit", "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId",
    "ResourceName", "ResourceType", "ServiceCategory", "ServiceName", "ServiceSubcategory",
    "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId", "SubAccountId", "SubAccountName",
    "SubAccountType", "Tags",
    "x_CapacityType", "x_CarbonKgCO2e", "x_CostCenter", "x_EnergyKWh", "x_Environment",
    "x_Model", "x_Project", "x_Team", "x_WorkloadType",
)  # fmt: skip
"""The FOCUS 1.2 columns in the specification's order, then this dataset's own."""

GPU_HOURS = "GPU-Hours"


def _z(t: datetime) -> str:
    """A FOCUS date-time: UTC, whole seconds, ``Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decimal(value: float) -> str:
    """A FOCUS decimal: always with a fraction, so no reader takes a column of whole
    numbers for integers."""
    text = f"{value:.10f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _set(value: str) -> str | None:
    return None if value == UNSET else value


def focus_month(report: Report, month: str | None = None) -> tuple[datetime, datetime]:
    """The billing period exported: ``month`` (``YYYY-MM``) or the report's own."""
    tz = zone(report.tz)
    if month is None:
        return month_bounds(report.now, tz)
    try:
        first = datetime.strptime(month, "%Y-%m").replace(day=15, tzinfo=tz)
    except ValueError:
        raise ValueError(f"--month must be YYYY-MM, got {month!r}") from None
    return month_bounds(first, tz)


def focus_rows(
    report: Report,
    month: str | None = None,
    currency: str = "USD",
    names: FocusConfig | None = None,
    include_today: bool = False,
) -> list[dict[str, Any]]:
    """One row per workload, day and capacity type of the billing period ``month``.

    Only days that have ended by the report's ``now`` are charged: a day is exported
    once it is complete, so two exports hold the same rows for the same days and
    never overlap. ``include_today`` adds the day so far, its charge period ending
    at the workload's last accounted instant: a row a later export replaces.

    Spend is estimated from the list prices of the operator config, without
    discounts, so the billed, effective, list and contracted costs are the same
    figure, and the unit price is the day's cost over its GPU-hours. Spot is
    FOCUS's ``Dynamic`` pricing category.
    """
    names = names or FocusConfig()
    tz = zone(report.tz)
    period_start, period_end = focus_month(report, month)
    rows = []
    for r in sorted(report.workloads, key=lambda w: w.workload):
        tags = {k: v for k, v in (("team", r.team), ("project", r.project), ("model", r.model),
                                  ("environment", r.environment), ("costCenter", r.cost_center))
                if v != UNSET}  # fmt: skip
        for d in r.days:
            day_start = datetime.strptime(d.day, "%Y-%m-%d").replace(tzinfo=tz)
            start = day_start.astimezone(UTC)
            end = next_day_start(start, tz)
            if not period_start <= start < period_end:
                continue
            if end > report.now:
                last = r.last_accounted_time
                if not include_today or last is None:
                    continue
                end = min(end, datetime.fromisoformat(last).replace(microsecond=0))
                if end <= start:
                    continue
            if d.usd <= 0 and d.gpu_hours <= 0:
                continue
            cost = _decimal(d.usd)
            # The day's average price per GPU-hour (the pools of one capacity type may
            # differ), to the micro-dollar.
            unit = _decimal(round(d.usd / d.gpu_hours, 6)) if d.gpu_hours > 0 else None
            spot = d.capacity_type == "spot"
            row: dict[str, Any] = dict.fromkeys(FOCUS_COLUMNS)
            row.update({
                "BilledCost": cost, "EffectiveCost": cost, "ListCost": cost,
                "ContractedCost": cost, "PricingCurrencyEffectiveCost": cost,
                "BillingAccountId": names.billing_account_id,
                "BillingAccountName": names.billing_account_name,
                "BillingAccountType": "Cluster",
                "BillingCurrency": currency, "PricingCurrency": currency,
                "BillingPeriodStart": _z(period_start), "BillingPeriodEnd": _z(period_end),
                "ChargePeriodStart": _z(start), "ChargePeriodEnd": _z(end),
                "ChargeCategory": "Usage", "ChargeFrequency": "Usage-Based",
                "ChargeDescription": f"{d.capacity_type} GPU time of {r.type} workload "
                                     f"{r.workload}",
                "ConsumedQuantity": _decimal(d.gpu_hours), "ConsumedUnit": GPU_HOURS,
                "PricingQuantity": _decimal(d.gpu_hours), "PricingUnit": GPU_HOURS,
                "ListUnitPrice": unit, "ContractedUnitPrice": unit,
                "PricingCurrencyListUnitPrice": unit, "PricingCurrencyContractedUnitPrice": unit,
                "PricingCategory": "Dynamic" if spot else "Standard",
                "InvoiceIssuerName": names.invoice_issuer_name,
                "ProviderName": names.provider_name, "PublisherName": names.publisher_name,
                "ResourceId": f"aiworkloads.gpufinops.dev/{r.workload}", "ResourceName": r.name,
                "ResourceType": "AIWorkload",
                "ServiceCategory": "AI and Machine Learning", "ServiceSubcategory": "AI Platforms",
                "ServiceName": "GPU time (gpufinops)",
                "SkuId": f"gpu-{d.capacity_type}", "SkuPriceId": f"gpu-{d.capacity_type}",
                "SkuMeter": "GPU time",
                "SubAccountId": r.namespace, "SubAccountName": r.namespace,
                "SubAccountType": "Namespace",
                "Tags": json.dumps(tags, sort_keys=True),
                "x_CapacityType": d.capacity_type, "x_CostCenter": _set(r.cost_center),
                "x_EnergyKWh": _decimal(d.kwh) if d.kwh else None,
                "x_CarbonKgCO2e": _decimal(d.kg_co2e) if d.kg_co2e else None,
                "x_Environment": _set(r.environment), "x_Model": _set(r.model),
                "x_Project": _set(r.project), "x_Team": _set(r.team),
                "x_WorkloadType": _set(r.type),
            })  # fmt: skip
            rows.append(row)
    return sorted(rows, key=lambda row: (row["ChargePeriodStart"], row["ResourceId"],
                                         row["x_CapacityType"]))  # fmt: skip


def render_focus(
    report: Report,
    month: str | None = None,
    currency: str = "USD",
    names: FocusConfig | None = None,
    include_today: bool = False,
) -> str:
    """The rows as CSV; NULL is an empty cell."""
    rows = focus_rows(report, month, currency, names, include_today)
    return _csv(FOCUS_COLUMNS, ([row[c] for c in FOCUS_COLUMNS] for row in rows))


def _read_workloads(namespace: str | None, context: str | None) -> list[dict[str, Any]]:
    from kubernetes import client

    from gpufinops.adapters.kubeclient import load_kube_config
    from gpufinops.api.resource import GROUP, PLURAL, VERSION

    custom = client.CustomObjectsApi(load_kube_config(context))
    got: dict[str, Any]
    if namespace:
        got = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)  # type: ignore[assignment]
    else:
        got = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)  # type: ignore[assignment]
    return list(got.get("items") or [])


def _namespace_labels(context: str | None) -> dict[str, dict[str, str]] | None:
    """Every namespace's labels, for the team spend is booked to; None (the spec's team
    is used, and said) when namespaces cannot be listed."""
    from kubernetes import client

    from gpufinops.adapters.kubeclient import load_kube_config

    try:
        listed = client.CoreV1Api(load_kube_config(context)).list_namespace()
    except Exception as exc:
        print(
            f"note: namespaces not readable ({type(exc).__name__}): teams are as the "
            "specs name them, not as namespace labels book them",
            file=sys.stderr,
        )
        return None
    return {
        str(n.metadata.name): dict(n.metadata.labels or {})
        for n in listed.items
        if n.metadata is not None
    }


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        objects = _read_workloads(args.namespace, args.context)
    except Exception as exc:  # no cluster, no CRD, no permission: say which
        print(f"error: cannot list AIWorkloads: {exc}", file=sys.stderr)
        return 2
    labels = _namespace_labels(args.context)
    report = build_report(
        objects, datetime.now(UTC), config.cost.timezone, config.anomalies, labels
    )
    renderers = {"table": render_table, "json": render_json, "csv": render_csv}
    if args.format == "focus":
        try:
            text = render_focus(
                report, args.month, config.cost.currency, config.cost.focus, args.include_today
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        sys.stdout.write(text)
    else:
        sys.stdout.write(renderers[args.format](report))
    return 0


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    """Add ``report`` to the top-level parser."""
    p = sub.add_parser(
        "report",
        help="GPU spend by team, project, model and workload, from the cluster",
        description="Spend and budget position of every AIWorkload, read from their status "
        "in the current kube context.",
    )
    p.add_argument("-n", "--namespace", default=None, help="only this namespace (default: all)")
    p.add_argument("--context", default=None, help="kube context (default: the current one)")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="operator config YAML, for the time zone of days and months (default: packaged)",
    )
    p.add_argument("--format", choices=["table", "json", "csv", "focus"], default="table")
    p.add_argument(
        "--month",
        default=None,
        metavar="YYYY-MM",
        help="with --format focus: the billing period exported (default: this month, its "
        "days that have ended); a past month is final",
    )
    p.add_argument(
        "--include-today",
        action="store_true",
        help="with --format focus: add today so far, its charge period ending at the last "
        "accounted instant (a later export's row for today replaces it)",
    )
    p.set_defaults(func=_cmd_report)
