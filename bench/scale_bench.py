"""The operator at scale: N Inference workloads and M GPU nodes on a real control plane.

Run: ``.venv/bin/python bench/scale_bench.py [--workloads 2000] [--nodes 1000]``
(comma-separated lists, e.g. ``--workloads 1000,2000 --nodes 500,1000``, measure
growing sizes on one cluster).

A ``LocalCluster`` (etcd, kube-apiserver, controller-manager, scheduler, KWOK,
Prometheus) runs in a temporary directory. The benchmark adds M fake GPU nodes
across the local pools, N namespaced Deployments with an Inference AIWorkload
each, and one exporter serving every workload's vLLM series, scraped by the
cluster's Prometheus. ``gpufinops run --sync-seconds 15`` then runs as a child
process, once per mode:

- ``batched``: as shipped (one instant query per preset metric for all workloads);
- ``per-workload``: ``GPUFINOPS_PER_WORKLOAD_QUERIES=1``, each workload sending its
  own queries, the baseline the batching is measured against.

Deployments keep 0 replicas and workloads run in ``Recommend`` mode, so every
tick reads its signals, decides and reports, but no pod is created: on two
cores, thousands of KWOK pods would measure the scheduler and controller-manager
instead of the operator. Forecasting is off unless ``--forecast``: the demand
history is per workload either way (one range query per workload per minute).
The cost loop's interval is raised to an hour (``--cost-interval``) so that its
passes (two batched queries each, and a status write per workload on its first
pass when the status is new) stay out of the window.

``--shards 2`` (or 4, 8; ``--shards 1,2`` runs both) splits the workloads between
that many operator instances by label selector (``gpufinops run --selector``, every
workload carries ``gpufinops.dev/shard``), only the first with node duties: the
way past one instance's limits described in ``docs/deploy.md`` ("Sharding"). Ticks,
latencies and queries are summed over the instances; RSS is given per instance.

After every workload has ticked once and Kopf has handled every creation (its
own PATCHes of AIWorkloads have stopped), a window of ``--window`` seconds is
measured from counters read at its start and end: the operator's own
``/metrics`` (ticks and ``gpufinops_decision_seconds``), its RSS and CPU from
``/proc``, the API server's ``apiserver_request_total`` by verb and resource (less
the rate measured before the operator started: KWOK's heartbeats, controllers)
and Prometheus' ``prometheus_http_requests_total`` of the query endpoints, next
to the operator's own ``gpufinops_prometheus_queries_total`` by kind. The load
average is printed with each window: on a shared machine, contention distorts
tick figures.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))

from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402

from gpufinops.api.resource import GROUP, PLURAL, VERSION  # noqa: E402
from gpufinops.demo.exposition import Exporter  # noqa: E402
from gpufinops.localcluster import LocalCluster  # noqa: E402
from gpufinops.localcluster import nodes as fake_nodes  # noqa: E402

SYNC_SECONDS = 15.0
WORKLOADS_PER_NAMESPACE = 50
HASH = "7d9f8c6b5"
CLK_TCK = os.sysconf("SC_CLK_TCK")
OPERATOR_RESOURCES = ("aiworkloads", "aiworkloads/status", "events", "deployments/scale")
"""What the operator writes, and reads besides its watches."""
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.inf)


# ------------------------------------------------------------------ reading metrics


def parse(text: str, wanted: tuple[str, ...]) -> list[tuple[str, dict[str, str], float]]:
    """Samples of the exposition ``text`` whose names start with one of ``wanted``."""
    out = []
    for line in text.splitlines():
        if not line.startswith(wanted):
            continue
        found = _SAMPLE.match(line)
        if found is None:
            continue
        labels = dict(_LABEL.findall(found.group(2) or ""))
        out.append((found.group(1), labels, float(found.group(3))))
    return out


def fetch(url: str, **kwargs: Any) -> str:
    response = requests.get(url, timeout=60, **kwargs)
    response.raise_for_status()
    return response.text


@dataclass
class ApiServer:
    """The API server's own metrics endpoint, read with the admin token."""

    url: str
    token: str
    ca_file: str

    def requests_by(self) -> dict[tuple[str, str], float]:
        text = fetch(
            f"{self.url}/metrics",
            headers={"Authorization": f"Bearer {self.token}"},
            verify=self.ca_file,
        )
        counts: dict[tuple[str, str], float] = {}
        for _, labels, value in parse(text, ("apiserver_request_total{",)):
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            key = (labels.get("verb", ""), resource)
            counts[key] = counts.get(key, 0.0) + value
            if labels.get("code") == "409":  # conflicts also on their own line
                conflict = (key[0], f"{resource} (409)")
                counts[conflict] = counts.get(conflict, 0.0) + value
        return counts

    def creation_handled(self, deadline: float = 600.0) -> float:
        """Wait until Kopf has handled every object's creation; the seconds it took.

        Kopf marks each new AIWorkload handled with PATCHes of its own; while they
        go on, status writes conflict with them and Events are posted, which is
        start-up, not the steady state the window is meant to measure.
        """
        started = time.monotonic()
        before = self.requests_by().get(("PATCH", "aiworkloads"), 0.0)
        while time.monotonic() - started < deadline:
            time.sleep(SYNC_SECONDS)
            after = self.requests_by().get(("PATCH", "aiworkloads"), 0.0)
            if (after - before) / SYNC_SECONDS < 0.5:
                return time.monotonic() - started
            before = after
        print(f"# warning: Kopf still handling creations after {deadline:.0f} s; the window "
              "below includes start-up writes", flush=True)  # fmt: skip
        return time.monotonic() - started


