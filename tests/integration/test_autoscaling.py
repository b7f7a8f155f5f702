"""Inference autoscaling end to end: a real API server with controllers and KWOK GPU
nodes, a real Prometheus scraping a test exporter (with promtool-backfilled history),
and `gpufinops run` deciding. Every wait polls a condition until a deadline."""

import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.exporter import Exporter
from tests.support.inference import (
    WORKLOAD,
    jsonpath,
    llm_deployment,
    llm_replicas,
    model_pod,
    set_vllm,
)
from tests.support.kube import event_reasons
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll
from tests.support.promserver import PrometheusServer, backfill

from gpufinops.localcluster.binaries import find_prometheus

DAY = 86_400
HOUR = 3_600
SHIFT = 3 * HOUR
"""The forecast scenario reads its demand 3 h in the past, inside the backfilled history."""
RAMP_AHEAD = 480
"""The daily ramp starts this many seconds after the fixture is built (in shifted time)."""
GATEWAY = "gpufinops_test_gateway_rps"


def _gateway_history(now: float) -> tuple[str, float]:
    """Eight days of a gateway's demand with a ramp at the same time each day.

    Each day has its own level (x0.8 to x1.2) and each minute some noise, so
    yesterday's value alone (seasonal naive) is a poor forecast and the model,
    which learns the daily shape relative to the current level, is better.
    """
    ramp_start = (now - SHIFT + RAMP_AHEAD) % DAY
    end = int(now - 2 * HOUR) // 60 * 60
    start = end - 8 * DAY
    rng = random.Random(7)
    day_level = {d: rng.uniform(0.8, 1.2) for d in range(-10, 10)}
    lines = [f"# TYPE {GATEWAY} gauge"]
    for t in range(start, end + 1, 60):
        tod = (t - ramp_start) % DAY
        level = day_level[int((t - now) // DAY)]
        shape = 80.0 if tod < 1800 else 20.0
        value = shape * level * rng.uniform(0.95, 1.05)
        lines.append(f'{GATEWAY}{{namespace="as-forecast"}} {value:.4f} {t}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n", ramp_start


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter() as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter, tmp_path_factory) -> Iterator[PrometheusServer]:
    binary = find_prometheus(install=True)
    server = PrometheusServer(
        binary, tmp_path_factory.mktemp("autoscaling-prom"), [exporter.target]
    )
    text, _ = _gateway_history(time.time())
    backfill(binary, server.data_dir, text)
    with server:
        yield server


@pytest.fixture(scope="module")
def operator(
    kubeconfig: Path, prometheus: PrometheusServer, tmp_path_factory
) -> Iterator[RunningOperator]:
    with running_operator(
        kubeconfig, tmp_path_factory.mktemp("operator"), "--namespace", "as-*",
        "--prometheus-url", prometheus.url, "--sync-seconds", "1",
    ) as op:  # fmt: skip
        yield op


@pytest.fixture(autouse=True)
def _release_gpus(kubectl) -> Iterator[None]:
    """Each test's Deployment gives its fake GPUs back, so later tests find the pool free."""
    yield
    for ns in ("as-spike", "as-wake", "as-gateway", "as-pause", "as-kv", "as-outage", "as-hpa",
               "as-forecast", "as-sts", "as-custom"):  # fmt: skip
        kubectl("delete", "aiw,deployments,statefulsets,pods", "--all", "-n", ns, "--wait=true",
                "--timeout=60s")  # fmt: skip


def _setup(kubectl, ns: str, workload: str) -> None:
    kubectl("create", "namespace", ns)
    for manifest in (json.dumps(llm_deployment(ns)), workload):
        done = kubectl("apply", "-n", ns, "-f", "-", input=manifest)
        assert done.returncode == 0, done.stderr


def _condition(kubectl, ns: str, ctype: str) -> str:
    return jsonpath(kubectl, ns, "aiw", "llm", f'.status.conditions[?(@.type=="{ctype}")].status')


def test_scales_up_on_a_queue_spike_and_down_after_it(operator, exporter, kubectl) -> None:
    ns = "as-spike"
    set_vllm(exporter, ns, waiting=0)
    _setup(kubectl, ns, WORKLOAD)
    poll(lambda: _condition(kubectl, ns, "MetricsAvailable") == "True", "metrics")
    assert llm_replicas(kubectl, ns) == 1
    set_vllm(exporter, ns, waiting=2000)  # far beyond 6 replicas' worth: 1 -> 5 (step) -> 6 (max)
    poll(lambda: llm_replicas(kubectl, ns) == 6, "scale-up to 6")
    # real pods on the KWOK GPU nodes of the pool
    ready = kubectl("wait", "-n", ns, "deployment/llm", "--for=jsonpath={.status.readyReplicas}=6",
                    "--timeout=60s")  # fmt: skip
    assert ready.returncode == 0, ready.stderr
    set_vllm(exporter, ns, waiting=0)
    poll(lambda: llm_replicas(kubectl, ns) == 1, "scale-down to 1")
    reasons = event_reasons(kubectl, ns)
    assert "ScaledUp" in reasons and "ScaledDown" in reasons
    desired = jsonpath(kubectl, ns, "aiw", "llm", ".status.replicas.desired")
    assert desired == "1"


def test_scales_to_zero_when_idle_and_wakes_on_demand(operator, exporter, kubectl) -> None:
    ns = "as-wake"
    set_vllm(exporter, ns, waiting=0, completions_per_s=0)
    exporter.set("vllm:num_requests_running", {"namespace": ns, "pod": model_pod("llm")}, 0)
    workload = WORKLOAD.replace("minReplicas: 1", "minReplicas: 0") + (
        "    scaleToZero: {enabled: true, idleSeconds: 2}\n"
    )
    _setup(kubectl, ns, workload)
    poll(lambda: llm_replicas(kubectl, ns) == 0, "scale to zero once idle")
    # Demand at zero replicas: the Scale has no spec.replicas then, and the write that
    # checks the count it decided from must still go through.
    set_vllm(exporter, ns, waiting=8, completions_per_s=1)
    poll(lambda: llm_replicas(kubectl, ns) > 0, "woken from zero on demand")
    assert "ScaledToZero" in event_reasons(kubectl, ns)
    assert "ScaledUp" in event_reasons(kubectl, ns)


def test_at_zero_absent_engine_series_never_fall_back_and_gateway_demand_wakes(
    operator, exporter, kubectl
) -> None:
    ns = "as-gateway"
    demand = f'sum(rate(gateway_requests_total{{namespace="{ns}"}}[1m]))'
    workload = WORKLOAD.replace("minReplicas: 1", "minReplicas: 0") + (
        "    scaleToZero: {enabled: true, idleSeconds: 2}\n"
        "    fallback: {failureThreshold: 1, replicas: 3}\n"
        f"    metrics: {{server: vllm, demandQuery: '{demand}'}}\n"
    )
    kubectl("create", "namespace", ns)
    deployment = llm_deployment(ns)
    deployment["spec"]["replicas"] = 0  # already at zero: no engine pod, no engine series
    for manifest in (json.dumps(deployment), workload):
        done = kubectl("apply", "-n", ns, "-f", "-", input=manifest)
        assert done.returncode == 0, done.stderr
    exporter.set_rate("gateway_requests_total", {"namespace": ns, "pod": "gateway-0"}, 0.0)
    # Ticks at zero with the engine's series absent: no queue, not a failed read.
    poll(lambda: _condition(kubectl, ns, "MetricsAvailable") == "True", "signals read at zero")
    reason = poll(
        lambda: jsonpath(kubectl, ns, "aiw", "llm", ".status.lastDecision.reason"),
        "a decision at zero",
    )
    assert reason.startswith("scaled to zero"), reason
    assert llm_replicas(kubectl, ns) == 0
    assert "FallbackActivated" not in event_reasons(kubectl, ns)
    # The gateway sees requests: demand wakes the workload.
    exporter.set_rate("gateway_requests_total", {"namespace": ns, "pod": "gateway-0"}, 5.0)
    poll(lambda: llm_replicas(kubectl, ns) > 0, "woken by the gateway's demand")
    assert "FallbackActivated" not in event_reasons(kubectl, ns)


def test_pause_annotation_columns_event_component_and_read_metrics(
    operator, exporter, kubectl
) -> None:
    ns = "as-pause"
    set_vllm(exporter, ns, waiting=0)
    kubectl("create", "namespace", ns)
    for manifest in (json.dumps(llm_deployment(ns)), WORKLOAD):
        done = kubectl("apply", "-n", ns, "-f", "-", input=manifest)
        assert done.returncode == 0, done.stderr
    done = kubectl("annotate", "aiw", "llm", "-n", ns, "gpufinops.dev/paused=true")
    assert done.returncode == 0, done.stderr
    poll(lambda: _condition(kubectl, ns, "Paused") == "True", "the Paused condition")
    set_vllm(exporter, ns, waiting=2000)
    poll(lambda: int(jsonpath(kubectl, ns, "aiw", "llm", ".status.replicas.desired") or 0) > 1,
         "a decision to scale up, not applied")  # fmt: skip
    assert llm_replicas(kubectl, ns) == 1
    # Resumed without a JSON-patch remove: the annotation set to false.
    done = kubectl("annotate", "aiw", "llm", "-n", ns, "gpufinops.dev/paused=false", "--overwrite")
    assert done.returncode == 0, done.stderr
    poll(lambda: llm_replicas(kubectl, ns) > 1, "scaling once resumed")
    assert _condition(kubectl, ns, "Paused") == "False"
    reasons = event_reasons(kubectl, ns)
    assert "AutoscalingPaused" in reasons and "AutoscalingResumed" in reasons
    events = json.loads(kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    ours = [e for e in events if e["involvedObject"]["kind"] == "AIWorkload"]
    assert ours and {e["source"]["component"] for e in ours} == {"gpufinops"}
    assert {e["reportingComponent"] for e in ours} == {"gpufinops"}
    table = kubectl("get", "aiw", "llm", "-n", ns).stdout.split("\n")
    header, row = table[0].split(), table[1].split()
    assert header[:6] == ["NAME", "TYPE", "TARGET", "MIN", "MAX", "REPLICAS"], header
    assert row[3:5] == ["1", "6"], row
    labels = {"namespace": ns, "workload": "llm"}
    assert operator.metric("gpufinops_queue_depth", **labels) == 2000
    assert operator.metric("gpufinops_fallback_active", **labels) == 0
    assert operator.metric("gpufinops_build_info") == 1


def _gpu_pod_spec() -> dict:
    return llm_deployment("unused")["spec"]["template"]["spec"]


def test_scales_a_statefulset_and_counts_its_ready_pods(operator, exporter, kubectl) -> None:
    ns = "as-sts"
    labels = {"namespace": ns, "pod": "llm-0"}  # a StatefulSet's pod: <name>-<ordinal>
    exporter.set("vllm:num_requests_waiting", labels, 0)
    exporter.set("vllm:num_requests_running", labels, 1)
    exporter.set_rate("vllm:request_success_total", labels, 1.0)
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "llm", "namespace": ns},
        "spec": {"replicas": 1, "serviceName": "llm", "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": "llm"}},
                 "template": {"metadata": {"labels": {"app": "llm"}}, "spec": _gpu_pod_spec()}},
    }  # fmt: skip
    workload = WORKLOAD.replace(
        "targetRef: {name: llm}", "targetRef: {kind: StatefulSet, name: llm}"
    )
    workload = workload.replace("maxReplicas: 6", "maxReplicas: 3")
    kubectl("create", "namespace", ns)
    for manifest in (json.dumps(statefulset), workload):
        done = kubectl("apply", "-n", ns, "-f", "-", input=manifest)
        assert done.returncode == 0, done.stderr
    poll(lambda: _condition(kubectl, ns, "MetricsAvailable") == "True", "metrics")
    exporter.set("vllm:num_requests_waiting", labels, 2000)
    replicas = lambda: jsonpath(kubectl, ns, "statefulset", "llm", ".spec.replicas")  # noqa: E731
    poll(lambda: replicas() == "3", "the StatefulSet scaled to 3")
    # Ready replicas are its pods the scale's selector selects, as they become ready.
    poll(lambda: jsonpath(kubectl, ns, "aiw", "llm", ".status.replicas.ready") == "3",
         "three ready pods counted")  # fmt: skip
    assert jsonpath(kubectl, ns, "aiw", "llm", ".status.selector") == "app=llm"
    assert jsonpath(kubectl, ns, "aiw", "llm", ".status.target") == "StatefulSet/llm"
    exporter.set("vllm:num_requests_waiting", labels, 0)
    poll(lambda: replicas() == "1", "scaled down to 1")
    assert {"ScaledUp", "ScaledDown"} <= set(event_reasons(kubectl, ns))


