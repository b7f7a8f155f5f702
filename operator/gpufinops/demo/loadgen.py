"""The load generator: replays each demo Deployment's load into its fake vLLM pods.

Which Deployments get load, and how much, is declared on them, so the demo's
manifests say everything about the scenario (``examples/demo/``):

- ``demo.gpufinops.dev/trace``: a trace file in the traces folder, e.g.
  ``azure-2024-conversation-10s.csv``; ``demo.gpufinops.dev/trace-day``: its day;
- ``demo.gpufinops.dev/peak-rps``: arrivals at the day's peak, requests/s;
- ``demo.gpufinops.dev/replica-rps``: what one ready replica completes per second;
- ``demo.gpufinops.dev/model``: the ``model_name`` label of the series.

Every second the generator reads the Deployment's ready pods from the cluster,
advances its :class:`QueueModel` and publishes one set of vLLM series per pod,
labelled ``namespace``/``pod``/``model_name`` as a PodMonitor would label them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from gpufinops.demo.exposition import Exporter
from gpufinops.demo.kube import condition_true, get, items
from gpufinops.demo.queue import PodSample, QueueModel
from gpufinops.demo.shape import LoadShape, load_shape
from gpufinops.sim.traces import Trace

PREFIX = "demo.gpufinops.dev/"
DISCOVER_SECONDS = 10.0


@dataclass(frozen=True)
class DemoTarget:
    """A Deployment the generator sends load to, from its annotations."""

    namespace: str
    name: str
    selector: str
    trace: str
    day: int
    peak_rps: float
    replica_rps: float
    model: str


def target_of(
    namespace: str, name: str, annotations: Mapping[str, str], match_labels: Mapping[str, str]
) -> DemoTarget | None:
    """The target a Deployment declares, or None when it has no (valid) demo annotations."""
    if PREFIX + "trace" not in annotations or not match_labels:
        return None
    try:
        return DemoTarget(
            namespace=namespace,
            name=name,
            selector=",".join(f"{k}={v}" for k, v in sorted(match_labels.items())),
            trace=annotations[PREFIX + "trace"],
            day=int(annotations.get(PREFIX + "trace-day", "0")),
            peak_rps=float(annotations.get(PREFIX + "peak-rps", "10")),
            replica_rps=float(annotations.get(PREFIX + "replica-rps", "2")),
            model=annotations.get(PREFIX + "model", name),
        )
    except ValueError:
        return None


@dataclass(frozen=True)
class LoadReport:
    """What the generator did for one Deployment in its last tick, for the screen."""

    offered_rps: float
    ready: int
    waiting: float
    shape: str
    real: bool
    hour: float


def publish(exporter: Exporter, target: DemoTarget, pod: str, sample: PodSample) -> None:
    """One pod's vLLM series, under vLLM's metric names."""
    labels = {"namespace": target.namespace, "pod": pod, "model_name": target.model}
    exporter.set("vllm:num_requests_waiting", labels, sample.waiting)
    exporter.set("vllm:num_requests_running", labels, sample.running)
    exporter.set("vllm:kv_cache_usage_perc", labels, sample.kv_cache)
    for name, value in (
        ("vllm:request_success_total", sample.success_total),
        ("vllm:prompt_tokens_total", sample.prompt_tokens_total),
        ("vllm:generation_tokens_total", sample.generation_tokens_total),
    ):
        exporter.set(name, labels, value, kind="counter")


class LoadGenerator:
    """Drives the queue models from the cluster's ready pods, once a second, in a thread."""

    def __init__(
        self,
        api: client.ApiClient,
        exporter: Exporter,
        namespace: str,
        traces_dir: Path,
        *,
        day_seconds: int,
        start_hour: float,
        note: Callable[[str], None],
    ) -> None:
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.exporter = exporter
        self.namespace = namespace
        self.traces_dir = traces_dir
        self.day_seconds = day_seconds
        self.start_hour = start_hour
        self.note = note
        self.targets: dict[str, tuple[DemoTarget, QueueModel, LoadShape]] = {}
        self.reports: dict[str, LoadReport] = {}
        self._pods: dict[str, set[str]] = {}
        self._traces: dict[str, Trace] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-generator", daemon=True)
        self._started = 0.0
        self._last_tick = 0.0
        self._last_discovery = -DISCOVER_SECONDS

    def start(self) -> None:
        self._started = self._last_tick = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def snapshot(self) -> dict[str, LoadReport]:
        with self._lock:
            return dict(self.reports)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.tick(time.monotonic())
            except Exception as exc:  # a background thread must outlive a bad read
                self.note(f"load generator: cluster read failed, retrying: {exc}")

    def tick(self, now: float) -> None:
        if now - self._last_discovery >= DISCOVER_SECONDS:
            self._discover()
            self._last_discovery = now
        dt, self._last_tick = now - self._last_tick, now
        elapsed = now - self._started
        for name, (target, model, shape) in list(self.targets.items()):
            pods = self._ready_pods(target)
            rate = target.peak_rps * shape.at(elapsed, self.start_hour)
            samples = model.step(rate, pods, dt)
            for gone in self._pods.get(name, set()) - set(pods):
                self.exporter.remove_matching({"namespace": target.namespace, "pod": gone})
            self._pods[name] = set(pods)
            for pod, sample in samples.items():
                publish(self.exporter, target, pod, sample)
            report = LoadReport(rate, len(pods), model.waiting, shape.name, shape.real,
                                shape.hour_of_day(elapsed, self.start_hour))  # fmt: skip
            with self._lock:
                self.reports[name] = report

    def _discover(self) -> None:
        for item in items(self.apps.list_namespaced_deployment, self.namespace):
            name = str(get(item, "metadata", "name"))
            labels = get(item, "spec", "selector", "matchLabels") or {}
            annotations = get(item, "metadata", "annotations") or {}
            target = target_of(self.namespace, name, annotations, labels)
            if target is None or name in self.targets:
                continue
            shape, why_not = load_shape(
                self.traces_dir, target.trace, target.day, self.day_seconds, self._traces
            )
            if why_not:
                self.note(f"{name}: replaying a {shape.name} ({why_not})")
            else:
                self.note(f"{name}: replaying {shape.name}, a day in {self.day_seconds}s")
            self.targets[name] = (target, QueueModel(target.replica_rps), shape)

    def _ready_pods(self, target: DemoTarget) -> list[str]:
        pods = items(
            self.core.list_namespaced_pod, target.namespace, label_selector=target.selector
        )
        return sorted(
            str(get(pod, "metadata", "name"))
            for pod in pods
            if get(pod, "metadata", "deletionTimestamp") is None
            and get(pod, "status", "phase") == "Running"
            and condition_true(pod, "Ready")
        )
