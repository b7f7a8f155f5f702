"""Tenants on the local control plane: people by impersonation, and AIWorkloads of each
type, for the tests of the chart's tenant boundary (its admission policy and roles).

Nothing here needs the operator: the boundary is the API server's (RBAC and the
ValidatingAdmissionPolicy), so a workload is only ever created, changed or refused.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from tests.support.kube import KubectlRun
from tests.support.polling import poll_until

from gpufinops.localcluster.binaries import find_helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gpufinops"


def render_chart(release: str, namespace: str, values: Path) -> list[dict[str, Any]]:
    """The chart's objects, as ``helm template`` renders them (no cluster needed)."""
    result = subprocess.run(
        [
            str(find_helm()),
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "-f",
            str(values),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def as_user(kubectl: KubectlRun, user: str, *groups: str) -> KubectlRun:
    """``kubectl`` acting as ``user`` (impersonated by the admin), in ``groups``."""
    flags = [f"--as={user}", *(f"--as-group={g}" for g in groups)]

    def run(*args: str, input: str | None = None, timeout: float = 120.0) -> Any:
        return kubectl(*flags, *args, input=input, timeout=timeout)

    return run


def can(kubectl: KubectlRun, *args: str) -> bool:
    """``kubectl auth can-i args...``: whether the (impersonated) user may."""
    return str(kubectl("auth", "can-i", *args).stdout).strip() == "yes"


def wait_for_permissions(kubectl: KubectlRun, facts: list[tuple[str, str]], what: str) -> None:
    """Wait until each ``(user, "verb resource ...")`` holds: RoleBindings and the
    aggregation of ClusterRoles take effect asynchronously."""

    def unmet() -> list[str]:
        return [
            f"{user}: {args}"
            for user, args in facts
            if not can(as_user(kubectl, user), *args.split())
        ]

    poll_until(unmet, lambda missing: not missing, what)


def drop_finalizers(kubectl: KubectlRun, namespace: str) -> None:
    """Release every AIWorkload in ``namespace`` (no operator runs to do it), so that
    deleting the namespace cannot hang on a test's finalizer; failures are ignored."""
    listed = kubectl("get", "aiworkloads", "-n", namespace, "-o", "name")
    for ref in listed.stdout.split() if listed.returncode == 0 else []:
        kubectl(
            "patch",
            ref,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"metadata": {"finalizers": null}}',
        )


def workload(
    name: str,
    namespace: str,
    section: dict[str, Any],
    *,
    team: str = "search",
    pools: list[str] | None = None,
    budget: dict[str, Any] | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """An AIWorkload valid against the CRD; ``section`` is {"training": {...}} or the like."""
    ((key, _),) = section.items()
    spec: dict[str, Any] = {
        "type": key.capitalize(),
        "costAllocation": {"team": team, "project": "tenancy"},
        "nodePools": pools if pools is not None else ["l4-on-demand"],
        **section,
    }
    if budget is not None:
        spec["budget"] = budget
    if mode is not None:
        spec["mode"] = mode
    return {
        "apiVersion": "gpufinops.dev/v1alpha1",
        "kind": "AIWorkload",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def job_template(*, privileged: bool = False) -> dict[str, Any]:
    """A ``training`` section whose Job the operator would create; ``privileged``: a pod
    that takes the node (privileged container, host PID and network, the host's root)."""
    container: dict[str, Any] = {"name": "train", "image": "example.com/train:1"}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if privileged:
        container["securityContext"] = {"privileged": True}
        container["volumeMounts"] = [{"name": "host", "mountPath": "/host"}]
        pod.update(
            hostPID=True, hostNetwork=True, volumes=[{"name": "host", "hostPath": {"path": "/"}}]
        )
    return {"training": {"jobTemplate": {"template": {"spec": pod}}}}


def job_ref(job: str) -> dict[str, Any]:
    return {"training": {"jobRef": {"name": job}}}


def inference(deployment: str) -> dict[str, Any]:
    return {
        "inference": {
            "targetRef": {"kind": "Deployment", "name": deployment},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": {"server": "vllm"},
            "forecast": {"enabled": False},
        }
    }


def experiment(kind: str, name: str) -> dict[str, Any]:
    return {"experiment": {"targetRef": {"kind": kind, "name": name}, "maxLifetimeSeconds": 3600}}


def manifest(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)
