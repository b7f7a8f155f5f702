"""`helm install` into the local control plane, then the operator with the chart's
ServiceAccount credentials (not admin): every feature it uses works with exactly the
chart's roles (a release for one named namespace: a Role there, a ClusterRole for
cluster-scoped objects only), and one permission less breaks the feature that needs it.

The operator runs as a local process (KWOK nodes run no containers) with a
kubeconfig holding a token of the chart's ServiceAccount. Waits poll until a deadline.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.kube import KubectlRun, delete_namespaces, event_reasons, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll

from gpufinops.localcluster import Kubectl, LocalCluster, find_kubectl
from gpufinops.localcluster.binaries import find_helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gpufinops"
RELEASE = "gpufinops"
RELEASE_NS = "gpufinops-helm"
NS = "helm-rbac"
SERVICE_ACCOUNT = "gpufinops"
CLUSTER_ROLE = "gpufinops"


def run_helm(helm: Path, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@dataclass
class Install:
    helm: Path
    kubeconfig: Path
    sa_kubeconfig: Path
    sa_kubectl: KubectlRun
    config_file: Path
    workdir: Path
    output: str

    def run_helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_helm(self.helm, self.kubeconfig, *args)


def _sa_kubeconfig(admin: Path, token: str, path: Path) -> None:
    """The admin kubeconfig's cluster, with the ServiceAccount's token as the user."""
    config = yaml.safe_load(admin.read_text())
    user = f"system:serviceaccount:{RELEASE_NS}:{SERVICE_ACCOUNT}"
    config["users"] = [{"name": user, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = user
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


@pytest.fixture(scope="module")
def install(
    cluster: LocalCluster, kubeconfig: Path, kubectl: KubectlRun, tmp_path_factory
) -> Iterator[Install]:
    helm = find_helm()
    workdir = tmp_path_factory.mktemp("helm")
    # The release namespace enforces the restricted Pod Security Standard.
    ok(kubectl("create", "namespace", RELEASE_NS))
    ok(kubectl("label", "namespace", RELEASE_NS, "pod-security.kubernetes.io/enforce=restricted"))
    ok(kubectl("create", "namespace", NS))
    try:
        result = run_helm(
            helm, kubeconfig, "install", RELEASE, str(CHART), "--namespace", RELEASE_NS,
            "-f", str(ROOT / "tests" / "helm-values" / "local.yaml"),
            "--set", f"config.prometheus.url={cluster.prometheus_url}",
            "--set", f"watchNamespaces={{{NS}}}",
            # The cluster's CRDs are the repository's, applied when it started (upgrading
            # them through a release: tests/integration/test_helm_crd_upgrade.py).
            "--set", "crds.install=false",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        token = ok(
            kubectl("create", "token", SERVICE_ACCOUNT, "-n", RELEASE_NS, "--duration=2h")
        ).strip()
        sa_kubeconfig = workdir / "sa-kubeconfig"
        _sa_kubeconfig(kubeconfig, token, sa_kubeconfig)
        # The operator reads the config the chart rendered, as its pod would.
        config_map = json.loads(
            ok(kubectl("get", "configmap", RELEASE, "-n", RELEASE_NS, "-o", "json"))
        )
        config_file = workdir / "config.yaml"
        config_file.write_text(config_map["data"]["config.yaml"])
        yield Install(
            helm, kubeconfig, sa_kubeconfig, Kubectl(find_kubectl(), sa_kubeconfig).run,
            config_file, workdir, result.stdout,
        )  # fmt: skip
    finally:
        run_helm(
            helm, kubeconfig, "uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout=60s"
        )
        delete_namespaces(kubectl, [NS])  # its workloads' finalizers: no operator is left
        kubectl("delete", "namespace", RELEASE_NS, "--wait=true", "--timeout=60s")


@pytest.fixture(scope="module")
def operator(install: Install) -> Iterator[RunningOperator]:
    with running_operator(
        install.sa_kubeconfig, install.workdir, "--config", str(install.config_file),
        "--namespace", NS, "--sync-seconds", "1",
    ) as op:  # fmt: skip
        yield op


def _get(kubectl: KubectlRun, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(ok(kubectl("get", kind, name, "-n", NS, "-o", "json"))))


def _condition(kubectl: KubectlRun, name: str, ctype: str) -> dict[str, Any] | None:
    status = _get(kubectl, "aiw", name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), None)


def _workload(name: str, target: str) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {target}, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {target}}}}}
  template:
    metadata: {{labels: {{app: {target}}}}}
    spec:
      containers: [{{name: server, image: vllm/vllm-openai:v0.11.0}}]
---
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {{name: {name}, namespace: {NS}}}
spec:
  type: Inference
  costAllocation: {{team: search}}
  nodePools: [l4-on-demand]
  inference:
    targetRef: {{kind: Deployment, name: {target}}}
    minReplicas: 1
    maxReplicas: 4
    metrics: {{server: vllm}}
    forecast: {{enabled: false}}
"""


