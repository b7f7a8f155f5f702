"""The tenant boundary held by the operator itself, on the real control plane (the Job
controller, the scheduler, KWOK GPU nodes, a real Prometheus scraping a test vLLM
exporter) with `gpufinops run` as a process and no admission policy installed: what
the API server stores, the operator still refuses to act on.

- A namespace labelled ``gpufinops.dev/team`` books its workloads to that team: one
  claiming another team is ``InvalidSpec`` and not scaled, however long its queue.
- A node pool whose ``namespaceSelector`` does not admit the namespace is refused in
  ``spec.nodePools[i]``, and no Job is created; an admitted namespace trains there.
- A jobTemplate asking for a privileged container, the host's PIDs, a hostPath or
  another ServiceAccount is refused, and no Job is created; the same template
  without them trains.
- Two Inference workloads on one Deployment both report ``ConflictingAutoscaler``
  naming the other and leave it alone; once one is gone, the other scales.
- ``kubectl scale aiw`` does not lift a workload over its budget's Throttle.

The operator config is the shipped default plus the Training tests' pools, with the
spot one open only to namespaces of the team ``research``. Every namespace exists
before the operator starts, so its labels are in the operator's index from the
start. "Nothing happens" is checked on every read of a poll that lasts several sync
periods (or a number of autoscaler ticks), each read failing at once if it did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.exporter import Exporter
from tests.support.inference import WORKLOAD, llm_deployment, llm_replicas, set_vllm
from tests.support.kube import KubectlRun, delete_namespaces, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import describe_on_timeout, poll, poll_until
from tests.support.promserver import wait_for
from tests.support.training import CONFIG as TRAINING_CONFIG
from tests.support.training import ON_DEMAND, SPOT, SPOT_NODES, pod_template

from gpufinops.adapters.prometheus.client import PrometheusClient

ROOT = Path(__file__).resolve().parents[2]
TEAM_LABEL = "gpufinops.dev/team"
SEARCH = "tenop-search"
"""Team ``search``: the restricted spot pool is not open to it."""
RESEARCH = "tenop-research"
"""Team ``research``: the spot pool is open to it."""
TEMPLATES = "tenop-templates"
"""Team ``research`` too: jobTemplates, on pools it may use."""
CONFLICT = "tenop-conflict"
THROTTLE = "tenop-throttle"
NAMESPACES = {
    SEARCH: {TEAM_LABEL: "search"},
    RESEARCH: {TEAM_LABEL: "research"},
    TEMPLATES: {TEAM_LABEL: "research"},
    CONFLICT: {},
    THROTTLE: {},
}
HOLD_SECONDS = 8.0
"""How long a refused Training workload is watched doing nothing: eight sync periods."""
HOLD_TICKS = 5
"""Autoscaler ticks a refusing Inference workload is watched doing nothing."""
QUEUE = 2000
"""Requests waiting: far beyond the six replicas' worth of any workload here."""
SPARE_ACCOUNT = "trainer-admin"


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped defaults, the Training tests' pools (spot only for team research),
    and the cost loop every second."""
    config = yaml.safe_load((ROOT / "operator/gpufinops/config/default.yaml").read_text())
    pools = [dict(p) for p in TRAINING_CONFIG["nodePools"]]
    for pool in pools:
        if pool["name"] == SPOT.name:
            pool["namespaceSelector"] = {"matchLabels": {TEAM_LABEL: "research"}}
    config["nodePools"] = [*config["nodePools"], *pools]
    config.setdefault("cost", {})["intervalSeconds"] = 1
    path = tmp_path_factory.mktemp("tenant-config") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def namespaces(kubectl: KubectlRun) -> Iterator[None]:
    """The test namespaces with their team labels, and a ServiceAccount a template may
    not borrow; all removed afterwards, with finalizers no operator is left to release."""
    for ns, labels in NAMESPACES.items():
        manifest = {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "labels": labels}}  # fmt: skip
        ok(kubectl("apply", "-f", "-", input=json.dumps(manifest)))
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": SPARE_ACCOUNT, "namespace": TEMPLATES}}  # fmt: skip
    ok(kubectl("apply", "-f", "-", input=json.dumps(account)))
    try:
        yield
    finally:
        delete_namespaces(kubectl, NAMESPACES)


@pytest.fixture(scope="module")
def operator(
    training_pools: None,
    namespaces: None,
    kubeconfig: Path,
    config_file: Path,
    prometheus: str,
    kubectl: KubectlRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningOperator]:
    log_dir = tmp_path_factory.mktemp("tenant-operator")
    with running_operator(
        kubeconfig, log_dir, "--config", str(config_file), "--namespace", "tenop-*",
        "--prometheus-url", prometheus, "--sync-seconds", "1",
    ) as op, describe_on_timeout(lambda: _describe(kubectl, op)):  # fmt: skip
        yield op


def _describe(kubectl: KubectlRun, op: RunningOperator) -> str:
    """What a timed-out wait shows: the objects in every test namespace, the log's end."""
    out = []
    for ns in NAMESPACES:
        got = kubectl("get", "aiw,jobs,deployments", "-n", ns, "-o", "yaml")
        out.append(f"--- {ns}:\n{got.stdout[-4000:]}")
    out.append(f"--- operator log:\n{op.log.read_text()[-3000:]}")
    return "\n".join(out)


