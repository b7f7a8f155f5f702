"""Tenants' PromQL against the operator's bounds, on the real control plane with a real
Prometheus (scraping a test vLLM exporter and, for one test, 100,000 series of noise)
and `gpufinops run` as a process, behind a proxy that can hold a query as a slow
Prometheus would.

- A custom ``queueQuery`` that selects every namespace reads only its own: another
  namespace's long queue neither scales the workload nor shows in its status.
- An edited ``queueQuery`` is used from the next ticks on, without a restart.
- A query matching 100,000 series is refused with a condition while it is read, and
  the operator's memory stays within 50 MB of what it was.
- A tenant whose custom queries hang holds one thread of the custom query pool, not
  every thread: another tenant's workload scales while they still hang.

The operator's query timeout is 30 s here, so a held query stays held for 30 s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.exporter import Exporter
from tests.support.inference import WORKLOAD, llm_deployment, llm_replicas, set_vllm
from tests.support.kube import KubectlRun, deployment_manifest, made_namespaces, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import describe_on_timeout, poll, poll_until
from tests.support.prometheus_load import HoldingProxy, NoiseExporter
from tests.support.promserver import PrometheusServer, wait_for

from gpufinops.adapters.prometheus.client import PrometheusClient
from gpufinops.localcluster.binaries import find_prometheus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TENANT = "promprod-a"
OTHER = "promprod-b"
SLOW = "promprod-slow"
NAMESPACES = (TENANT, OTHER, SLOW)
QUERY_TIMEOUT = 30
MARKER = "hang_marker_total"
NOISE = "gateway_requests_inflight"
NOISE_SERIES = 100_000
SLOW_WORKLOADS = 8
"""More than asyncio's default executor has threads on a 2-core machine (6)."""


class NoisyPrometheus(PrometheusServer):
    """The module's Prometheus, also scraping the noise exporter, rarely and patiently."""

    noise: str = ""

    def write_config(self) -> Path:
        path = super().write_config()
        config = yaml.safe_load(path.read_text())
        config["scrape_configs"].append({
            "job_name": "noise", "honor_labels": True, "scrape_interval": "60s",
            "scrape_timeout": "50s", "static_configs": [{"targets": [self.noise]}],
        })  # fmt: skip
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


