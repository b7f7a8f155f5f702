"""`gpufinops demo --duration N` end to end, non-interactively, on its own fresh cluster.

The demo brings up a local cluster in a temporary state directory, replays load
into its fake vLLM exporter, runs the operator and prints plain screen blocks
(stdout is not a terminal). The test reads what it printed, then checks that
every process it started is gone. The demo's own clock ends the run: nothing
here waits on a timer.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DURATION = 60
DEADLINE = 3000
"""Seconds for the whole run; on a fresh machine it includes building the control plane."""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (the state directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and _alive(int(proc.name)):
            found.append(f"{proc.name}: {cmdline}")
    return found


def _line(out: str, prefix: str) -> str:
    return next((line for line in out.splitlines() if line.startswith(prefix)), "")


@pytest.mark.timeout(DEADLINE + 60)
def test_demo_scales_on_replayed_load_and_leaves_nothing_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    argv = [sys.executable, "-m", "gpufinops", "demo", "--state-dir", str(state),
            "--duration", str(DURATION)]  # fmt: skip
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE
    )
    out = done.stdout
    context = f"--- stdout (tail)\n{out[-4000:]}\n--- stderr (tail)\n{done.stderr[-2000:]}"
    assert done.returncode == 0, context

    # The view printed the workload lines, with replicas, at least once with values.
    assert "WORKLOAD" in out and "GPU NODES PER POOL" in out and "SPEND PER TEAM" in out
    assert re.search(r"^chat\s+Inference\s+\d+/\d+", out, re.M), context
    assert re.search(r"^code-assistant\s+Inference\s+", out, re.M), context

    # The operator scaled an example Inference Deployment up from its 1 replica.
    summary = dict(re.findall(r"^  ([\w-]+): replicas .*\(min \d+, max (\d+)\)$", out, re.M))
    assert summary and max(int(v) for v in summary.values()) > 1, context
    assert re.search(r"^  events: .*\bScaledUp \d+", out, re.M), context
    # Backfilled past days: the forecaster is ready within the minute and its peaks show.
    used = dict(re.findall(r"([\w-]+) (\d+)/\d+ screens", _line(out, "  forecasts: ")))
    assert used and all(int(n) > 0 for n in used.values()), context
    assert re.search(r"ScaledUp\s+AIWorkload/(chat|code-assistant)\s", out), context

    # Nothing it started is left: operator, control plane, Prometheus.
    operator_pid = int(re.findall(r"^operator pid (\d+)", out, re.M)[0])
    assert not _alive(operator_pid)
    assert _processes_mentioning(str(state)) == []
    status = subprocess.run(
        [sys.executable, "-m", "gpufinops.localcluster", "status", "--state-dir", str(state)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 1 and "is down" in status.stdout, status.stdout
    assert "stopped: " in out and f"cluster in {state}" in out