# ------------------------------------------------------------------------------- helpers


def _get(kubectl: KubectlRun, ns: str, kind: str, name: str) -> dict[str, Any]:
    """The object, or empty when it is not there."""
    got = kubectl("get", kind, name, "-n", ns, "-o", "json")
    return dict(json.loads(got.stdout)) if got.returncode == 0 else {}


def _condition(kubectl: KubectlRun, ns: str, name: str, ctype: str) -> dict[str, Any]:
    """The workload's condition ``ctype``, empty until it has one."""
    conditions = (_get(kubectl, ns, "aiw", name).get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c.get("type") == ctype), {})


def _status(kubectl: KubectlRun, ns: str, name: str) -> dict[str, Any]:
    return dict(_get(kubectl, ns, "aiw", name).get("status") or {})


def _events(kubectl: KubectlRun, ns: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the workload's Events."""
    listed = ok(kubectl("get", "events", "-n", ns, "-o", "json", "--field-selector",
                        f"involvedObject.kind=AIWorkload,involvedObject.name={name}"))  # fmt: skip
    return [(e["type"], e["reason"], e.get("message", "")) for e in json.loads(listed)["items"]]


def _jobs(kubectl: KubectlRun, ns: str) -> list[str]:
    return ok(kubectl("get", "jobs", "-n", ns, "-o", "name")).split()


def _no_job(kubectl: KubectlRun, ns: str) -> bool:
    """True; fails at once when any Job exists in ``ns``."""
    jobs = _jobs(kubectl, ns)
    assert not jobs, f"{jobs} created in {ns} for a refused workload"
    return True


def _replicas_stay(kubectl: KubectlRun, ns: str, replicas: int) -> bool:
    """True; fails at once when Deployment ``llm`` is not at ``replicas``."""
    now = llm_replicas(kubectl, ns)
    assert now == replicas, f"Deployment {ns}/llm scaled to {now}, expected to stay {replicas}"
    return True


def _holds(check: Callable[[], object], what: str, seconds: float = HOLD_SECONDS) -> None:
    """``check`` (which fails at once on a violation) on every read for ``seconds``."""
    end = time.monotonic() + seconds
    poll_until(lambda: (check(), time.monotonic())[1], lambda t: t >= end,
               f"{seconds:g}s of {what}", deadline=seconds + 30)  # fmt: skip


def _true(
    kubectl: KubectlRun, ns: str, name: str, ctype: str, still: Callable[[], object]
) -> dict[str, Any]:
    """The workload's condition ``ctype`` once it is True, checking ``still`` on every read."""

    def read() -> dict[str, Any]:
        still()
        return _condition(kubectl, ns, name, ctype)

    return poll_until(read, lambda c: c.get("status") == "True", f"{ctype} on {ns}/{name}")


def _refused(kubectl: KubectlRun, ns: str, name: str, still: Callable[[], object]) -> str:
    """The workload's InvalidSpec message once it is True, checking ``still`` meanwhile."""
    condition = _true(kubectl, ns, name, "InvalidSpec", still)
    ready = _condition(kubectl, ns, name, "Ready")
    assert (ready.get("status"), ready.get("reason")) == ("False", "InvalidSpec"), ready
    return str(condition["message"])


def _warned(kubectl: KubectlRun, ns: str, name: str, reason: str, text: str) -> None:
    """A Warning Event with ``reason`` about the workload says ``text``."""
    poll(lambda: any(t == "Warning" and r == reason and text in m
                     for t, r, m in _events(kubectl, ns, name)),
         f"a Warning {reason} Event on {ns}/{name} saying {text}")  # fmt: skip


def _queue_read(prometheus: str, ns: str) -> None:
    """Prometheus has scraped the exporter's long queue for ``ns``: the demand is there."""
    query = f'sum(vllm:num_requests_waiting{{namespace="{ns}"}})'
    with PrometheusClient(prometheus, timeout=5) as client:
        wait_for(client, query, lambda v: v == QUEUE)


def _ticks(op: RunningOperator, ns: str, name: str, outcome: str | None = None) -> float:
    labels = {"namespace": ns, "workload": name} | ({"outcome": outcome} if outcome else {})
    return op.metric("gpufinops_autoscaler_ticks_total", **labels)


def _training(ns: str, name: str, team: str, template: dict[str, Any]) -> str:
    """A Training AIWorkload of ``team`` on both training pools, on-demand first."""
    return yaml.safe_dump({
        "apiVersion": "gpufinops.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": "Training",
            "costAllocation": {"team": team},
            "nodePools": [ON_DEMAND.name, SPOT.name],
            "training": {"expectedDurationSeconds": 36000,
                         "checkpoint": {"intervalSeconds": 600},
                         "jobTemplate": template},
        },
    })  # fmt: skip