MODEL_SERVER_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: modelservers.serving.example.com}
spec:
  group: serving.example.com
  scope: Namespaced
  names: {plural: modelservers, singular: modelserver, kind: ModelServer}
  versions:
    - name: v1
      served: true
      storage: true
      subresources:
        status: {}
        scale:
          specReplicasPath: .spec.replicas
          statusReplicasPath: .status.replicas
          labelSelectorPath: .status.selector
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""


def test_scales_a_custom_resource_through_its_scale_subresource(
    operator, exporter, kubectl
) -> None:
    """A kind of the test's own, with no controller: the operator reads and sets its
    replicas only through /scale, and finds its pods through the scale's selector."""
    ns = "as-custom"
    crd = kubectl("apply", "-f", "-", input=MODEL_SERVER_CRD)
    assert crd.returncode == 0, crd.stderr
    established = kubectl("wait", "crd/modelservers.serving.example.com",
                          "--for=condition=Established", "--timeout=60s")  # fmt: skip
    assert established.returncode == 0, established.stderr
    try:
        kubectl("create", "namespace", ns)
        server = {"apiVersion": "serving.example.com/v1", "kind": "ModelServer",
                  "metadata": {"name": "ms", "namespace": ns}, "spec": {"replicas": 1}}  # fmt: skip
        assert kubectl("apply", "-f", "-", input=json.dumps(server)).returncode == 0
        status = {"status": {"replicas": 1, "selector": "app=ms"}}
        done = kubectl("patch", "modelserver", "ms", "-n", ns, "--subresource=status",
                       "--type=merge", "-p", json.dumps(status))  # fmt: skip
        assert done.returncode == 0, done.stderr
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "ms-0", "namespace": ns, "labels": {"app": "ms"}},
               "spec": _gpu_pod_spec()}  # fmt: skip
        assert kubectl("apply", "-f", "-", input=json.dumps(pod)).returncode == 0
        labels = {"namespace": ns, "pod": "ms-0"}
        exporter.set("vllm:num_requests_waiting", labels, 0)
        exporter.set("vllm:num_requests_running", labels, 1)
        exporter.set_rate("vllm:request_success_total", labels, 1.0)
        ref = "targetRef: {apiVersion: serving.example.com/v1, kind: ModelServer, name: ms}"
        workload = WORKLOAD.replace("targetRef: {name: llm}", ref)
        workload = workload.replace("maxReplicas: 6", "maxReplicas: 4")
        # A version the API server does not serve: said so, nothing scaled.
        wrong = (
            workload.replace("{name: llm}", "{name: wrong-version}")
            .replace("name: ms}", "name: ms-next}")
            .replace("serving.example.com/v1", "serving.example.com/v2")
        )
        for manifest in (workload, wrong):
            done = kubectl("apply", "-n", ns, "-f", "-", input=manifest)
            assert done.returncode == 0, done.stderr
        ready = lambda: jsonpath(kubectl, ns, "aiw", "llm", ".status.replicas.ready")  # noqa: E731
        poll(lambda: ready() == "1", "the one ready pod of the selector counted")
        assert jsonpath(kubectl, ns, "aiw", "llm", ".status.selector") == "app=ms"
        exporter.set("vllm:num_requests_waiting", labels, 2000)
        replicas = lambda: jsonpath(kubectl, ns, "modelserver", "ms", ".spec.replicas")  # noqa: E731
        poll(lambda: replicas() == "4", "the custom resource scaled to 4")
        reason = poll(
            lambda: jsonpath(kubectl, ns, "aiw", "wrong-version",
                             '.status.conditions[?(@.type=="Ready")].reason'),
            "the unserved version reported",
        )  # fmt: skip
        assert reason == "TargetNotScalable", reason
        message = jsonpath(kubectl, ns, "aiw", "wrong-version",
                           '.status.conditions[?(@.type=="Ready")].message')  # fmt: skip
        assert "serving.example.com/v2 serves no kind ModelServer" in message, message
        assert "TargetNotScalable" in event_reasons(kubectl, ns)
    finally:
        kubectl("delete", "aiw", "--all", "-n", ns, "--wait=true", "--timeout=60s")
        kubectl("delete", "crd", "modelservers.serving.example.com", "--wait=true",
                "--timeout=60s")  # fmt: skip


