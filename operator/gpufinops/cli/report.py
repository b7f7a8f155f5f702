"""``gpufinops report``: spend by team, project, model and workload, from the cluster.

The numbers are the ones the operator persists in each AIWorkload's
``status.cost`` and ``status.budget``, so the report needs neither
Prometheus nor the operator running. Aggregation is a pure function of the
objects and ``now``: totals of a day or month that has ended read as zero
(the core's ``as_of``), exactly as the budget logic sees them.

Rightsizing recommendations (``status.recommendations``) are listed with
their estimated monthly saving; a workload's savings are alternatives, so the
report shows the largest as the workload's potential, never their sum.

``--format focus`` writes FinOps FOCUS-shaped rows (one per workload, the
month to date as the charge period) so the spend can be joined with cloud
bills in the same tool; columns FOCUS does not define are prefixed ``x_``.
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

from gpufinops.api.status import CostStatus, Recommendation
from gpufinops.config.model import ConfigError, load_config
from gpufinops.core.cost.accounting import UNSET, CostTotals, as_of, project_month
from gpufinops.core.cost.periods import month_bounds, zone

DIMENSIONS = ("team", "project", "model", "workload")


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


def workload_spend(obj: Mapping[str, Any], now: datetime, tz: ZoneInfo) -> WorkloadSpend:
    """One object as reported: unset costAllocation keys are ``__unset__``."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    alloc = spec.get("costAllocation") or {}
    budget = status.get("budget") or {}
    totals = _totals(status.get("cost"))
    recommendations = _recommendations(status.get("recommendations"))
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


def build_report(objects: Iterable[Mapping[str, Any]], now: datetime, tz_name: str) -> Report:
    """The whole report from AIWorkload objects as the API returns them (pure)."""
    tz = zone(tz_name)
    rows = sorted(
        (workload_spend(o, now, tz) for o in objects),
        key=lambda r: (-r.month_to_date_usd, r.workload),
    )
    return Report(now, tz_name, rows, {d: group_by(rows, d) for d in DIMENSIONS})


def _money(value: float) -> str:
    return f"${value:,.2f}"


def render_table(report: Report) -> str:
    """Spend per value of each dimension, then budgets, then recommendations, for people."""
    # Imported here: only this format draws tables, and every command builds this parser.
    from gpufinops.sim.terminal import Column, text_table

    money = [Column(h, numeric=True) for h in ("today", "month", "projected", "$/h")]
    out = [f"GPU spend as of {report.now.isoformat(timespec='seconds')} ({report.tz})", ""]
    for dimension, groups in report.groups.items():
        spend = [
            [
                g.name,
                _money(g.today_usd),
                _money(g.month_to_date_usd),
                _money(g.projected_month_usd),
                f"{g.hourly_usd:,.2f}",
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
        ]
        for r in report.workloads
        for rec in r.recommendations
    ]
    if advised:
        columns = [Column("recommendations"), Column("kind"), Column("saves/month", numeric=True)]
        out += ["", text_table([*columns, Column("why")], advised)]
    return "\n".join(out) + "\n"


def _percent(value: int | None) -> str:
    return "-" if value is None else f"{value}%"


def render_json(report: Report) -> str:
    doc = {
        "time": report.now.isoformat(),
        "timezone": report.tz,
        "workloads": [asdict(r) for r in report.workloads],
        **{f"by_{d}": [asdict(g) for g in gs] for d, gs in report.groups.items()},
        "total": {
            "today_usd": sum(r.today_usd for r in report.workloads),
            "month_to_date_usd": sum(r.month_to_date_usd for r in report.workloads),
            "projected_month_usd": sum(r.projected_month_usd for r in report.workloads),
            "potential_monthly_saving_usd": sum(
                r.potential_monthly_saving_usd for r in report.workloads
            ),
        },
    }
    return json.dumps(doc, indent=2) + "\n"


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
    fields = [f for f in WorkloadSpend.__dataclass_fields__]
    return _csv(fields, ([_cell(getattr(r, f)) for f in fields] for r in report.workloads))


FOCUS_COLUMNS = (
    "BilledCost", "EffectiveCost", "ListCost", "BillingCurrency", "ChargeCategory",
    "ChargeDescription", "ChargePeriodStart", "ChargePeriodEnd", "ResourceId",
    "ResourceName", "ResourceType", "ServiceCategory", "ServiceName", "Tags",
    "x_Team", "x_Project", "x_Model", "x_Environment", "x_CostCenter", "x_WorkloadType",
    "x_TodayCost", "x_ProjectedMonthCost", "x_HourlyCost", "x_BudgetState", "x_Enforcement",
)  # fmt: skip


def focus_rows(report: Report, currency: str = "USD") -> list[dict[str, Any]]:
    """FOCUS-shaped rows: the month to date of each workload as one usage charge.

    Spend is estimated from list prices in the operator config, without
    discounts, so BilledCost, EffectiveCost and ListCost are the same figure.
    """
    start, _ = month_bounds(report.now, zone(report.tz))
    rows = []
    for r in report.workloads:
        tags = {k: v for k, v in (("team", r.team), ("project", r.project), ("model", r.model),
                                  ("environment", r.environment)) if v != UNSET}  # fmt: skip
        cost = round(r.month_to_date_usd, 6)
        rows.append({
            "BilledCost": cost, "EffectiveCost": cost, "ListCost": cost,
            "BillingCurrency": currency, "ChargeCategory": "Usage",
            "ChargeDescription": f"GPU time of {r.type} workload {r.workload}",
            "ChargePeriodStart": start.isoformat(), "ChargePeriodEnd": report.now.isoformat(),
            "ResourceId": f"aiworkloads.gpufinops.dev/{r.workload}", "ResourceName": r.name,
            "ResourceType": "AIWorkload", "ServiceCategory": "AI and Machine Learning",
            "ServiceName": "Kubernetes GPU (gpufinops)", "Tags": json.dumps(tags, sort_keys=True),
            "x_Team": r.team, "x_Project": r.project, "x_Model": r.model,
            "x_Environment": r.environment, "x_CostCenter": r.cost_center,
            "x_WorkloadType": r.type, "x_TodayCost": round(r.today_usd, 6),
            "x_ProjectedMonthCost": round(r.projected_month_usd, 6),
            "x_HourlyCost": round(r.hourly_usd, 6), "x_BudgetState": r.budget_state,
            "x_Enforcement": r.enforcement,
        })  # fmt: skip
    return rows


def render_focus(report: Report, currency: str = "USD") -> str:
    return _csv(
        FOCUS_COLUMNS, ([row[c] for c in FOCUS_COLUMNS] for row in focus_rows(report, currency))
    )


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
    report = build_report(objects, datetime.now(UTC), config.cost.timezone)
    renderers = {"table": render_table, "json": render_json, "csv": render_csv}
    if args.format == "focus":
        sys.stdout.write(render_focus(report, config.cost.currency))
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
    p.set_defaults(func=_cmd_report)