def _running_pod(kubectl: KubectlRun, ns: str, job: str, nodes: list[str]) -> dict[str, Any]:
    """A pod the Job controls, running on one of ``nodes``; empty if none."""
    pods = json.loads(ok(kubectl("get", "pods", "-n", ns, "-l",
                                 f"batch.kubernetes.io/job-name={job}", "-o", "json")))  # fmt: skip
    for pod in pods["items"]:
        owners = pod["metadata"].get("ownerReferences") or []
        ours = any(o.get("kind") == "Job" and o.get("name") == job and o.get("controller")
                   for o in owners)  # fmt: skip
        if (ours and pod["status"].get("phase") == "Running"
                and not pod["metadata"].get("deletionTimestamp")
                and pod["spec"].get("nodeName") in nodes):  # fmt: skip
            return dict(pod)
    return {}


def _trains_on_spot(kubectl: KubectlRun, ns: str, name: str) -> None:
    """The workload's own Job, created suspended and placed on the spot pool, runs there."""
    job = poll(lambda: _get(kubectl, ns, "job", name), f"Job {ns}/{name} to be created")
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("AIWorkload", name, True)
    poll(lambda: _running_pod(kubectl, ns, name, SPOT_NODES), f"Job {ns}/{name} running on spot")
    placed = _get(kubectl, ns, "job", name)
    assert placed["spec"]["suspend"] is False
    assert placed["spec"]["template"]["spec"]["nodeSelector"] == {"gpufinops.dev/pool": SPOT.name}
    placement = poll(lambda: _status(kubectl, ns, name).get("placement", {}).get("pool"),
                     f"status.placement of {ns}/{name}")  # fmt: skip
    assert placement == SPOT.name
    said = poll_until(lambda: {r: m for _, r, m in _events(kubectl, ns, name)},
                      lambda e: e.keys() >= {"JobCreated", "SpotPlaced"},
                      f"the placement Events of {ns}/{name}")  # fmt: skip
    assert "suspended until placed" in said["JobCreated"], said
    assert f"placed on {SPOT.name}" in said["SpotPlaced"], said


