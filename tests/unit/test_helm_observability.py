"""The chart's PrometheusRule and Grafana dashboard: valid objects, true to the operator.

Every PromQL expression (alert rules and dashboard panels) may name only series
the operator exports, read from ``gpufinops.adapters.operator_metrics`` at test
time, so removing or renaming a metric fails here until the rule and the
dashboard follow.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gpufinops.adapters import operator_metrics
from gpufinops.localcluster.binaries import find_helm
from gpufinops.localcluster.errors import ClusterError

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gpufinops"
DASHBOARD = CHART / "dashboards" / "gpufinops.json"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
NAMESPACE = "gpufinops-system"

# Metrics the rule or the dashboard may use before operator_metrics.py defines
# them (name -> type), for a metric being added in parallel; its panels stay
# empty until it exists. Empty now: every metric used is defined. Remove an
# entry as soon as the metric lands, since an allowlisted name is not checked
# against the source (an existing metric that is removed must fail here).
PLANNED_METRICS: dict[str, str] = {}

# Series Prometheus itself makes for every scrape target.
SCRAPE_SERIES = {"up"}

EXPECTED_ALERTS = {
    "GpufinopsBudgetBurnHigh",
    "GpufinopsBudgetExceeded",
    "GpufinopsBudgetProjectedToExceed",
    "GpufinopsMetricsUnavailable",
    "GpufinopsConflictingAutoscaler",
    "GpufinopsTargetNotFound",
    "GpufinopsOperatorDown",
    "GpufinopsIdleGPUCostHigh",
    "GpufinopsBudgetAlertDeliveryFailing",
}

PROMQL_FUNCTIONS = {
    # aggregation operators
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile",
    # functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta",
    "deriv", "exp", "floor", "histogram_quantile", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
    "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
    "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "quantile_over_time", "stddev_over_time",
}  # fmt: skip
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


# ------------------------------------------------------------------ helpers


def exported_series() -> dict[str, str]:
    """Series names the operator exports, from its metric objects, with their family's type."""
    out: dict[str, str] = {}
    for value in vars(operator_metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, kind = value._name, value._type
        suffixes = {
            "counter": ["_total", "_created"],
            "gauge": [""],
            "histogram": ["_bucket", "_sum", "_count", "_created"],
            "summary": ["", "_sum", "_count", "_created"],
            "info": ["_info"],
            "stateset": [""],
        }[kind]
        out.update({name + s: kind for s in suffixes})
    return out


def allowed_series() -> set[str]:
    return set(exported_series()) | set(PLANNED_METRICS)


_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, function names) used by a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers (may hold $variables)
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, e.g. [5m] or [$__rate_interval]
    text = _GROUPING.sub("", text)
    metrics, functions = set(), set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", text):
        word = match.group(0)
        if word in PROMQL_KEYWORDS:
            continue
        if re.match(r"\s*\(", text[match.end() :]):
            functions.add(word)
        else:
            metrics.add(word)
    return metrics, functions


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def doc_anchors(path: Path) -> set[str]:
    return {
        github_anchor(m.group(1))
        for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", path.read_text(), re.MULTILINE)
    }


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return find_helm()
    except ClusterError as exc:
        pytest.fail(f"helm is not available: {exc}", pytrace=False)


