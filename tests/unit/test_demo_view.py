"""The demo's screen: rows from cluster objects, drawing, and what is unknown shows "—"."""

import re
from datetime import UTC, datetime
from pathlib import Path

import yaml

from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.demo.collect import event_row, placement_text, workload_row
from gpufinops.demo.exposition import Exporter
from gpufinops.demo.loadgen import LoadReport, target_of
from gpufinops.demo.provisioner import deletion_cost, next_node_name, unschedulable_pools
from gpufinops.demo.screen import load_text
from gpufinops.demo.snapshot import EventRow, PoolRow, Snapshot, WorkloadRow
from gpufinops.demo.view import CLEAR, DASH, ansi_screen, plain_block, render, team_lines

NOW = datetime(2026, 11, 27, 4, 0, 0, tzinfo=UTC)
DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"


def _workload(**status: object) -> dict[str, object]:
    return {
        "metadata": {"name": "chat", "namespace": "gpufinops-demo"},
        "spec": {"type": "Inference", "costAllocation": {"team": "search"}},
        "status": status,
    }


def _snapshot(**overrides: object) -> Snapshot:
    rows = [
        WorkloadRow("ns", "chat", "Inference", "search", current=3, desired=5, load=9.5,
                    demand=7.25, queue=12, forecast=11.0, hourly_usd=2.4, today_usd=0.5),
        WorkloadRow("ns", "notebook-alice", "Experiment", "research"),
    ]  # fmt: skip
    values: dict[str, object] = {
        "now": NOW,
        "cluster": "local, /tmp/x",
        "operator": "running, pid 42",
        "load": "chat: azure day 1 at 06:00",
        "workloads": rows,
        "pools": [PoolRow("l4-spot", "spot", 3, 2, 5, 12)],
        "events": [EventRow(NOW, "ScaledUp", "AIWorkload/chat", "Deployment/chat 3 → 5:\n q")],
    }
    values.update(overrides)
    return Snapshot(**values)  # type: ignore[arg-type]


def test_the_screen_shows_replicas_demand_forecast_pools_spend_and_events() -> None:
    text = "\n".join(render(_snapshot()))
    assert "operator: running, pid 42" in text and "load: chat: azure day 1" in text
    chat = next(line for line in text.splitlines() if line.startswith("chat "))
    assert chat.split()[:8] == ["chat", "Inference", "3/5", "9.5", "7.2", "12", "11.0", DASH]
    assert "l4-spot" in text and "nodes 2/3 ready" in text and "GPUs 5/12 in use" in text
    assert "04:00:00 ScaledUp" in text and "Deployment/chat 3 → 5: q" in text  # one line


def test_what_is_not_known_is_a_dash_never_zero() -> None:
    notebook = next(line for line in render(_snapshot()) if line.startswith("notebook-alice"))
    assert notebook.split()[2:] == [DASH] * 8
    research = next(line for line in team_lines(_snapshot().workloads) if "research" in line)
    assert "$0" not in research and research.count(DASH) == 3


def test_spend_is_summed_per_team_over_the_known_values() -> None:
    rows = [
        WorkloadRow("ns", "a", "Inference", "search", hourly_usd=1.5, today_usd=2.0),
        WorkloadRow("ns", "b", "Training", "search", hourly_usd=0.5),
    ]
    (line,) = team_lines(rows)
    assert "$2.00/h" in line and "today      $2.00" in line and "(2 workloads)" in line


def test_empty_sections_say_so() -> None:
    text = "\n".join(render(_snapshot(workloads=[], events=[], errors=["cluster read failed"])))
    assert "(no AIWorkloads yet)" in text and "(none yet)" in text
    assert "! cluster read failed" in text


def test_ansi_redraws_the_whole_screen_and_plain_output_has_no_escape_codes() -> None:
    lines = render(_snapshot())
    screen = ansi_screen(lines, "q: quit", width=40)
    assert screen.startswith(CLEAR) and "q: quit" in screen
    visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen).splitlines()
    assert len(visible) == len(lines) + 1 and all(len(line) <= 40 for line in visible)
    block = plain_block(lines)
    assert "\x1b" not in block and block.startswith("-" * 40) and "chat" in block


def test_a_row_comes_from_status_and_the_generator() -> None:
    item = _workload(
        replicas={"current": 2, "desired": 4, "ready": 2},
        forecast={"predictedPeak": 8.5},
        cost={"hourlyUSD": 1.2, "todayUSD": 3.0, "monthToDateUSD": 9.0},
        lastDecision={"action": "ScaleUp", "reason": "queue"},
    )
    load = LoadReport(7.0, 2, 3.0, "azure", True, 6.5)
    row = workload_row(item, load, demand=6.0, queue=4.0)
    assert (row.current, row.desired, row.ready, row.load) == (2, 4, 2, 7.0)
    assert (row.forecast, row.hourly_usd, row.month_usd) == (8.5, 1.2, 9.0)
    assert row.team == "search" and row.decision == "ScaleUp: queue"


def test_a_row_without_status_has_nothing_to_show() -> None:
    row = workload_row({"metadata": {"name": "x"}, "spec": {}}, None, None, None)
    assert row.current is None and row.hourly_usd is None and row.placement is None


