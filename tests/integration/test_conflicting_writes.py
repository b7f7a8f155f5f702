"""Another client changes the Deployment between the operator's read and its write:
the scale is refused (ScaleConflict) and the user's newer value stays, on the real
API server; with the value the decision was made from, the scale goes through.
Likewise for status: a write over newer conditions is refused, a write next to
another writer's status fields is not."""

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from tests.support.inference import WORKLOAD
from tests.support.kube import deployment_manifest, ok

from gpufinops.adapters.deployments import scale_deployment
from gpufinops.adapters.scale_targets import ScaleConflict
from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.controllers.effects import StatusConflict
from gpufinops.handlers.status_writes import ConditionalStatus

NS = "conflicts"
DEPLOYMENT = deployment_manifest(
    "web", NS, {"containers": [{"name": "s", "image": "example.com/s:1"}]}
)


@pytest.fixture(scope="module")
def api(kubeconfig: Path, kubectl):
    assert kubectl("create", "namespace", NS).returncode == 0
    assert kubectl("apply", "-f", "-", input=yaml.safe_dump(DEPLOYMENT)).returncode == 0
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()
        # Gone before the next module: its operators watch every namespace, and one
        # that put its finalizer on the workload here would leave the namespace stuck.
        kubectl("delete", "namespace", NS, "--wait=true", "--timeout=60s")


def _replicas(kubectl) -> int:
    out = kubectl("get", "deployment", "web", "-n", NS, "-o", "json").stdout
    return int(json.loads(out)["spec"]["replicas"])


def test_a_newer_user_change_is_never_overwritten(api: client.ApiClient, kubectl) -> None:
    # The operator decided from 1 replica; meanwhile the user scaled to 2.
    assert kubectl("scale", "deployment", "web", "-n", NS, "--replicas=2").returncode == 0
    with pytest.raises(ScaleConflict, match="no longer has the 1 replicas"):
        scale_deployment(api, NS, "web", 5, expected=1)
    assert _replicas(kubectl) == 2
    # Deciding again from what is there now works.
    scale_deployment(api, NS, "web", 5, expected=2)
    assert _replicas(kubectl) == 5


def test_a_deployment_at_zero_is_woken_and_a_newer_change_still_wins(
    api: client.ApiClient, kubectl
) -> None:
    # At zero replicas the scale subresource leaves spec.replicas out altogether.
    assert kubectl("scale", "deployment", "web", "-n", NS, "--replicas=0").returncode == 0
    scale_deployment(api, NS, "web", 2, expected=0)
    assert _replicas(kubectl) == 2
    # Decided from zero while the user scaled it up meanwhile: refused, theirs stays.
    with pytest.raises(ScaleConflict, match="no longer has the 0 replicas"):
        scale_deployment(api, NS, "web", 4, expected=0)
    assert _replicas(kubectl) == 2
    # To zero and back from a decision made at a count: the usual test holds.
    scale_deployment(api, NS, "web", 0, expected=2)
    assert _replicas(kubectl) == 0


def _aiw(api: client.ApiClient) -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "llm"
    )


def _set_status(api: client.ApiClient, status: dict) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "llm", {"status": status}
    )


CONDITION = {"type": "Accepted", "status": "True", "reason": "SpecValid", "message": "ok",
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}  # fmt: skip


def test_status_writes_test_the_conditions_not_the_version(api: client.ApiClient, kubectl) -> None:
    ok(kubectl("apply", "-n", NS, "-f", "-", input=WORKLOAD))
    _set_status(api, {"conditions": [CONDITION]})
    write = ConditionalStatus(api, NS, "llm", whole_fields=True)
    ready = {**CONDITION, "type": "Ready", "reason": "Scaling"}

    # Another writer's status.cost between the read and the write is no conflict,
    # and a null member is deleted as a merge patch would delete it.
    write.seen(_aiw(api))
    _set_status(api, {"cost": {"todayUSD": 1.5}, "replicas": {"current": 9, "ready": 9}})
    write({"conditions": [CONDITION, ready],
           "replicas": {"current": 2, "ready": 1, "desired": 3, "recommended": None}})  # fmt: skip
    status = _aiw(api)["status"]
    assert status["cost"] == {"todayUSD": 1.5}
    assert status["replicas"] == {"current": 2, "ready": 1, "desired": 3}
    assert [c["type"] for c in status["conditions"]] == ["Accepted", "Ready"]

    # A newer conditions list is never overwritten: the write is refused whole.
    write.seen(_aiw(api))
    changed = {**CONDITION, "status": "False", "reason": "SpecInvalid", "message": "bad"}
    _set_status(api, {"conditions": [changed, ready]})
    with pytest.raises(StatusConflict):
        write({"conditions": [CONDITION, ready], "replicas": {"current": 5, "ready": 5}})
    status = _aiw(api)["status"]
    assert status["conditions"][0]["reason"] == "SpecInvalid"
    assert status["replicas"]["current"] == 2

    # Without whole fields, the write stays a merge patch on the resourceVersion seen.
    merge = ConditionalStatus(api, NS, "llm")
    merge.seen(_aiw(api))
    _set_status(api, {"cost": {"todayUSD": 2.0}})
    with pytest.raises(StatusConflict):
        merge({"replicas": {"current": 7}})