def _cleanup(kubectl: KubectlRun, ns: str) -> None:
    """Everything a test made in ``ns``, with the operator running to release finalizers."""
    kubectl("delete", "aiw", "--all", "-n", ns, "--wait=true", "--timeout=60s")
    kubectl("delete", "jobs,deployments", "--all", "-n", ns, "--wait=true", "--timeout=60s")
    kubectl("delete", "pods", "--all", "-n", ns, "--wait=true", "--timeout=60s")


def _inference(name: str, *, max_replicas: int = 6, extra: str = "") -> str:
    """The shared Inference workload scaling ``llm``, as ``name``."""
    manifest = WORKLOAD.replace("metadata: {name: llm}", f"metadata: {{name: {name}}}")
    return manifest.replace("maxReplicas: 6", f"maxReplicas: {max_replicas}") + extra


# --------------------------------------------------------------------------------- tests


def test_a_workload_claiming_another_team_is_refused_and_not_scaled(
    operator: RunningOperator, exporter: Exporter, prometheus: str, kubectl: KubectlRun
) -> None:
    ns = SEARCH
    set_vllm(exporter, ns, waiting=QUEUE)
    ok(kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(llm_deployment(ns))))
    ok(kubectl("apply", "-n", ns, "-f", "-", input=WORKLOAD))  # team serving, namespace search
    try:
        still = partial(_replicas_stay, kubectl, ns, 1)
        message = _refused(kubectl, ns, "llm", still)
        assert message.startswith("spec.costAllocation.team: "), message
        assert "'search'" in message and "'serving'" in message, message
        _warned(kubectl, ns, "llm", "InvalidSpec", "spec.costAllocation.team")

        _queue_read(prometheus, ns)
        _holds(still, "the refused workload's Deployment left alone on a long queue")
        assert _ticks(operator, ns, "llm") == 0
        assert "lastDecision" not in _status(kubectl, ns, "llm")

        # Booked to its own namespace's team, the same workload scales.
        patch = {"spec": {"costAllocation": {"team": "search"}}}
        ok(kubectl("patch", "aiw", "llm", "-n", ns, "--type=merge", "-p", json.dumps(patch)))
        poll(lambda: _condition(kubectl, ns, "llm", "InvalidSpec").get("status") == "False",
             "the corrected team accepted")  # fmt: skip
        poll(lambda: llm_replicas(kubectl, ns) > 1, "the scale-up once accepted")

        # The namespace changes hands: the workload's conditions say so at once (its
        # loop already acts on the new label), and again when it is given back.
        ok(kubectl("label", "namespace", ns, f"{TEAM_LABEL}=ads", "--overwrite"))
        poll(lambda: _condition(kubectl, ns, "llm", "InvalidSpec").get("status") == "True",
             "InvalidSpec after the namespace was relabelled")  # fmt: skip
        assert "'ads'" in _condition(kubectl, ns, "llm", "InvalidSpec")["message"]
        ok(kubectl("label", "namespace", ns, f"{TEAM_LABEL}=search", "--overwrite"))
        poll(lambda: _condition(kubectl, ns, "llm", "InvalidSpec").get("status") == "False",
             "accepted again once the label is back")  # fmt: skip
    finally:
        ok(kubectl("label", "namespace", ns, f"{TEAM_LABEL}=search", "--overwrite"))
        _cleanup(kubectl, ns)


def test_a_pool_closed_to_the_namespace_is_refused_and_no_job_is_created(
    operator: RunningOperator, kubectl: KubectlRun
) -> None:
    template = {"template": pod_template("finetune")}
    ok(kubectl("apply", "-f", "-", input=_training(SEARCH, "finetune", "search", template)))
    ok(kubectl("apply", "-f", "-", input=_training(RESEARCH, "finetune", "research", template)))
    try:
        still = partial(_no_job, kubectl, SEARCH)
        message = _refused(kubectl, SEARCH, "finetune", still)
        assert message.startswith("spec.nodePools[1]: "), message
        assert f"'{SPOT.name}'" in message and SEARCH in message, message
        assert "spec.nodePools[0]" not in message, message
        _warned(kubectl, SEARCH, "finetune", "InvalidSpec", "spec.nodePools[1]")

        # The namespace the selector admits trains on that pool meanwhile.
        _trains_on_spot(kubectl, RESEARCH, "finetune")
        assert _condition(kubectl, RESEARCH, "finetune", "InvalidSpec").get("status") == "False"

        _holds(still, f"no Job in {SEARCH}")
        assert not _status(kubectl, SEARCH, "finetune").get("placement")
    finally:
        _cleanup(kubectl, SEARCH)
        _cleanup(kubectl, RESEARCH)