def test_placement_reads_pool_capacity_and_phase() -> None:
    assert placement_text({"pool": "l4-spot", "capacityType": "spot", "phase": "Running"}) == (
        "l4-spot (spot) Running"
    )
    assert placement_text({"phase": "Waiting"}) == "Waiting"
    assert placement_text(None) is None


def test_events_shown_are_operator_decisions_in_the_demo_and_node_shutdowns() -> None:
    def event(kind: str, reason: str, namespace: str = "gpufinops-demo") -> dict[str, object]:
        return {
            "metadata": {"namespace": namespace},
            "involvedObject": {"kind": kind, "name": "n"},
            "reason": reason,
            "message": "m",
            "lastTimestamp": "2026-11-27T04:00:00Z",
        }

    row = event_row(event("AIWorkload", "ScaledUp"), "gpufinops-demo")
    assert row is not None and row.time == NOW and row.object == "AIWorkload/n"
    assert event_row(event("Node", "ShutDown", "default"), "gpufinops-demo") is not None
    assert event_row(event("Node", "NodeReady", "default"), "gpufinops-demo") is None
    assert event_row(event("AIWorkload", "ScaledUp", "other"), "gpufinops-demo") is None
    assert event_row(event("Pod", "Scheduled"), "gpufinops-demo") is None


def test_load_line_names_the_trace_and_says_when_it_is_synthetic() -> None:
    reports = {
        "chat": LoadReport(5, 1, 0, "azure-2024 day 1", True, 6.5),
        "code": LoadReport(5, 1, 0, "synthetic diurnal shape", False, 6.5),
    }
    text = load_text(reports, 600)
    assert "chat: azure-2024 day 1 at 06:30" in text
    assert "code: synthetic diurnal shape (no trace found)" in text
    assert "a day every 600s" in text


def test_deployments_declare_their_load_with_annotations() -> None:
    annotations = {
        "demo.gpufinops.dev/trace": "t.csv",
        "demo.gpufinops.dev/peak-rps": "12",
        "demo.gpufinops.dev/replica-rps": "2",
    }
    target = target_of("ns", "chat", annotations, {"app": "chat"})
    assert target is not None and target.selector == "app=chat" and target.peak_rps == 12
    assert target_of("ns", "chat", {}, {"app": "chat"}) is None
    bad = {**annotations, "demo.gpufinops.dev/peak-rps": "lots"}
    assert target_of("ns", "chat", bad, {"app": "chat"}) is None


def test_the_demo_manifests_are_valid_workloads_with_load_declared() -> None:
    docs = [d for p in sorted(DEMO_DIR.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    workloads = [d for d in docs if d["kind"] == "AIWorkload"]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert workloads and len(workloads) == len(deployments)
    for doc in workloads:
        AIWorkloadSpec.model_validate(doc["spec"])
    for doc in deployments:
        meta = doc["metadata"]
        labels = doc["spec"]["selector"]["matchLabels"]
        assert target_of("ns", meta["name"], meta["annotations"], labels) is not None


def test_only_refused_pods_ask_for_a_node_in_their_pool() -> None:
    def pod(phase: str, reason: str | None, pool: str | None, node: str | None = None) -> dict:
        conditions = [{"type": "PodScheduled", "status": "False", "reason": reason}]
        return {
            "spec": {"nodeSelector": {"gpufinops.dev/pool": pool} if pool else {},
                     "nodeName": node},
            "status": {"phase": phase, "conditions": conditions if reason else []},
        }  # fmt: skip

    pods = [
        pod("Pending", "Unschedulable", "l4-spot"),
        pod("Pending", "Unschedulable", "l4-spot"),
        pod("Pending", None, "l4-spot"),  # not looked at by the scheduler yet
        pod("Pending", "Unschedulable", None),  # no pool to grow
        pod("Running", None, "a100-on-demand", node="a100-on-demand-0"),
    ]
    assert unschedulable_pools(pods) == {"l4-spot": 2}
    assert next_node_name("l4-spot", {"l4-spot-0", "l4-spot-2"}) == "l4-spot-1"


def test_pods_on_later_nodes_of_a_pool_are_cheaper_to_delete() -> None:
    assert deletion_cost("l4-spot-0") == "0"
    assert deletion_cost("l4-spot-2") == "-200"
    assert int(deletion_cost("l4-on-demand-1")) > int(deletion_cost("l4-on-demand-3"))
    assert deletion_cost("some-node") == "0"


def test_the_exporter_forgets_every_series_of_a_pod_that_went_away() -> None:
    with Exporter() as exporter:
        for pod in ("p1", "p2"):
            exporter.set("vllm:num_requests_waiting", {"pod": pod, "namespace": "n"}, 1)
            exporter.set("vllm:request_success_total", {"pod": pod}, 3, kind="counter")
        exporter.remove_matching({"pod": "p1"})
        text = exporter.render()
    assert 'pod="p1"' not in text and text.count('pod="p2"') == 2
    assert "# TYPE vllm:request_success_total counter" in text
