"""kubectl results and Kubernetes manifests shared by the integration tests."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

KubectlRun = Callable[..., subprocess.CompletedProcess[str]]
"""``kubectl(*args, input=None, timeout=120.0)``: runs kubectl, never raises on failure."""


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a kubectl command that must have succeeded.

    kubectl runs are returned, not raised, so that cleanup and probes can ignore
    failures; a step of the test itself asserts success here, and its failure
    shows kubectl's own error message.
    """
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def event_reasons(
    kubectl: KubectlRun, ns: str, name: str | None = None, kind: str = "AIWorkload"
) -> list[str]:
    """The reasons of the Events about ``kind/name`` in ``ns`` (about every ``kind``
    without a name), one per Event, oldest first as the API server lists them."""
    selector = f"involvedObject.kind={kind}" + (f",involvedObject.name={name}" if name else "")
    listed = ok(kubectl("get", "events", "-n", ns, "-o", "json", "--field-selector", selector))
    return [e["reason"] for e in json.loads(listed)["items"]]


def deployment_manifest(
    name: str,
    namespace: str,
    pod_spec: dict[str, Any],
    *,
    replicas: int = 1,
    app: str | None = None,
    pod_labels: dict[str, str] | None = None,
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment of ``replicas`` pods with ``pod_spec``, selected by their ``app`` label.

    ``app`` defaults to the Deployment's name. ``pod_labels`` are added to the pods
    besides it (the selector stays ``app`` alone), ``pod_annotations`` set on them:
    what a test needs to point a PodDisruptionBudget or an operator rule at them.
    """
    label = app or name
    metadata: dict[str, Any] = {"labels": {"app": label, **(pod_labels or {})}}
    if pod_annotations:
        metadata["annotations"] = pod_annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": label}},
            "template": {"metadata": metadata, "spec": pod_spec},
        },
    }


def delete_namespaces(kubectl: KubectlRun, namespaces: Iterable[str]) -> None:
    """Delete test namespaces, first releasing AIWorkload finalizers no operator is left
    to release (the operator under test has stopped by then)."""
    names = list(namespaces)
    for ns in names:
        listed = kubectl("get", "aiworkloads", "-n", ns, "-o", "name")
        for ref in listed.stdout.split() if listed.returncode == 0 else []:
            kubectl("patch", ref, "-n", ns, "--type=merge",
                    "-p", '{"metadata": {"finalizers": null}}')  # fmt: skip
    kubectl("delete", "namespace", *names, "--wait=true", "--timeout=120s")


@contextmanager
def made_namespaces(kubectl: KubectlRun, namespaces: Iterable[str]) -> Iterator[None]:
    """Create ``namespaces`` (unlabelled) for a module; delete them after, as
    ``delete_namespaces`` does."""
    names = list(namespaces)
    for ns in names:
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        ok(kubectl("apply", "-f", "-", input=json.dumps(manifest)))
    try:
        yield
    finally:
        delete_namespaces(kubectl, names)