def _template(**pod: Any) -> dict[str, Any]:
    """The Training tests' Job pod with ``pod`` added to its spec."""
    base = pod_template("train")
    return {"template": {**base, "spec": {**base["spec"], **pod}}}


PRIVILEGED = [{**pod_template("train")["spec"]["containers"][0],
               "securityContext": {"privileged": True}}]  # fmt: skip
HOST_PATH = [{"name": "host", "hostPath": {"path": "/"}}]
ESCALATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "privileged": ({"containers": PRIVILEGED}, "containers[0].securityContext.privileged"),
    "host-pid": ({"hostPID": True}, "hostPID"),
    "host-path": ({"volumes": HOST_PATH}, "volumes[0].hostPath"),
    "service-account": ({"serviceAccountName": SPARE_ACCOUNT}, "serviceAccountName"),
}
"""Workload name: (what its pod spec adds, the field refused, under the pod spec)."""
POD_SPEC = "spec.training.jobTemplate.template.spec"


def test_a_job_template_beyond_the_baseline_is_refused_and_a_plain_one_trains(
    operator: RunningOperator, kubectl: KubectlRun
) -> None:
    ns = TEMPLATES
    everything: dict[str, Any] = {}
    for name, (added, _) in ESCALATIONS.items():
        everything |= added
        ok(kubectl("apply", "-f", "-", input=_training(ns, name, "research", _template(**added))))
    ok(kubectl("apply", "-f", "-",
               input=_training(ns, "all-four", "research", _template(**everything))))  # fmt: skip
    try:
        still = partial(_no_job, kubectl, ns)
        for name, (_, field) in ESCALATIONS.items():
            message = _refused(kubectl, ns, name, still)
            assert message.startswith(f"{POD_SPEC}.{field}: "), (name, message)
            _warned(kubectl, ns, name, "InvalidSpec", f"{POD_SPEC}.{field}")
        message = _refused(kubectl, ns, "all-four", still)
        for _, field in ESCALATIONS.values():
            assert f"{POD_SPEC}.{field}: " in message, (field, message)

        _holds(still, f"no Job in {ns}")

        # The same template without them is created, suspended, placed and run.
        plain = _training(ns, "all-four", "research", _template())
        ok(kubectl("apply", "-f", "-", input=plain))
        poll(lambda: _condition(kubectl, ns, "all-four", "InvalidSpec").get("status") == "False",
             "the plain template accepted")  # fmt: skip
        _trains_on_spot(kubectl, ns, "all-four")
        job = _get(kubectl, ns, "job", "all-four")["spec"]["template"]["spec"]
        assert not job.get("hostPID") and not job.get("volumes")
        assert job.get("serviceAccountName") in (None, "default")
        assert not job["containers"][0].get("securityContext", {}).get("privileged")
        assert _jobs(kubectl, ns) == ["job.batch/all-four"]
    finally:
        _cleanup(kubectl, ns)