def test_kv_cache_pressure_scales_up_with_an_empty_queue(operator, exporter, kubectl) -> None:
    ns = "as-kv"
    set_vllm(exporter, ns, waiting=0)
    series = {"namespace": ns, "pod": model_pod("llm")}
    exporter.set("vllm:kv_cache_usage_perc", series, 0.2)
    workload = WORKLOAD + "    kvCacheTargetUsage: 0.5\n"
    _setup(kubectl, ns, workload)
    poll(lambda: _condition(kubectl, ns, "MetricsAvailable") == "True", "metrics")
    assert llm_replicas(kubectl, ns) == 1
    exporter.set("vllm:kv_cache_usage_perc", series, 0.95)  # the cache fills, no queue yet
    poll(lambda: llm_replicas(kubectl, ns) > 1, "scale-up on KV-cache pressure")
    reason = jsonpath(kubectl, ns, "aiw", "llm", ".status.lastDecision.reason")
    assert "KV cache" in reason, reason


def test_holds_during_a_prometheus_outage(operator, exporter, prometheus, kubectl) -> None:
    ns = "as-outage"
    set_vllm(exporter, ns, waiting=2000)
    _setup(kubectl, ns, WORKLOAD)
    poll(lambda: llm_replicas(kubectl, ns) == 6, "scale-up to 6")
    set_vllm(exporter, ns, waiting=0)  # would scale down, if it could be read
    prometheus.kill()
    try:
        failures = lambda: operator.metric(  # noqa: E731
            "gpufinops_metric_read_failures_total", namespace=ns, workload="llm"
        )
        seen = failures()  # reads may also have failed before the exporter was first scraped
        poll(lambda: failures() >= seen + 5, "five failed reads")
        assert llm_replicas(kubectl, ns) == 6
        assert _condition(kubectl, ns, "MetricsAvailable") == "False"
        assert "MetricsUnavailable" in event_reasons(kubectl, ns)
    finally:
        prometheus.start()
    poll(lambda: _condition(kubectl, ns, "MetricsAvailable") == "True", "recovery")
    poll(lambda: llm_replicas(kubectl, ns) == 1, "scale-down after recovery")