# ---------------------------------------------------------------------- the install


def test_chart_objects_exist_and_the_pod_passes_restricted_pod_security(
    install: Install, kubectl: KubectlRun
) -> None:
    status = json.loads(ok(install.run_helm("status", RELEASE, "-n", RELEASE_NS, "-o", "json")))
    assert status["info"]["status"] == "deployed"
    for kind, name in [
        ("serviceaccount", SERVICE_ACCOUNT), ("configmap", RELEASE),
        ("service", f"{RELEASE}-metrics"), ("deployment", RELEASE),
    ]:  # fmt: skip
        ok(kubectl("get", kind, name, "-n", RELEASE_NS))
    ok(kubectl("get", "clusterrole,clusterrolebinding", CLUSTER_ROLE))
    assert f"is installed in namespace {RELEASE_NS}" in install.output  # NOTES.txt
    assert f"Watching: {NS}" in install.output
    ok(kubectl("get", "crd", "aiworkloads.gpufinops.dev", "clusterkopfpeerings.kopf.dev"))

    # The ReplicaSet controller may only create the pod if it meets "restricted".
    def pod_created() -> bool:
        result = kubectl(
            "get", "pods", "-n", RELEASE_NS, "-l", f"app.kubernetes.io/instance={RELEASE}",
            "-o", "name",
        )  # fmt: skip
        return result.returncode == 0 and bool(result.stdout.strip())

    poll(pod_created, "the operator pod to be admitted in a restricted namespace")


def test_service_account_holds_only_the_charts_permissions(install: Install) -> None:
    def can(*args: str) -> bool:
        result = install.sa_kubectl("auth", "can-i", *args)
        return result.stdout.strip() == "yes"

    assert can("patch", "aiworkloads.gpufinops.dev", "--subresource=status", "-n", NS)
    # A release for named namespaces: Roles there, nothing namespaced cluster-wide.
    assert can("watch", "aiworkloads.gpufinops.dev", "-n", NS)
    assert not can("watch", "aiworkloads.gpufinops.dev", "--all-namespaces")
    assert not can("list", "jobs.batch", "-n", "default")
    assert can("patch", "deployments.apps", "--subresource=scale", "-n", NS)
    assert can("create", "events", "-n", NS)
    assert can("list", "horizontalpodautoscalers.autoscaling", "-n", NS)
    assert can("list", "namespaces")
    assert not can("get", "secrets", "-n", NS)
    assert not can("update", "deployments.apps", "-n", NS)
    assert not can("delete", "aiworkloads.gpufinops.dev", "-n", NS)
    assert not can("create", "pods", "-n", NS)
    assert not can("patch", "nodes")
    assert not can("patch", "deployments.apps", "-n", NS)
    # The spend ledger: ConfigMaps in the release namespace only, never a tenant's.
    assert can("create", "configmaps", "-n", RELEASE_NS)
    assert can("patch", "configmaps", "-n", RELEASE_NS)
    assert not can("create", "configmaps", "-n", NS)
    assert not can("get", "secrets", "-n", RELEASE_NS)


# ---------------------------------------------------------------------- least privilege