def test_two_workloads_on_one_deployment_both_refuse_until_one_is_gone(
    operator: RunningOperator, exporter: Exporter, prometheus: str, kubectl: KubectlRun
) -> None:
    ns = CONFLICT
    set_vllm(exporter, ns, waiting=0)  # neither would scale: the conflict is seen first
    ok(kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(llm_deployment(ns))))
    # Each alone would hold the Deployment at its own maximum: together they would flap.
    ok(kubectl("apply", "-n", ns, "-f", "-", input=_inference("llm-a", max_replicas=6)))
    ok(kubectl("apply", "-n", ns, "-f", "-", input=_inference("llm-b", max_replicas=3)))
    try:
        still = partial(_replicas_stay, kubectl, ns, 1)
        for name, rival in (("llm-a", "llm-b"), ("llm-b", "llm-a")):
            conflict = _true(kubectl, ns, name, "ConflictingAutoscaler", still)
            assert f"AIWorkload/{rival} also scales Deployment/llm" in conflict["message"]
            assert f"AIWorkload/{name}" not in conflict["message"], conflict
            ready = _condition(kubectl, ns, name, "Ready")
            assert (ready["status"], ready["reason"]) == ("False", "ConflictingAutoscaler")
            _warned(kubectl, ns, name, "ConflictingAutoscaler", f"AIWorkload/{rival} also scales")

        set_vllm(exporter, ns, waiting=QUEUE)
        _queue_read(prometheus, ns)
        outcome = "conflicting_autoscaler"
        seen = {n: _ticks(operator, ns, n, outcome) for n in ("llm-a", "llm-b")}
        # One of them may have decided once, alone, before the other was created.
        decided = {n: _ticks(operator, ns, n, "decided") for n in seen}
        poll(lambda: still() and all(_ticks(operator, ns, n, outcome) >= seen[n] + HOLD_TICKS
                                     for n in seen),
             f"{HOLD_TICKS} more refusing ticks of each on the long queue")  # fmt: skip
        assert {n: _ticks(operator, ns, n, "decided") for n in seen} == decided

        ok(kubectl("delete", "aiw", "llm-b", "-n", ns, "--wait=true", "--timeout=60s"))
        poll(lambda: llm_replicas(kubectl, ns) > 3, "llm-a alone to scale up, past llm-b's 3")
        cleared = _condition(kubectl, ns, "llm-a", "ConflictingAutoscaler")
        assert cleared["status"] == "False", cleared
    finally:
        _cleanup(kubectl, ns)


def test_kubectl_scale_does_not_lift_a_budget_throttle(
    operator: RunningOperator, exporter: Exporter, kubectl: KubectlRun
) -> None:
    ns = THROTTLE
    set_vllm(exporter, ns, waiting=0)  # the autoscaler alone would keep one replica
    budgeted = _inference("llm", extra="  budget: {monthlyUSD: 0.0001, enforcement: Throttle}\n")
    ok(kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(llm_deployment(ns))))
    ok(kubectl("apply", "-n", ns, "-f", "-", input=budgeted))
    try:
        # A GPU for a second spends the budget: the cost loop throttles.
        poll(lambda: _status(kubectl, ns, "llm").get("budget", {}).get("enforcement")
             == "Throttle", "the budget's Throttle in status")  # fmt: skip
        assert llm_replicas(kubectl, ns) == 1

        ok(kubectl("scale", "aiw/llm", "-n", ns, "--replicas=4"))
        assert _get(kubectl, ns, "aiw", "llm")["spec"]["replicas"] == 4
        still = partial(_replicas_stay, kubectl, ns, 1)

        def last_decision() -> dict[str, Any]:
            still()
            return dict(_status(kubectl, ns, "llm").get("lastDecision") or {})

        decision = poll_until(last_decision, lambda d: "spec.replicas=4" in d.get("reason", ""),
                              "a decision on the manual count")  # fmt: skip
        assert decision["action"] == "BudgetThrottle", decision
        assert decision["reason"].startswith("budget exceeded, BudgetThrottle: replicas capped "
                                             "at 1"), decision  # fmt: skip
        seen = _ticks(operator, ns, "llm", "decided")
        poll(lambda: still() and _ticks(operator, ns, "llm", "decided") >= seen + HOLD_TICKS,
             f"{HOLD_TICKS} more ticks held at the throttle")  # fmt: skip
        assert _status(kubectl, ns, "llm")["replicas"]["desired"] == 1
        assert _status(kubectl, ns, "llm")["budget"]["enforcement"] == "Throttle"

        # The budget raised by its admin, the person's count applies.
        patch = {"spec": {"budget": {"monthlyUSD": 1000}}}
        ok(kubectl("patch", "aiw", "llm", "-n", ns, "--type=merge", "-p", json.dumps(patch)))
        poll(lambda: llm_replicas(kubectl, ns) == 4, "the manual 4 once the budget allows it")
        action = _status(kubectl, ns, "llm")["lastDecision"]["action"]
        assert action == "ManualOverride", action
    finally:
        _cleanup(kubectl, ns)