FALLBACK_WORKLOAD = WORKLOAD.replace(
    "    forecast: {enabled: false}\n",
    "    forecast: {enabled: false}\n    fallback: {failureThreshold: 3, replicas: 4}\n",
)


def test_nan_and_empty_answers_hold_then_fall_back_and_recover(operator, exporter, kubectl) -> None:
    """A NaN queue and then no series at all are unknown, never zero: the replicas are
    held, after failureThreshold reads the fallback applies, and real data takes over."""
    ns = "as-nan"
    set_vllm(exporter, ns, waiting=2000)
    _setup(kubectl, ns, FALLBACK_WORKLOAD)
    try:
        poll(lambda: llm_replicas(kubectl, ns) == 6, "scale-up to 6")
        labels = {"namespace": ns, "pod": model_pod("llm")}
        exporter.set("vllm:num_requests_waiting", labels, float("nan"))
        poll(lambda: _condition(kubectl, ns, "MetricsAvailable") == "False",
             "NaN to be reported as unavailable")  # fmt: skip
        # The fallback (static, 4 replicas) applies after three failed reads.
        poll(lambda: llm_replicas(kubectl, ns) == 4, "the fallback to 4 replicas")
        assert "FallbackScaled" in event_reasons(kubectl, ns)
        exporter.remove_matching(labels)  # now no series at all: still unknown
        failures = lambda: operator.metric(  # noqa: E731
            "gpufinops_metric_read_failures_total", namespace=ns, workload="llm"
        )
        seen = failures()
        poll(lambda: failures() >= seen + 3, "three more failed reads")
        assert llm_replicas(kubectl, ns) == 4, "missing data never scales below the fallback"
        set_vllm(exporter, ns, waiting=0)  # data is back: an empty queue
        poll(lambda: _condition(kubectl, ns, "MetricsAvailable") == "True", "recovery")
        poll(lambda: llm_replicas(kubectl, ns) == 1, "scale-down on real data")
    finally:
        kubectl("delete", "aiw,deployments", "--all", "-n", ns, "--wait=true", "--timeout=60s")