def render(helm: Path, *sets: str) -> list[dict[str, Any]]:
    """``helm template`` with ``sets`` as --set-json values (--set would keep 0.7 a string)."""
    args = [str(helm), "template", "gpufinops", str(CHART), "--namespace", NAMESPACE]
    for s in sets:
        key, _, value = s.partition("=")
        try:
            json.loads(value)
        except ValueError:
            value = json.dumps(value)
        args += ["--set-json", f"{key}={value}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rule_object(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]


def dashboard_maps(docs: list[dict[str, Any]], label: str = "grafana_dashboard") -> list[Any]:
    return [
        d for d in docs if d["kind"] == "ConfigMap" and label in (d["metadata"].get("labels") or {})
    ]


def all_rules(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def panel_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            for target in sub.get("targets", []):
                out.append((sub["title"], target["expr"]))
    return out


@pytest.fixture(scope="module")
def enabled(helm: Path) -> list[dict[str, Any]]:
    return render(helm, "prometheusRule.enabled=true", "grafanaDashboard.enabled=true")


# ------------------------------------------------------------------ defaults


def test_both_are_off_by_default(helm: Path) -> None:
    docs = render(helm)
    assert not [d for d in docs if d["kind"] == "PrometheusRule"]
    assert dashboard_maps(docs) == []


def test_lint_passes_with_both_enabled(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART),
         "--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ PrometheusRule


def test_prometheus_rule_is_a_valid_object(enabled: list[dict[str, Any]]) -> None:
    rule = rule_object(enabled)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gpufinops"
    groups = rule["spec"]["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    names = [r["alert"] for r in all_rules(rule)]
    assert len(names) == len(set(names)), names
    assert set(names) == EXPECTED_ALERTS


def test_every_alert_says_what_and_where_to_look(enabled: list[dict[str, Any]]) -> None:
    anchors = doc_anchors(TROUBLESHOOTING)
    for r in all_rules(rule_object(enabled)):
        annotations = r["annotations"]
        assert annotations.get("summary"), r["alert"]
        assert annotations.get("description"), r["alert"]
        assert r["labels"]["severity"] in {"warning", "critical"}, r["alert"]
        assert re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", r["for"]), r["alert"]
        url = annotations["runbook_url"]
        assert url.startswith("https://") and "/docs/troubleshooting.md#" in url, url
        anchor = url.rsplit("#", 1)[1]
        assert anchor in anchors, f"{r['alert']}: docs/troubleshooting.md has no #{anchor}"


def test_alert_exprs_use_only_the_operators_metrics(enabled: list[dict[str, Any]]) -> None:
    allowed = allowed_series()
    for r in all_rules(rule_object(enabled)):
        metrics, functions = promql_names(r["expr"])
        assert metrics, r["alert"]
        extra = SCRAPE_SERIES if r["alert"] == "GpufinopsOperatorDown" else set()
        assert metrics <= allowed | extra, f"{r['alert']}: unknown {metrics - allowed - extra}"
        assert functions <= PROMQL_FUNCTIONS, f"{r['alert']}: {functions - PROMQL_FUNCTIONS}"


def test_rates_are_taken_of_counters_only(enabled: list[dict[str, Any]]) -> None:
    kinds = {**exported_series(), **PLANNED_METRICS}
    exprs = [r["expr"] for r in all_rules(rule_object(enabled))]
    exprs += [e for _, e in panel_exprs(json.loads(DASHBOARD.read_text()))]
    for expr in exprs:
        for name in re.findall(r"\b(?:rate|increase|irate)\((\w+)", expr):
            assert kinds.get(name) in {"counter", "histogram"}, f"{name} in {expr}"


def test_thresholds_and_labels_come_from_values(helm: Path) -> None:
    docs = render(
        helm,
        "prometheusRule.enabled=true",
        "prometheusRule.budget.warningRatio=0.7",
        "prometheusRule.budget.projection.enabled=false",
        "prometheusRule.idleCost.usdPerHour=25",
        "prometheusRule.operatorJob=gpufinops",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "prometheusRule.alertLabels.team=platform",
        "prometheusRule.runbookBaseURL=https://example.com/troubleshooting.md",
    )
    rule = rule_object(docs)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    by_name = {r["alert"]: r for r in all_rules(rule)}
    assert "GpufinopsBudgetProjectedToExceed" not in by_name
    assert ">= 0.7" in by_name["GpufinopsBudgetBurnHigh"]["expr"]
    assert by_name["GpufinopsIdleGPUCostHigh"]["expr"].endswith("> 25")
    assert 'job="gpufinops"' in by_name["GpufinopsOperatorDown"]["expr"]
    assert all(r["labels"]["team"] == "platform" for r in by_name.values())
    assert by_name["GpufinopsOperatorDown"]["annotations"]["runbook_url"] == (
        "https://example.com/troubleshooting.md#operator-down"
    )


def test_budget_alerts_take_one_path_and_carry_the_team(helm: Path) -> None:
    budget = {"GpufinopsBudgetBurnHigh", "GpufinopsBudgetExceeded",
              "GpufinopsBudgetProjectedToExceed"}  # fmt: skip
    rules = {
        r["alert"]: r for r in all_rules(rule_object(render(helm, "prometheusRule.enabled=true")))
    }
    assert budget <= set(rules)
    for name in budget:  # Alertmanager routes on team: the rules keep it
        assert "by (namespace, workload, team)" in rules[name]["expr"], name
    # The operator posts budget alerts to Alertmanager itself: the rules would page twice.
    direct = render(helm, "prometheusRule.enabled=true",
                    "config.alerting.alertmanagerURL=http://alertmanager:9093")  # fmt: skip
    alerts = {r["alert"] for r in all_rules(rule_object(direct))}
    assert not alerts & budget and "GpufinopsOperatorDown" in alerts


def test_operator_down_watches_the_metrics_service_job(enabled: list[dict[str, Any]]) -> None:
    down = next(r for r in all_rules(rule_object(enabled)) if r["alert"] == "GpufinopsOperatorDown")
    service = next(d for d in enabled if d["kind"] == "Service")
    up = f'up{{job="{service["metadata"]["name"]}", namespace="{NAMESPACE}"}}'
    assert down["expr"] == f"(max by (job, namespace) ({up}) == 0) or absent({up})"


@pytest.mark.parametrize(
    "bad",
    [
        "prometheusRule.budget.for=5 minutes",
        "prometheusRule.metricsUnavailable.failureRatio=2",
        "prometheusRule.runbookBaseURL=docs/troubleshooting.md",
        "prometheusRule.unknown=1",
        "grafanaDashboard.label=",
    ],
)
def test_schema_rejects_bad_observability_values(helm: Path, bad: str) -> None:
    result = subprocess.run(
        [str(helm), "template", "gpufinops", str(CHART), "--set", bad],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


# ------------------------------------------------------------------ Grafana dashboard


def test_dashboard_config_map_carries_the_file(enabled: list[dict[str, Any]]) -> None:
    (config_map,) = dashboard_maps(enabled)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert json.loads(config_map["data"]["gpufinops.json"]) == json.loads(DASHBOARD.read_text())


def test_dashboard_label_and_namespace_are_configurable(helm: Path) -> None:
    docs = render(
        helm,
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.label=dashboards",
        "grafanaDashboard.labelValue=gpu",
        "grafanaDashboard.namespace=monitoring",
        "grafanaDashboard.annotations.grafana_folder=FinOps",
    )
    (config_map,) = dashboard_maps(docs, "dashboards")
    assert config_map["metadata"]["labels"]["dashboards"] == "gpu"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "FinOps"}


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "gpufinops"
    assert dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "workload"} <= variables
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            assert panel.get("description"), panel["title"]


def test_dashboard_exprs_use_only_the_operators_metrics() -> None:
    allowed = allowed_series()
    dashboard = json.loads(DASHBOARD.read_text())
    queries = panel_exprs(dashboard)
    queries += [
        (v["name"], re.sub(r"^label_values\((.*), *\w+\)$", r"\1", v["definition"]))
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]
    for title, expr in queries:
        metrics, functions = promql_names(expr)
        assert metrics, title
        assert metrics <= allowed, f"{title}: unknown {metrics - allowed}"
        assert functions <= PROMQL_FUNCTIONS, f"{title}: {functions - PROMQL_FUNCTIONS}"


def test_dashboard_shows_what_finops_asks_for() -> None:
    exprs = " ".join(e for _, e in panel_exprs(json.loads(DASHBOARD.read_text())))
    for wanted in [
        "sum by (model) (gpufinops_hourly_cost_usd",  # per-model cost
        "sum by (team) (gpufinops_hourly_cost_usd",  # per-team cost
        "gpufinops_budget_used_ratio",  # budget burn
        "gpufinops_desired_replicas",  # replicas ...
        "gpufinops_forecast_demand",  # ... vs forecast
        "gpufinops_idle_cost_usd_total",  # idle cost (nodes with no GPU pod)
        "gpufinops_unallocated_gpu_cost_usd_total",  # idle cost (GPUs no pod holds)
        "gpufinops_decision_seconds_bucket",  # decision latency
    ]:
        assert wanted in exprs, wanted


def test_promql_parser_finds_metric_names() -> None:
    metrics, functions = promql_names(
        "histogram_quantile(0.99, sum by (le) (rate(gpufinops_decision_seconds_bucket"
        '{namespace=~"$namespace"}[$__rate_interval]))) > bool 1e3 or vector(0)'
    )
    assert metrics == {"gpufinops_decision_seconds_bucket"}
    assert functions == {"histogram_quantile", "sum", "rate", "vector"}


# ------------------------------------------------------------------ promtool


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus provides it)")
    return path


def _write_groups(rule: dict[str, Any], path: Path, *, annotations: bool = True) -> None:
    groups = json.loads(json.dumps(rule["spec"]["groups"]))
    if not annotations:
        for r in (r for g in groups for r in g["rules"]):
            r.pop("annotations", None)
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))


