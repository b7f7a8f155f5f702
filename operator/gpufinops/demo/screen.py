"""The live screen: collect a snapshot, draw it, wait for ``q`` or the next refresh.

It also keeps what the summary at the end reports (replicas seen per workload,
operator Events by reason), so a non-interactive run (CI, ``--duration``)
ends with a few lines that say whether the operator did its job.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TextIO

from kubernetes import client

from gpufinops.adapters.prometheus.client import PrometheusClient
from gpufinops.demo import collect
from gpufinops.demo.loadgen import LoadGenerator, LoadReport
from gpufinops.demo.operator_process import OperatorProcess
from gpufinops.demo.snapshot import EventRow, Notes, PoolRow, Snapshot, WorkloadRow
from gpufinops.demo.terminal import (
    ENTER_ALT_SCREEN,
    LEAVE_ALT_SCREEN,
    is_interactive,
    keypresses,
)
from gpufinops.demo.view import ansi_screen, plain_block, render
from gpufinops.localcluster import NodePool

PLAIN_REFRESH = 10.0
"""Seconds between blocks when the output is a log, not a screen."""
FOOTER = "q or Ctrl-C: stop everything and exit"


def load_text(reports: dict[str, LoadReport], day_seconds: int) -> str:
    """Where each Deployment's load comes from and which hour of its day it is."""
    if not reports:
        return "starting the load generator ..."
    parts = [
        f"{name}: {r.shape}{'' if r.real else ' (no trace found)'} at {int(r.hour):02d}:"
        f"{int(r.hour % 1 * 60):02d}"
        for name, r in sorted(reports.items())
    ]
    return "; ".join(parts) + f" (a day every {day_seconds}s)"


class Screen:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        prometheus: PrometheusClient | None,
        generator: LoadGenerator | None,
        operator: OperatorProcess,
        notes: Notes,
        *,
        out: TextIO,
        cluster: str,
        pools: list[NodePool],
        day_seconds: int,
        started: float,
    ) -> None:
        self.api, self.namespace, self.prometheus = api, namespace, prometheus
        self.generator, self.operator, self.notes = generator, operator, notes
        self.out, self.cluster, self.day_seconds = out, cluster, day_seconds
        self.pools = {p.name: p.capacity_type for p in pools}
        self.started = started
        self.first_screen: float | None = None
        self.replicas: dict[str, list[int]] = {}
        self.forecasts: dict[str, list[float | None]] = {}
        """Each Inference workload's forecast peak on each screen (None: no forecast)."""
        self.events: dict[tuple[str, str, str], EventRow] = {}
        self.last_lines: list[str] = []

    def snapshot(self) -> Snapshot:
        errors: list[str] = []
        loads = self.generator.snapshot() if self.generator else {}
        notes = self.notes.latest()
        workloads: list[WorkloadRow] = []
        pools: list[PoolRow] = []
        events: list[EventRow] = list(notes)
        try:
            workloads = collect.read_workloads(self.api, self.namespace, self.prometheus, loads)
            pools = collect.read_pools(self.api, self.pools)
            events = collect.read_events(self.api, self.namespace, notes)
        except Exception as exc:  # the screen keeps refreshing while the cluster hiccups
            errors.append(f"cluster read failed: {' '.join(str(exc).split())[:160]}")
        return Snapshot(
            now=datetime.now(UTC),
            cluster=self.cluster,
            operator=self.operator.state(),
            load=load_text(loads, self.day_seconds),
            workloads=workloads,
            pools=pools,
            events=events,
            errors=errors,
        )

    def record(self, snapshot: Snapshot) -> None:
        for row in snapshot.workloads:
            if row.current is not None:
                self.replicas.setdefault(row.name, []).append(row.current)
            if row.type == "Inference":
                self.forecasts.setdefault(row.name, []).append(row.forecast)
        for event in snapshot.events:
            if event.object != "demo":
                self.events[(event.reason, event.object, event.message)] = event

    def run(self, *, refresh: float, duration: float | None) -> None:
        """Draw until ``q``, Ctrl-C (KeyboardInterrupt) or ``duration`` seconds after the
        first screen."""
        interactive = is_interactive(self.out)
        period = refresh if interactive else max(refresh, PLAIN_REFRESH)
        if interactive:
            self.out.write(ENTER_ALT_SCREEN)
        try:
            with keypresses() as wait:
                end: float | None = None
                while True:
                    snapshot = self.snapshot()
                    self.record(snapshot)
                    self.last_lines = render(snapshot)
                    if interactive:
                        width = shutil.get_terminal_size().columns
                        self.out.write(ansi_screen(self.last_lines, FOOTER, width))
                    else:
                        self.out.write(plain_block(self.last_lines))
                    self.out.flush()
                    now = time.monotonic()
                    if self.first_screen is None:
                        self.first_screen = now - self.started
                        end = now + duration if duration is not None else None
                    left = period if end is None else min(period, end - now)
                    if left <= 0 or (wait(left) or "").lower() == "q":
                        return
                    if end is not None and time.monotonic() >= end:
                        return
        finally:
            if interactive:
                self.out.write(LEAVE_ALT_SCREEN)
                self.out.write("\n".join(self.last_lines) + "\n")
                self.out.flush()

    def print_summary(self) -> None:
        lines = ["summary:"]
        if self.first_screen is not None:
            lines.append(f"  first screen {self.first_screen:.1f}s after start")
        for name, seen in sorted(self.replicas.items()):
            lines.append(
                f"  {name}: replicas {seen[0]} -> {seen[-1]} (min {min(seen)}, max {max(seen)})"
            )
        used = [
            f"{name} {sum(f is not None for f in seen)}/{len(seen)} screens"
            for name, seen in sorted(self.forecasts.items())
        ]
        lines.append(f"  forecasts: {', '.join(used) or 'none'}")
        reasons = Counter(e.reason for e in self.events.values())
        text = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())) or "none"
        lines.append(f"  events: {text}")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
