"""One demo run on the local cluster: bring everything up, show it, take it all down.

Each thing started is registered on a stack as it starts, and the stack is
unwound in reverse whatever ends the run (``q``, Ctrl-C, SIGTERM, the
``--duration``, an error), so the demo never leaves an operator, an exporter or
a control plane running behind it. A cluster that was already up when the
demo began is not the demo's: it is left running, with the demo's objects removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import TextIO

import yaml
from kubernetes import config as kube_config

from gpufinops.adapters.prometheus.client import PrometheusClient
from gpufinops.demo.exposition import Exporter
from gpufinops.demo.history import PastLoad, demand_history
from gpufinops.demo.loadgen import LoadGenerator, target_of
from gpufinops.demo.operator_process import OperatorProcess
from gpufinops.demo.provisioner import Provisioner
from gpufinops.demo.screen import Screen
from gpufinops.demo.shape import load_shape
from gpufinops.demo.snapshot import Notes
from gpufinops.localcluster import ClusterError, LocalCluster, load_pools
from gpufinops.localcluster.binaries import REPO_ROOT
from gpufinops.localcluster.nodes import render as render_nodes

NAMESPACE = "gpufinops-demo"
MANIFESTS = (
    REPO_ROOT / "examples" / "demo",
    REPO_ROOT / "examples" / "experiment-notebook.yaml",
    REPO_ROOT / "examples" / "training-spot.yaml",
)
"""The demo's two Inference workloads (tuned for a compressed day) and the
notebook and training examples as they are."""
DEFAULT_TRACES = REPO_ROOT.parent / "shared" / "traces"
IDLE_SHUTDOWN = {
    "enabled": True,
    "idleAfterSeconds": 60,
    "intervalSeconds": 5,
    "maxNodesPerInterval": 1,
    "drainTimeoutSeconds": 60,
    "dryRun": False,
}
"""Idle nodes go after a minute (a day lasts ten), for real: the nodes are fake."""


@dataclass
class DemoOptions:
    state_dir: Path
    traces_dir: Path = DEFAULT_TRACES
    duration: float | None = None
    day_seconds: int = 600
    start_hour: float = 6.0
    refresh: float = 2.0
    sync_seconds: float = 3.0
    keep_cluster: bool = False
    out: TextIO | None = None


def operator_config(prometheus_url: str) -> str:
    """The packaged default config with the local Prometheus and demo idle timings."""
    text = resources.files("gpufinops.config").joinpath("default.yaml").read_text()
    data = yaml.safe_load(text)
    data["prometheus"] = {**data.get("prometheus", {}), "url": prometheus_url}
    data["idleShutdown"] = IDLE_SHUTDOWN
    return yaml.safe_dump(data, sort_keys=False)


class Ticker:
    """Calls ``tick(now)`` every ``period`` seconds in a thread until stopped."""

    def __init__(self, period: float, tick: Callable[[float], None], notes: Notes) -> None:
        self._stop = threading.Event()
        self._period, self._tick, self._notes = period, tick, notes
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self._tick(time.monotonic())
            except Exception as exc:  # a background thread must outlive a bad read
                self._notes.add(f"cluster read failed, retrying: {exc}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def interrupts_then_calm() -> Iterator[None]:
    """SIGTERM (``kill``, a CI timeout) and SIGHUP (the terminal closed) end the demo
    like Ctrl-C, through the cleanup: the control plane runs in its own sessions and
    would otherwise outlive the demo. The handlers in place before are restored at
    the end, after the cleanup (which runs with all three ignored)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)


def run_demo(options: DemoOptions) -> int:
    """Run the demo until ``q``, Ctrl-C, SIGTERM or ``duration``; 0 unless it failed."""
    started = time.monotonic()
    out = options.out or sys.stdout
    cluster = LocalCluster(options.state_dir, log=lambda msg: _say(out, f"  {msg}"))
    stopped: list[str] = []
    screen: Screen | None = None
    code = 0
    with interrupts_then_calm(), contextlib.ExitStack() as stack:
        try:
            screen = _bring_up(stack, cluster, options, out, stopped)
            screen.started = started
            screen.run(refresh=options.refresh, duration=options.duration)
        except KeyboardInterrupt:
            _say(out, "stopping ...")
        except ClusterError as exc:
            _say(out, f"error: {exc}\n(logs in {cluster.log_dir})")
            code = 1
        finally:
            # A second Ctrl-C must not cut the cleanup short and strand processes.
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
    if screen is not None:
        screen.print_summary()
    _say(out, "stopped: " + ", ".join(stopped) if stopped else "nothing was started")
    return code


def _say(out: TextIO, message: str) -> None:
    print(message, file=out, flush=True)