@pytest.fixture(scope="module")
def noisy_prometheus(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with NoiseExporter(NOISE, TENANT, NOISE_SERIES) as noise:
        server = NoisyPrometheus(
            find_prometheus(install=True), tmp_path_factory.mktemp("prometheus"),
            [exporter.target],
        )  # fmt: skip
        server.noise = noise.target
        with server:
            yield server.url


@pytest.fixture(scope="module")
def proxy(noisy_prometheus: str) -> Iterator[HoldingProxy]:
    with HoldingProxy(noisy_prometheus, MARKER) as running:
        yield running


@pytest.fixture(scope="module")
def namespaces(kubectl: KubectlRun) -> Iterator[None]:
    with made_namespaces(kubectl, NAMESPACES):
        yield


@pytest.fixture(scope="module")
def operator(
    namespaces: None,
    kubeconfig: Path,
    proxy: HoldingProxy,
    kubectl: KubectlRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningOperator]:
    config = yaml.safe_load((ROOT / "operator/gpufinops/config/default.yaml").read_text())
    config["prometheus"]["timeoutSeconds"] = QUERY_TIMEOUT
    root = tmp_path_factory.mktemp("prometheus-tenants")
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    with running_operator(
        kubeconfig, root, "--config", str(root / "config.yaml"), "--namespace", "promprod-*",
        "--prometheus-url", proxy.url, "--sync-seconds", "1",
    ) as op, describe_on_timeout(lambda: _describe(kubectl, op)):  # fmt: skip
        yield op


def _describe(kubectl: KubectlRun, op: RunningOperator) -> str:
    out = []
    for ns in NAMESPACES:
        got = kubectl("get", "aiw,deployments", "-n", ns, "-o", "yaml")
        out.append(f"--- {ns}:\n{got.stdout[-3000:]}")
    out.append(f"--- operator log:\n{op.log.read_text()[-3000:]}")
    return "\n".join(out)


def _status(kubectl: KubectlRun, ns: str, name: str) -> dict[str, Any]:
    got = kubectl("get", "aiw", name, "-n", ns, "-o", "json")
    return dict(json.loads(got.stdout).get("status") or {}) if got.returncode == 0 else {}


def _condition(kubectl: KubectlRun, ns: str, name: str, ctype: str) -> dict[str, Any]:
    conditions = _status(kubectl, ns, name).get("conditions") or []
    return next((dict(c) for c in conditions if c.get("type") == ctype), {})


def _custom(name: str, target: str, queue_query: str) -> str:
    """``WORKLOAD`` as ``name`` on ``target``, reading ``queue_query``."""
    spec = yaml.safe_load(WORKLOAD)
    spec["metadata"]["name"] = name
    spec["spec"]["inference"]["targetRef"]["name"] = target
    spec["spec"]["inference"]["metrics"] = {"server": "custom", "queueQuery": queue_query}
    return yaml.safe_dump(spec)


def _rss(op: RunningOperator) -> int:
    """The operator process's resident memory, bytes."""
    for line in Path(f"/proc/{op.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _ticks(op: RunningOperator, ns: str, name: str) -> float:
    return op.metric("gpufinops_autoscaler_ticks_total", namespace=ns, workload=name)


def _stays(kubectl: KubectlRun, ns: str, replicas: int) -> bool:
    now = llm_replicas(kubectl, ns)
    assert now == replicas, f"{ns}/llm scaled to {now}, expected to stay at {replicas}"
    return True


def _hold(op: RunningOperator, ns: str, name: str, ticks: int, check: Any) -> None:
    """``check`` on every read while the workload ticks ``ticks`` more times."""
    start = _ticks(op, ns, name)
    poll_until(lambda: (check(), _ticks(op, ns, name))[1], lambda t: t >= start + ticks,
               f"{ticks} ticks of {ns}/{name}")  # fmt: skip


def test_a_custom_query_reads_only_its_namespace_and_edits_take_effect(
    operator: RunningOperator, exporter: Exporter, noisy_prometheus: str, kubectl: KubectlRun
) -> None:
    set_vllm(exporter, OTHER, waiting=2000)  # another tenant's long queue
    with PrometheusClient(noisy_prometheus, timeout=5) as client:
        wait_for(client, f'sum(vllm:num_requests_waiting{{namespace="{OTHER}"}})',
                 lambda v: v == 2000)  # fmt: skip
    ok(kubectl("apply", "-n", TENANT, "-f", "-", input=json.dumps(llm_deployment(TENANT))))
    ok(kubectl("apply", "-n", TENANT, "-f", "-",
               input=_custom("llm", "llm", "sum(vllm:num_requests_waiting)")))  # fmt: skip

    confined = f'sum(vllm:num_requests_waiting{{namespace="{TENANT}"}})'
    condition = poll(
        lambda: (
            (c := _condition(kubectl, TENANT, "llm", "MetricsAvailable")).get("status") == "False"
            and c
        ),
        "MetricsAvailable False: the confined query finds no series of the tenant's own",
    )
    assert confined in condition["message"], condition
    _hold(operator, TENANT, "llm", 5, partial(_stays, kubectl, TENANT, 1))
    assert "2000" not in json.dumps(_status(kubectl, TENANT, "llm"))
    assert _condition(kubectl, TENANT, "llm", "Ready").get("reason") == "MetricsUnavailable"

    set_vllm(exporter, TENANT, waiting=2000)  # its own long queue
    poll(lambda: llm_replicas(kubectl, TENANT) == 6, "the tenant's own queue scaling it to 6")

    # Edited to read no queue at all: used from the next ticks on, without a restart.
    edited = {"spec": {"inference": {"metrics": {
        "queueQuery": "sum(vllm:num_requests_waiting) * 0"}}}}  # fmt: skip
    patched = time.monotonic()
    ok(kubectl("patch", "aiw", "llm", "-n", TENANT, "--type=merge", "-p", json.dumps(edited)))
    reason = poll(
        lambda: (
            (r := _status(kubectl, TENANT, "llm")["lastDecision"]["reason"]).startswith("queue 0 ")
            and r
        ),
        "the edited query's queue (0) in lastDecision",
    )
    took = time.monotonic() - patched
    print(f"edited queueQuery in effect after {took:.1f}s (sync period 1s): {reason}")


def test_a_query_matching_100000_series_is_refused_while_read(
    operator: RunningOperator, noisy_prometheus: str, kubectl: KubectlRun
) -> None:
    with PrometheusClient(noisy_prometheus, timeout=30) as client:
        wait_for(client, f"count({NOISE})", lambda v: v == NOISE_SERIES, deadline=150)
    _hold(operator, TENANT, "llm", 3, lambda: True)  # settled since the last test
    baseline = _rss(operator)
    replicas = llm_replicas(kubectl, TENANT)
    refused = operator.metric("gpufinops_prometheus_answers_refused_total", kind="instant")
    hostile = {"spec": {"inference": {"metrics": {"queueQuery": f'{{__name__=~"{NOISE}|x"}}'}}}}
    ok(kubectl("patch", "aiw", "llm", "-n", TENANT, "--type=merge", "-p", json.dumps(hostile)))

    condition = poll(
        lambda: (
            (c := _condition(kubectl, TENANT, "llm", "MetricsAvailable")).get("status") == "False"
            and "more than one series" in c.get("message", "")
            and c
        ),
        "MetricsAvailable False: more than one series",
    )
    peak = baseline
    start = _ticks(operator, TENANT, "llm")
    while _ticks(operator, TENANT, "llm") < start + 10:  # ten refused reads
        peak = max(peak, _rss(operator))
        time.sleep(0.2)  # sampling memory, not synchronising: the tick count decides
    grown = peak - baseline
    print(f"RSS baseline {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB over ten "
          f"refused reads of {NOISE_SERIES} series (+{grown / 2**20:.1f} MiB)")  # fmt: skip
    assert grown < 50 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB"
    assert operator.metric("gpufinops_prometheus_answers_refused_total", kind="instant") > refused
    assert llm_replicas(kubectl, TENANT) == replicas  # held, never scaled to zero
    assert "inference-gateway" not in condition["message"]
    # The tenant's status shows its query, not the series it matched.
    assert "inference-gateway" not in json.dumps(_status(kubectl, TENANT, "llm"))


def test_a_tenant_whose_queries_hang_does_not_hold_back_another(
    operator: RunningOperator,
    exporter: Exporter,
    proxy: HoldingProxy,
    kubectl: KubectlRun,
) -> None:
    pod = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
           "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}]}  # fmt: skip
    for i in range(SLOW_WORKLOADS):
        name = f"slow-{i}"
        ok(kubectl("apply", "-n", SLOW, "-f", "-",
                   input=json.dumps(deployment_manifest(name, SLOW, pod))))  # fmt: skip
        ok(kubectl("apply", "-n", SLOW, "-f", "-",
                   input=_custom(name, name, f"sum({MARKER})")))  # fmt: skip
    poll(lambda: proxy.held >= 1, "a slow tenant's query held by Prometheus")
    assert proxy.first_held is not None
    hung_until = proxy.first_held + QUERY_TIMEOUT

    # Another tenant's workload on its long queue (set by the first test).
    set_vllm(exporter, OTHER, waiting=2000)
    ok(kubectl("apply", "-n", OTHER, "-f", "-", input=json.dumps(llm_deployment(OTHER))))
    created = time.monotonic()
    ok(kubectl("apply", "-n", OTHER, "-f", "-", input=WORKLOAD))
    poll(lambda: llm_replicas(kubectl, OTHER) > 1, "the other tenant scaling up")
    scaled = time.monotonic()
    held = proxy.held
    print(f"other tenant scaled up {scaled - created:.1f}s after its workload was created, "
          f"while {held} of the slow tenant's queries were held "
          f"({hung_until - scaled:.1f}s before the first could time out)")  # fmt: skip
    assert scaled < hung_until, "the other tenant waited for the slow tenant's queries"
    assert held == 1, f"{held} queries of one namespace in flight; its share is 1"