def test_inference_workload_gets_conditions_and_an_event(
    install: Install, operator: RunningOperator, kubectl: KubectlRun
) -> None:
    ok(kubectl("apply", "-f", "-", input=_workload("chat", "chat-server")))

    def accepted() -> bool:
        invalid = _condition(kubectl, "chat", "InvalidSpec")
        return invalid is not None and invalid["status"] == "False"

    try:
        poll(accepted, "the spec to be accepted in status.conditions")
    except AssertionError as exc:
        status = _get(kubectl, "aiw", "chat").get("status")
        raise AssertionError(f"{exc}; status: {status}; log: {operator.log}") from None
    obj = _get(kubectl, "aiw", "chat")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["target"] == "Deployment/chat-server"
    poll(lambda: "Accepted" in event_reasons(kubectl, NS, "chat"), "the Accepted event")
    # The autoscaler's own status write (daemon, status subresource) lands too.
    poll(
        lambda: (_get(kubectl, "aiw", "chat").get("status") or {}).get("replicas"),
        "status.replicas from the autoscaler",
    )
    # The cost loop keeps the month's spend in the ledger, in the release namespace.
    ledger = f"gpufinops-ledger-{NS}"

    def recorded() -> bool:
        got = kubectl("get", "configmap", ledger, "-n", RELEASE_NS, "-o", "json")
        return got.returncode == 0 and "chat" in (json.loads(got.stdout).get("data") or {})

    poll(recorded, f"the workload's entry in ConfigMap {RELEASE_NS}/{ledger}")


def test_manual_scale_goes_through_the_deployment_scale_subresource(
    install: Install, operator: RunningOperator, kubectl: KubectlRun
) -> None:
    ok(kubectl("scale", "aiw/chat", "-n", NS, "--replicas=3"))
    poll(
        lambda: _get(kubectl, "deployment", "chat-server")["spec"]["replicas"] == 3,
        "the Deployment to be scaled to 3",
    )
    poll(lambda: "ScaledManually" in event_reasons(kubectl, NS, "chat"), "a ScaledManually event")


def test_a_conflicting_hpa_is_seen_through_the_hpa_watch(
    install: Install, operator: RunningOperator, kubectl: KubectlRun
) -> None:
    ok(
        kubectl(
            "autoscale",
            "deployment",
            "chat-server",
            "-n",
            NS,
            "--min=1",
            "--max=3",
            "--cpu-percent=80",
        )
    )

    def conflicting() -> bool:
        found = _condition(kubectl, "chat", "ConflictingAutoscaler")
        return found is not None and found["status"] == "True"

    poll(conflicting, "the ConflictingAutoscaler condition")
    ok(kubectl("delete", "hpa", "chat-server", "-n", NS))


# ---------------------------------------------------------------------- one permission less


def test_without_patch_on_aiworkloads_status_no_conditions_are_written(
    install: Install, operator: RunningOperator, kubectl: KubectlRun
) -> None:
    # The release watches NS alone: the operator's rights there are the Role's.
    role = json.loads(ok(kubectl("get", "role", CLUSTER_ROLE, "-n", NS, "-o", "json")))
    original = json.dumps(role)
    rules = [r for r in role["rules"] if r["resources"] != ["aiworkloads/status"]]
    assert len(rules) == len(role["rules"]) - 1
    role["rules"] = rules
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        role["metadata"].pop(key, None)
    ok(kubectl("replace", "-f", "-", input=json.dumps(role)))
    try:
        poll(
            lambda: (
                install.sa_kubectl(
                    "auth",
                    "can-i",
                    "patch",
                    "aiworkloads.gpufinops.dev",
                    "--subresource=status",
                    "-n",
                    NS,
                ).stdout.strip()
                == "no"
            ),
            "the narrowed Role to take effect",
        )
        ok(kubectl("apply", "-f", "-", input=_workload("blocked", "blocked-server")))
        # The operator acts (its handler runs and posts its Event) but the status
        # write is forbidden: the named feature "status conditions" is gone.
        poll(
            lambda: "Accepted" in event_reasons(kubectl, NS, "blocked"),
            "the handler to run for the new workload",
        )
        poll(
            lambda: (
                "aiworkloads/blocked/status" in operator.log.read_text()
                and "403" in operator.log.read_text()
            ),
            "the forbidden status patch in the operator log",
        )
        status = _get(kubectl, "aiw", "blocked").get("status") or {}
        assert not status.get("conditions"), status
    finally:
        restored = json.loads(original)
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            restored["metadata"].pop(key, None)
        ok(kubectl("replace", "-f", "-", input=json.dumps(restored)))

    # With the permission back, the autoscaler's next tick writes its status again
    # (Kopf does not re-run the already-succeeded spec handler).
    def written() -> bool:
        return _condition(kubectl, "blocked", "Ready") is not None

    try:
        poll(written, "the autoscaler's status once the permission is restored")
    except AssertionError as exc:
        obj = _get(kubectl, "aiw", "blocked")
        raise AssertionError(f"{exc}; status: {obj.get('status')}") from None