def _bring_up(
    stack: contextlib.ExitStack,
    cluster: LocalCluster,
    options: DemoOptions,
    out: TextIO,
    stopped: list[str],
) -> Screen:
    """Start everything, each part's stop registered on ``stack`` as soon as it runs."""
    notes = Notes()
    added_nodes: list[str] = []
    ours = all(pid is None for pid in cluster.pids().values())
    _say(out, f"starting the local cluster in {cluster.state_dir} ...")
    if ours:
        stack.callback(_down, cluster, options.keep_cluster, stopped)
    cluster.up()
    if not ours:
        stack.callback(_restore_cluster, cluster, added_nodes, stopped)
    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    stack.callback(api.close)
    exporter = Exporter().start()
    stack.callback(_stop_exporter, exporter, cluster, stopped)
    _add_scrape_target(cluster, exporter.target)
    _apply_manifests(cluster)
    _backfill_history(cluster, options, notes, out)
    config = cluster.state_dir / "demo" / "operator.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(operator_config(cluster.prometheus_url))
    operator = OperatorProcess(
        ["--config", str(config), "--prometheus-url", cluster.prometheus_url,
         "--sync-seconds", str(options.sync_seconds)],
        {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        cluster.log_dir / "operator.log",
    )  # fmt: skip
    operator.start()
    stack.callback(_stop_operator, operator, stopped)
    _say(out, f"operator pid {operator.pid}, log {operator.log}")
    generator = LoadGenerator(
        api, exporter, NAMESPACE, options.traces_dir, day_seconds=options.day_seconds,
        start_hour=options.start_hour, note=notes.add,
    )  # fmt: skip
    generator.start()
    stack.callback(_stop_thread, generator.stop, "load generator", stopped)
    provisioner = Provisioner(api, NAMESPACE, load_pools(), notes.add, added_nodes)
    ticker = Ticker(2.0, provisioner.tick, notes)
    ticker.start()
    stack.callback(_stop_thread, ticker.stop, "node provisioner", stopped)
    prometheus = PrometheusClient(cluster.prometheus_url, timeout=2)
    stack.callback(prometheus.close)
    return Screen(
        api, NAMESPACE, prometheus, generator, operator, notes, out=out,
        cluster=f"local, {cluster.state_dir}", pools=load_pools(),
        day_seconds=options.day_seconds, started=time.monotonic(),
    )  # fmt: skip


HISTORY_DAYS = 8.0
"""A week for the forecaster's default window, and a day more for its seasonal lag."""


def _backfill_history(
    cluster: LocalCluster, options: DemoOptions, notes: Notes, out: TextIO
) -> None:
    """The demo Deployments' past days of load, so the forecaster is ready from the first
    minutes instead of after a day and a half of demo (``demo/history.py``)."""
    loads = []
    for path in sorted((REPO_ROOT / "examples" / "demo").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
            target = target_of(
                NAMESPACE, str(meta.get("name")), meta.get("annotations") or {},
                (spec.get("selector") or {}).get("matchLabels") or {},
            )  # fmt: skip
            if target is None:
                continue
            shape, _ = load_shape(options.traces_dir, target.trace, target.day, options.day_seconds)
            loads.append(PastLoad(target, shape))
    if not loads:
        return
    _say(out, f"writing {HISTORY_DAYS:g} days of past load into Prometheus (promtool) ...")
    text = demand_history(loads, now=time.time(), days=HISTORY_DAYS, start_hour=options.start_hour)
    cluster.backfill(text)
    notes.add(f"{HISTORY_DAYS:g} days of past load backfilled: forecasts from the first minutes")


def _apply_manifests(cluster: LocalCluster) -> None:
    namespace = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"
    done = cluster.kubectl("apply", "-f", "-", input=namespace)
    if done.returncode != 0:
        raise ClusterError(f"creating namespace {NAMESPACE}: {done.stderr.strip()}")
    for path in MANIFESTS:
        done = cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(path))
        if done.returncode != 0:
            raise ClusterError(f"kubectl apply -f {path}: {done.stderr.strip()}")


def _add_scrape_target(cluster: LocalCluster, target: str) -> None:
    """List the exporter for Prometheus' file discovery; reload a Prometheus that was
    started before the config knew about target files."""
    targets = cluster.prometheus_targets_dir
    targets.mkdir(parents=True, exist_ok=True)
    entry = [{"targets": [target], "labels": {"job": "demo-vllm"}}]
    (targets / "demo.json").write_text(json.dumps(entry))
    request = urllib.request.Request(f"{cluster.prometheus_url}/-/reload", method="POST")
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=5).close()


def _stop_thread(stop: Callable[[], None], name: str, stopped: list[str]) -> None:
    stop()
    stopped.append(name)


def _stop_operator(operator: OperatorProcess, stopped: list[str]) -> None:
    operator.stop()
    stopped.append(f"operator (pid {operator.pid})")


def _stop_exporter(exporter: Exporter, cluster: LocalCluster, stopped: list[str]) -> None:
    (cluster.prometheus_targets_dir / "demo.json").unlink(missing_ok=True)
    exporter.stop()
    stopped.append("exporter")


def _restore_cluster(cluster: LocalCluster, added: list[str], stopped: list[str]) -> None:
    """On a cluster the demo did not start: remove its namespace and the nodes it added,
    and bring back the pools' nodes that idle shutdown removed; keep the cluster."""
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    if added:
        cluster.kubectl("delete", "node", "--ignore-not-found", *added)
    cluster.kubectl("apply", "-f", "-", input=render_nodes(load_pools()))
    stopped.append(f"namespace {NAMESPACE}, nodes restored (the cluster was running: left up)")


def _down(cluster: LocalCluster, keep: bool, stopped: list[str]) -> None:
    if keep:
        stopped.append(f"nothing else: cluster kept running in {cluster.state_dir}")
        return
    cluster.down()
    stopped.append(f"cluster in {cluster.state_dir}")