def apiserver_of(kubeconfig: Path, tmp: Path) -> ApiServer:
    data = yaml.safe_load(kubeconfig.read_text())
    cluster = data["clusters"][0]["cluster"]
    ca_file = tmp / "ca.crt"
    ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return ApiServer(cluster["server"], data["users"][0]["user"]["token"], str(ca_file))


def prometheus_queries(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for _, labels, value in parse(fetch(f"{url}/metrics"), ("prometheus_http_requests_total{",)):
        handler = labels.get("handler", "")
        if handler in ("/api/v1/query", "/api/v1/query_range"):
            counts[handler] = counts.get(handler, 0.0) + value
    return counts


@dataclass
class OperatorSample:
    ticks: dict[tuple[str, str], float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)
    seconds_sum: float = 0.0
    queries: dict[str, float] = field(default_factory=dict)
    """``gpufinops_prometheus_queries_total`` by kind."""


def operator_sample(url: str) -> OperatorSample:
    sample = OperatorSample()
    text = fetch(url)
    wanted = (
        "gpufinops_autoscaler_ticks_total{",
        "gpufinops_decision_seconds_",
        "gpufinops_prometheus_queries_total{",
    )
    for name, labels, value in parse(text, wanted):
        if name == "gpufinops_prometheus_queries_total":
            sample.queries[labels["kind"]] = value
        elif name == "gpufinops_autoscaler_ticks_total":
            if labels.get("outcome") == "decided":
                sample.ticks[(labels["namespace"], labels["workload"])] = value
        elif name == "gpufinops_decision_seconds_bucket":
            le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            sample.buckets[le] = sample.buckets.get(le, 0.0) + value
        elif name == "gpufinops_decision_seconds_sum":
            sample.seconds_sum += value
    return sample


def quantile(buckets: dict[float, float], q: float) -> float:
    """``histogram_quantile`` over cumulative bucket counts (linear within a bucket)."""
    bounds = sorted(buckets)
    total = buckets[math.inf]
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def proc_stats(pid: int) -> tuple[float, float]:
    """RSS in MB and CPU seconds (user + system) of ``pid``."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return rss, cpu


# ------------------------------------------------------------------ the cluster's objects


def deployment(i: int, namespace: str, pool: str) -> dict[str, Any]:
    name = f"llm-{i}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {fake_nodes.POOL_LABEL: pool},
                    "tolerations": [{**fake_nodes.KWOK_TAINT, "operator": "Equal"}],
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "resources": {"limits": {fake_nodes.GPU_RESOURCE: "1"}},
                        }
                    ],
                },
            },
        },
    }


SHARD_LABEL = f"{GROUP}/shard"
SHARDS_LABELLED = 8
"""Workloads are labelled round-robin over this many shards (``shard-0`` … ``shard-7``),
so one cluster serves runs with 1, 2, 4 or 8 operator instances."""


def workload(i: int, namespace: str, forecast: bool) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIWorkload",
        "metadata": {
            "name": f"llm-{i}",
            "namespace": namespace,
            "labels": {SHARD_LABEL: f"shard-{i % SHARDS_LABELLED}"},
        },
        "spec": {
            "type": "Inference",
            "mode": "Recommend",
            "costAllocation": {"team": f"team-{i % 7}"},
            "inference": {
                "targetRef": {"name": f"llm-{i}"},
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": {"server": "vllm", "modelName": "m"},
                "forecast": {"enabled": forecast},
            },
        },
    }


def namespace_of(i: int) -> str:
    return f"scale-{i // WORKLOADS_PER_NAMESPACE}"


def export_workload(exporter: Exporter, i: int) -> None:
    labels = {"namespace": namespace_of(i), "pod": f"llm-{i}-{HASH}-x2x4z", "model_name": "m"}
    exporter.set("vllm:num_requests_waiting", labels, float(i % 3))
    exporter.set("vllm:num_requests_running", labels, 2.0)
    exporter.set_rate("vllm:request_success_total", labels, 1.0 + (i % 5) / 10)
    exporter.set("vllm:kv_cache_usage_perc", labels, 0.3)


def parallel(jobs: list[Callable[[], object]], threads: int = 8) -> None:
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def ignore_exists(call: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        try:
            return call()
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise
            return None

    return run


class Fleet:
    """Grows the cluster's nodes, namespaces, Deployments and AIWorkloads to a size."""

    def __init__(self, kubeconfig: Path, exporter: Exporter, forecast: bool) -> None:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 16
        api = k8s.ApiClient(configuration)
        self.core, self.apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self.exporter, self.forecast = exporter, forecast
        self.pools = fake_nodes.load_pools()
        self.created = {pool.name: pool.count for pool in self.pools}  # nodes.yaml's own
        self.node_count = sum(self.created.values())
        self.workloads = 0
        self.namespaces: set[str] = set()

    def grow_nodes(self, total: int) -> None:
        weights = [pool.count for pool in self.pools]
        jobs: list[Callable[[], object]] = []
        for pool, weight in zip(self.pools, weights, strict=True):
            target = max(pool.count, round(total * weight / sum(weights)))
            start = self.created[pool.name]
            for index in range(start, target):
                body = fake_nodes.node_manifest(pool, f"{pool.name}-{index}")
                jobs.append(ignore_exists(lambda body=body: self.core.create_node(body)))
            self.created[pool.name] = max(start, target)
        parallel(jobs)
        self.node_count += len(jobs)

    def grow_workloads(self, total: int) -> None:
        pools = [pool.name for pool in self.pools]
        jobs: list[Callable[[], object]] = []
        for i in range(self.workloads, total):
            namespace = namespace_of(i)
            if namespace not in self.namespaces:
                self.namespaces.add(namespace)
                body = {"metadata": {"name": namespace}}
                ignore_exists(lambda body=body: self.core.create_namespace(body))()
            export_workload(self.exporter, i)
            dep = deployment(i, namespace, pools[i % len(pools)])
            aiw = workload(i, namespace, self.forecast)
            jobs.append(
                ignore_exists(
                    lambda dep=dep, ns=namespace: self.apps.create_namespaced_deployment(ns, dep)
                )
            )
            jobs.append(
                ignore_exists(
                    lambda aiw=aiw, ns=namespace: self.custom.create_namespaced_custom_object(
                        GROUP, VERSION, ns, PLURAL, aiw
                    )
                )
            )
        parallel(jobs)
        self.workloads = total


# ------------------------------------------------------------------ the operator


@contextmanager
def operator(
    cluster: LocalCluster,
    config: Path,
    log: Path,
    per_workload: bool,
    selector: str | None = None,
    node_duties: bool = True,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    from tests.support.promserver import free_port, http_ok

    live, port = free_port(), free_port()
    env = {**os.environ, **cluster.env()}
    if per_workload:
        env["GPUFINOPS_PER_WORKLOAD_QUERIES"] = "1"
    else:
        env.pop("GPUFINOPS_PER_WORKLOAD_QUERIES", None)
    argv = [sys.executable, "-m", "gpufinops", "run", "--config", str(config),
            "--prometheus-url", cluster.prometheus_url, "--sync-seconds", f"{SYNC_SECONDS:g}",
            "--log-format", "json", "--liveness", f"http://127.0.0.1:{live}/healthz",
            "--metrics-address", f"127.0.0.1:{port}"]  # fmt: skip
    if selector is not None:
        argv += ["--selector", selector]
    if not node_duties:
        argv.append("--no-node-duties")
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not http_ok(f"http://127.0.0.1:{live}/healthz"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"operator did not start; see {log}")
            time.sleep(0.5)
        yield proc, f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ one measurement


@dataclass
class Result:
    mode: str
    workloads: int
    nodes: int
    warmup_seconds: float
    settle_seconds: float
    window_seconds: float
    ticks: int
    ticks_min: float
    ticks_median: float
    p50: float
    p99: float
    mean_latency: float
    kept_up: bool
    rss_max_mb: float
    operator_cpu: float
    component_cpu: dict[str, float]
    prom_queries: float
    prom_ranges: float
    api_rate: dict[tuple[str, str], float]
    queries_by_kind: dict[str, float] = field(default_factory=dict)
    rss_end_mb: float = 0.0
    loadavg: tuple[str, str] = ("", "")
    instances: int = 1
    rss_per_instance: list[float] = field(default_factory=list)

    @property
    def operator_api_rate(self) -> float:
        """Requests/s on what the operator reads and writes, less the background rate."""
        return sum(
            rate
            for (verb, resource), rate in self.api_rate.items()
            if resource in OPERATOR_RESOURCES and verb != "WATCH"
        )

    def lines(self) -> list[str]:
        per_period = self.prom_queries / (self.window_seconds / SYNC_SECONDS)
        ideal = self.window_seconds / SYNC_SECONDS
        out = [
            f"## {self.mode}: {self.workloads} workloads, {self.nodes} nodes, "
            f"{self.instances} operator instance{'s' if self.instances > 1 else ''} "
            f"(window {self.window_seconds:.0f} s after a {self.warmup_seconds:.0f} s warm-up "
            f"and {self.settle_seconds:.0f} s until Kopf had handled every creation)",
            f"  ticks: {self.ticks} ({self.ticks / self.window_seconds:.1f}/s); per workload "
            f"min {self.ticks_min:.0f}, median {self.ticks_median:.0f}, ideal {ideal:.1f} "
            f"(one per {SYNC_SECONDS:g} s)",
            f"  every workload evaluated each period: {'yes' if self.kept_up else 'NO'}",
            f"  tick latency (signals + decide): p50 {self.p50 * 1e3:.1f} ms, "
            f"p99 {self.p99 * 1e3:.1f} ms, mean {self.mean_latency * 1e3:.1f} ms",
            f"  mean period per workload: {self.window_seconds / max(self.ticks_median, 1):.1f} s "
            f"(sync {SYNC_SECONDS:g} s)",
            f"  operator: RSS max {self.rss_max_mb:.0f} MB (end {self.rss_end_mb:.0f} MB), "
            f"CPU {self.operator_cpu:.2f} cores"
            + (
                " (all instances); RSS max per instance: "
                + ", ".join(f"{r:.0f} MB" for r in self.rss_per_instance)
                if self.instances > 1
                else ""
            ),
            "  CPU cores by component: "
            + ", ".join(f"{k} {v:.2f}" for k, v in self.component_cpu.items()),
            f"  Prometheus instant queries: {self.prom_queries:.0f} "
            f"({self.prom_queries / max(self.ticks, 1):.3f} per tick, {per_period:.1f} per "
            f"{SYNC_SECONDS:g} s period); range queries {self.prom_ranges:.0f}",
            "  operator's queries by kind: "
            + (
                ", ".join(
                    f"{kind} {n:.0f} ({n / max(self.ticks, 1):.3f}/tick)"
                    for kind, n in sorted(self.queries_by_kind.items())
                )
                or "none"
            ),
            f"  load average (1 min) at the window's start / end: {self.loadavg[0]} / "
            f"{self.loadavg[1]}",
            f"  API requests/s by the operator: {self.operator_api_rate:.1f} "
            f"({', '.join(OPERATOR_RESOURCES)}; watches aside)",
            "  API requests/s by verb and resource (less the rate without the operator):",
        ]
        for (verb, resource), rate in sorted(self.api_rate.items(), key=lambda kv: -kv[1]):
            if abs(rate) >= 0.05:
                out.append(f"    {verb:<7} {resource:<28} {rate:7.2f}")
        lists = {k: v for k, v in self.api_rate.items() if k[0] == "LIST"}
        pods_nodes = sum(v for (verb, r), v in lists.items() if r in ("pods", "nodes"))
        out.append(f"    LIST of pods or nodes: {max(pods_nodes, 0.0):.2f}/s")
        return out


def shard_selectors(shards: int) -> list[str | None]:
    """One label selector per operator instance, splitting the labelled shards evenly."""
    if shards == 1:
        return [None]
    if SHARDS_LABELLED % shards:
        raise SystemExit(f"--shards must divide {SHARDS_LABELLED}")
    per = SHARDS_LABELLED // shards
    return [
        f"{SHARD_LABEL} in ({','.join(f'shard-{k}' for k in range(i * per, (i + 1) * per))})"
        for i in range(shards)
    ]


def merged_sample(urls: list[str]) -> OperatorSample:
    """The instances' samples added up (their workloads are disjoint)."""
    total = OperatorSample()
    for url in urls:
        sample = operator_sample(url)
        total.ticks.update(sample.ticks)
        for bound, count in sample.buckets.items():
            total.buckets[bound] = total.buckets.get(bound, 0.0) + count
        total.seconds_sum += sample.seconds_sum
        for kind, n in sample.queries.items():
            total.queries[kind] = total.queries.get(kind, 0.0) + n
    return total


def measure(
    mode: str,
    cluster: LocalCluster,
    apiserver: ApiServer,
    fleet: Fleet,
    config: Path,
    log_dir: Path,
    window: float,
    background: dict[tuple[str, str], float],
    shards: int = 1,
) -> Result:
    pids = {k: v for k, v in cluster.pids().items() if v is not None}
    with ExitStack() as stack:
        running = [
            stack.enter_context(
                operator(
                    cluster, config,
                    log_dir / f"operator-{mode}-{fleet.workloads}-{index}of{shards}.log",
                    per_workload=(mode == "per-workload"),
                    selector=selector, node_duties=(index == 0),
                )
            )
            for index, selector in enumerate(shard_selectors(shards))
        ]  # fmt: skip
        procs, urls = [proc for proc, _ in running], [url for _, url in running]
        started = time.monotonic()
        deadline = started + max(600.0, fleet.workloads * 0.5)
        while True:
            sample = merged_sample(urls)
            if len(sample.ticks) >= fleet.workloads:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(
                    f"{mode}: only {len(sample.ticks)} of {fleet.workloads} workloads ticked "
                    f"in {time.monotonic() - started:.0f} s; see the logs in {log_dir}"
                )
            time.sleep(5)
        warmup = time.monotonic() - started
        settle = apiserver.creation_handled()
        op0, api0 = merged_sample(urls), apiserver.requests_by()
        prom0 = prometheus_queries(cluster.prometheus_url)
        cpu0 = {name: proc_stats(pid)[1] for name, pid in pids.items()}
        own0 = [proc_stats(p.pid) for p in procs]
        load0 = Path("/proc/loadavg").read_text().split()[0]
        t0 = time.monotonic()
        rss_max = [rss for rss, _ in own0]
        while time.monotonic() - t0 < window:
            time.sleep(min(5.0, window - (time.monotonic() - t0)))
            rss_max = [max(m, proc_stats(p.pid)[0]) for m, p in zip(rss_max, procs, strict=True)]
        elapsed = time.monotonic() - t0
        load1 = Path("/proc/loadavg").read_text().split()[0]
        own1 = [proc_stats(p.pid) for p in procs]
        cpu1 = {name: proc_stats(pid)[1] for name, pid in pids.items()}
        prom1 = prometheus_queries(cluster.prometheus_url)
        api1 = apiserver.requests_by()
        op1 = merged_sample(urls)
    rss_max = [max(m, rss) for m, (rss, _) in zip(rss_max, own1, strict=True)]
    per_workload = [op1.ticks.get(k, 0.0) - op0.ticks.get(k, 0.0) for k in op1.ticks]
    buckets = {b: op1.buckets.get(b, 0.0) - op0.buckets.get(b, 0.0) for b in op1.buckets}
    ticks = int(sum(per_workload))
    # Periods run start to start; 10 % of slack covers the window's edges and a tick
    # that overran its period.
    kept_up = min(per_workload) >= math.floor(elapsed / (SYNC_SECONDS * 1.1))
    api_rate = {
        key: (api1.get(key, 0.0) - api0.get(key, 0.0)) / elapsed - background.get(key, 0.0)
        for key in set(api1) | set(background)
    }
    return Result(
        mode=mode,
        workloads=fleet.workloads,
        nodes=fleet.node_count,
        warmup_seconds=warmup,
        settle_seconds=settle,
        window_seconds=elapsed,
        ticks=ticks,
        ticks_min=min(per_workload),
        ticks_median=statistics.median(per_workload),
        p50=quantile(buckets, 0.5),
        p99=quantile(buckets, 0.99),
        mean_latency=(op1.seconds_sum - op0.seconds_sum) / max(ticks, 1),
        kept_up=kept_up,
        rss_max_mb=max(rss_max),
        operator_cpu=sum(c1 - c0 for (_, c0), (_, c1) in zip(own0, own1, strict=True)) / elapsed,
        component_cpu={name: (cpu1[name] - cpu0[name]) / elapsed for name in cpu1},
        prom_queries=prom1.get("/api/v1/query", 0.0) - prom0.get("/api/v1/query", 0.0),
        prom_ranges=prom1.get("/api/v1/query_range", 0.0) - prom0.get("/api/v1/query_range", 0.0),
        api_rate=api_rate,
        queries_by_kind={kind: n - op0.queries.get(kind, 0.0) for kind, n in op1.queries.items()},
        rss_end_mb=max(rss for rss, _ in own1),
        loadavg=(load0, load1),
        instances=shards,
        rss_per_instance=rss_max,
    )


def background_rate(apiserver: ApiServer, seconds: float) -> dict[tuple[str, str], float]:
    """API requests/s without the operator: KWOK's node heartbeats, the controllers."""
    before = apiserver.requests_by()
    time.sleep(seconds)
    after = apiserver.requests_by()
    return {key: (value - before.get(key, 0.0)) / seconds for key, value in after.items()}


def wait_scraped(url: str, workloads: int) -> None:
    query = urllib.parse.quote("count(rate(vllm:request_success_total[1m]))")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/v1/query?query={query}", timeout=30) as answer:
            result = json.load(answer)["data"]["result"]
        if result and int(float(result[0]["value"][1])) >= workloads:
            return
        time.sleep(2)
    raise SystemExit("Prometheus never scraped every workload's series")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="2000", help="sizes, comma-separated")
    parser.add_argument("--nodes", default="1000", help="node counts, one per size")
    parser.add_argument("--window", type=float, default=120.0, help="seconds measured per mode")
    parser.add_argument("--modes", default="batched,per-workload")
    parser.add_argument("--forecast", action="store_true", help="enable forecasting")
    parser.add_argument(
        "--shards",
        default="1",
        help="operator instances per mode, comma-separated runs (e.g. 1,2): each serves "
        "an equal share of the workloads by label selector; only the first has node duties",
    )
    parser.add_argument(
        "--cost-interval", type=float, default=3600.0, help="the cost loop's interval, seconds"
    )
    parser.add_argument("--keep", type=Path, help="keep the cluster state and logs here")
    args = parser.parse_args()
    sizes = [int(n) for n in args.workloads.split(",")]
    node_counts = [int(n) for n in args.nodes.split(",")]
    if len(node_counts) != len(sizes):
        parser.error("--nodes needs one count per --workloads size")
    modes = args.modes.split(",")
    shard_counts = [int(n) for n in args.shards.split(",")]
    for shards in shard_counts:
        shard_selectors(shards)  # refuse a count that does not divide the labelled shards
    urllib3.disable_warnings()

    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        cluster = LocalCluster(tmp / "cluster", log=print)
        exporter = Exporter().start()
        results: list[Result] = []
        try:
            cluster.up()
            targets = cluster.prometheus_targets_dir / "scale-bench.json"
            targets.write_text(json.dumps([{"targets": [exporter.target]}]))
            config = yaml.safe_load((ROOT / "operator/gpufinops/config/default.yaml").read_text())
            config.setdefault("cost", {})["intervalSeconds"] = args.cost_interval
            config_file = tmp / "operator.yaml"
            config_file.write_text(yaml.safe_dump(config))
            apiserver = apiserver_of(cluster.kubeconfig, tmp)
            fleet = Fleet(cluster.kubeconfig, exporter, args.forecast)
            for size, node_count in zip(sizes, node_counts, strict=True):
                started = time.monotonic()
                fleet.grow_nodes(node_count)
                fleet.grow_workloads(size)
                wait_scraped(cluster.prometheus_url, size)
                print(f"# {size} workloads, {fleet.node_count} nodes created and scraped in "
                      f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
                background = background_rate(apiserver, 30.0)
                for mode in modes:
                    for shards in shard_counts:
                        result = measure(
                            mode, cluster, apiserver, fleet, config_file, tmp, args.window,
                            background, shards,
                        )  # fmt: skip
                        results.append(result)
                        print("\n".join(result.lines()), flush=True)
        finally:
            exporter.stop()
            if args.keep is None:
                cluster.down()
    batched = {r.workloads: r for r in results if r.mode == "batched" and r.instances == 1}
    for r in results:
        base = batched.get(r.workloads)
        if r.mode == "per-workload" and r.instances == 1 and base is not None and base.prom_queries:
            print(f"# {r.workloads} workloads: per-workload / batched instant queries = "
                  f"{r.prom_queries / base.prom_queries:.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