# ---------------------------------------------------------------------- high availability

HA_NS = "helm-ha"

EXPERIMENT = """
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {name: %s, namespace: helm-ha}
spec:
  type: Experiment
  costAllocation: {team: research}
  nodePools: [l4-spot]
  experiment:
    targetRef: {kind: Deployment, name: notebook}
    maxLifetimeSeconds: 3600
"""


def _handled(op: RunningOperator, name: str) -> bool:
    """Whether this operator ran the spec handler for AIWorkload ``name``."""
    for line in op.log.read_text().splitlines():
        if '"spec accepted"' in line and f'"name": "{name}"' in line:
            return True
    return False


def test_two_replicas_never_both_act_and_the_standby_takes_over(
    install: Install, kubectl: KubectlRun
) -> None:
    ok(kubectl("create", "namespace", HA_NS))
    try:
        result = install.run_helm(
            "upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "--reuse-values",
            "--set", "replicaCount=2", "--set", f"watchNamespaces={{{NS},{HA_NS}}}",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        ok(kubectl("get", "kopfpeering", "gpufinops", "-n", HA_NS))
        common = ("--config", str(install.config_file), "--namespace", HA_NS)
        for replica in ("high", "low"):
            (install.workdir / replica).mkdir(exist_ok=True)
        with (
            running_operator(
                install.sa_kubeconfig, install.workdir / "high", *common,
                "--peering", "gpufinops", "--priority", "1",
            ) as high,
            running_operator(
                install.sa_kubeconfig, install.workdir / "low", *common,
                "--peering", "gpufinops", "--priority", "0",
            ) as low,
        ):  # fmt: skip
            # Both replicas publish keep-alives; the low one starts paused (peering is
            # mandatory with --peering) and stays so while the high one lives.
            def peers() -> int:
                got = kubectl("get", "kopfpeering", "gpufinops", "-n", HA_NS, "-o", "json")
                return len(json.loads(got.stdout).get("status") or {}) if got.returncode == 0 else 0

            poll(lambda: peers() == 2, "both replicas in the peering object")
            ok(kubectl("apply", "-f", "-", input=EXPERIMENT % "ha-one"))
            poll(lambda: _handled(high, "ha-one"), "the high-priority replica to act")
            assert not _handled(low, "ha-one"), "both replicas acted on ha-one"

            assert "Resuming operations" not in low.log.read_text(), "the standby acted"

            high.process.terminate()  # Kopf withdraws its keep-alive on the way out
            high.process.wait(timeout=30)
            poll(
                lambda: "Resuming operations" in low.log.read_text(),
                "the standby to resume",
                deadline=90.0,  # at worst, the dead peer's keep-alive expires (60 s)
            )
            ok(kubectl("apply", "-f", "-", input=EXPERIMENT % "ha-two"))
            poll(lambda: _handled(low, "ha-two"), "the standby to act after take-over")
            assert not _handled(high, "ha-two")
    finally:
        delete_namespaces(kubectl, [HA_NS])  # both operators have stopped by now