def test_refuses_to_fight_an_hpa(operator, exporter, kubectl) -> None:
    ns = "as-hpa"
    set_vllm(exporter, ns, waiting=0)
    _setup(kubectl, ns, WORKLOAD)
    hpa = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: llm-cpu}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llm}
  minReplicas: 1
  maxReplicas: 2
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
"""
    assert kubectl("apply", "-n", ns, "-f", "-", input=hpa).returncode == 0
    poll(lambda: _condition(kubectl, ns, "ConflictingAutoscaler") == "True", "conflict")
    set_vllm(exporter, ns, waiting=2000)
    conflicts = lambda: operator.metric(  # noqa: E731
        "gpufinops_autoscaler_ticks_total", namespace=ns, outcome="conflicting_autoscaler"
    )
    seen = conflicts()
    poll(lambda: conflicts() >= seen + 5, "five more ticks")
    assert llm_replicas(kubectl, ns) == 1
    assert "ConflictingAutoscaler" in event_reasons(kubectl, ns)
    assert kubectl("delete", "hpa", "llm-cpu", "-n", ns).returncode == 0
    poll(lambda: llm_replicas(kubectl, ns) == 6, "acting once the HPA is gone")


FORECAST_WORKLOAD = """
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {name: llm}
spec:
  type: Inference
  costAllocation: {team: serving}
  inference:
    targetRef: {name: llm}
    minReplicas: 1
    maxReplicas: 10
    capacityPerReplica: 10
    metrics:
      server: custom
      queueQuery: vector(0)
      demandQuery: sum(%(gateway)s{namespace="as-forecast"} offset %(shift)ds)
    forecast: {enabled: true, leadTimeSeconds: 600, historyDays: 7, quantile: 0.9}
"""


def test_scales_ahead_of_a_forecast_peak(operator, kubectl) -> None:
    ns = "as-forecast"
    _setup(kubectl, ns, FORECAST_WORKLOAD % {"gateway": GATEWAY, "shift": SHIFT})
    # Demand now is the quiet level (about 20/s: 2 replicas); the daily ramp to
    # about 80/s starts within the 600 s lead window, so the forecast scales first.
    poll(
        lambda: _condition(kubectl, ns, "PredictionReady") == "True",
        "a ready forecast",
        deadline=120,
    )
    poll(lambda: llm_replicas(kubectl, ns) >= 6, "scale-up ahead of the ramp")
    reason = jsonpath(kubectl, ns, "aiw", "llm", ".status.lastDecision.reason")
    assert "forecast peak" in reason
    peak = float(jsonpath(kubectl, ns, "aiw", "llm", ".status.forecast.predictedPeak"))
    assert peak > 50
    assert "PredictionReady" in event_reasons(kubectl, ns)
    assert not math.isnan(peak)