def test_promtool_accepts_the_rules(enabled: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = _promtool()
    rules = tmp_path / "rules.yaml"
    _write_groups(rule_object(enabled), rules)
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_alerts_fire_when_they_should(
    enabled: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The expressions, evaluated by Prometheus's own engine on synthetic series."""
    promtool = _promtool()
    rules = tmp_path / "rules.yaml"
    _write_groups(rule_object(enabled), rules, annotations=False)
    w = {"namespace": "ml", "workload": "llama"}

    def series(name: str, values: str, **labels: str) -> dict[str, str]:
        body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
        return {"series": f"{name}{{{body}}}", "values": values}

    def check(alert: str, at: str, *firing: dict[str, str], severity: str = "warning") -> Any:
        return {
            "eval_time": at,
            "alertname": alert,
            "exp_alerts": [{"exp_labels": {"severity": severity, **ls}} for ls in firing],
        }

    job = {"job": "gpufinops-metrics", "namespace": NAMESPACE}
    tests = [
        {  # 85 % used: warning only; 120 %: exceeded only
            "interval": "1m",
            "input_series": [
                series("gpufinops_budget_used_ratio", "0.85x20", namespace="ml", workload="a"),
                series("gpufinops_budget_used_ratio", "1.2x20", namespace="ml", workload="b"),
                series("gpufinops_budget_used_ratio", "0.5x20", namespace="ml", workload="c"),
            ],
            "alert_rule_test": [
                check("GpufinopsBudgetBurnHigh", "3m"),
                check("GpufinopsBudgetBurnHigh", "10m", {"namespace": "ml", "workload": "a"}),
                check(
                    "GpufinopsBudgetExceeded",
                    "10m",
                    {"namespace": "ml", "workload": "b"},
                    severity="critical",
                ),
                check("GpufinopsBudgetProjectedToExceed", "15m"),
            ],
        },
        {  # 0.1 % of the budget a minute: at 50 % after 400 min, over 100 % within 24 h
            "interval": "1m",
            "input_series": [
                series("gpufinops_budget_used_ratio", "0.1+0.001x500", **w),
            ],
            "alert_rule_test": [
                check("GpufinopsBudgetProjectedToExceed", "400m", w),
                check("GpufinopsBudgetBurnHigh", "400m"),
            ],
        },
        {  # every tick fails to read the queue for one workload, none for another
            "interval": "15s",
            "input_series": [
                series("gpufinops_metric_read_failures_total", "0+1x120", **w),
                series("gpufinops_autoscaler_ticks_total", "0+1x120", outcome="decided", **w),
                series(
                    "gpufinops_autoscaler_ticks_total",
                    "0+1x120",
                    outcome="decided",
                    namespace="ml",
                    workload="ok",
                ),
                series(
                    "gpufinops_metric_read_failures_total", "0x120", namespace="ml", workload="ok"
                ),
                series(
                    "gpufinops_autoscaler_ticks_total",
                    "0+1x120",
                    outcome="conflicting_autoscaler",
                    namespace="ml",
                    workload="fight",
                ),
            ],
            "alert_rule_test": [
                check("GpufinopsMetricsUnavailable", "5m"),
                check("GpufinopsMetricsUnavailable", "25m", w),
                check(
                    "GpufinopsConflictingAutoscaler",
                    "25m",
                    {"namespace": "ml", "workload": "fight"},
                ),
                check("GpufinopsTargetNotFound", "25m"),
            ],
        },
        {  # scraped but down (one of two replicas up is fine)
            "interval": "1m",
            "input_series": [
                series("up", "0x20", pod="gpufinops-0", **job),
                series("up", "1x20", pod="gpufinops-1", **job),
                series("up", "0x20", job="gpufinops-metrics", namespace="elsewhere"),
            ],
            "alert_rule_test": [check("GpufinopsOperatorDown", "10m")],
        },
        {
            "interval": "1m",
            "input_series": [
                series("up", "0x20", pod="gpufinops-0", **job),
                series("up", "0x20", pod="gpufinops-1", **job),
            ],
            "alert_rule_test": [
                check("GpufinopsOperatorDown", "3m"),
                check("GpufinopsOperatorDown", "10m", job, severity="critical"),
            ],
        },
        {  # not scraped at all (no ServiceMonitor, wrong job name)
            "interval": "1m",
            "input_series": [series("up", "1x20", job="prometheus", namespace="monitoring")],
            "alert_rule_test": [check("GpufinopsOperatorDown", "10m", job, severity="critical")],
        },
        {  # one failed delivery fires at once and clears 15 minutes later
            "interval": "1m",
            "input_series": [
                {"series": "gpufinops_alert_delivery_failures_total", "values": "0x5 1x30"}
            ],
            "alert_rule_test": [
                check("GpufinopsBudgetAlertDeliveryFailing", "4m"),
                check("GpufinopsBudgetAlertDeliveryFailing", "8m", {}),
                check("GpufinopsBudgetAlertDeliveryFailing", "30m"),
            ],
        },
        {  # 8 idle GPUs at 2 USD per GPU-hour: 16 USD/h, above the 10 USD/h default
            "interval": "1m",
            "input_series": [
                series(
                    "gpufinops_unallocated_gpu_cost_usd_total",
                    f"0+{16 / 60}x150",
                    pool="a100",
                    capacity_type="on-demand",
                ),
                series(
                    "gpufinops_unallocated_gpu_cost_usd_total",
                    f"0+{1 / 60}x150",
                    pool="l4",
                    capacity_type="spot",
                ),
            ],
            "alert_rule_test": [
                check("GpufinopsIdleGPUCostHigh", "20m"),
                check("GpufinopsIdleGPUCostHigh", "120m", {"pool": "a100"}),
            ],
        },
    ]
    spec = tmp_path / "tests.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    result = subprocess.run(
        [promtool, "test", "rules", spec.name],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
