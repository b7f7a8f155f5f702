"""Another client changes the Deployment between the operator's read and its write:
the scale is refused (ScaleConflict) and the user's newer value stays, on the real
API server; with the value the decision was made from, the scale goes through."""

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from tests.support.kube import deployment_manifest

from gpufinops.adapters.deployments import ScaleConflict, scale_deployment

NS = "conflicts"
DEPLOYMENT = deployment_manifest(
    "web", NS, {"containers": [{"name": "s", "image": "example.com/s:1"}]}
)


@pytest.fixture(scope="module")
def api(kubeconfig: Path, kubectl):
    assert kubectl("create", "namespace", NS).returncode == 0
    assert kubectl("apply", "-f", "-", input=yaml.safe_dump(DEPLOYMENT)).returncode == 0
    try:
        yield config.new_client_from_config(config_file=str(kubeconfig))
    finally:
        kubectl("delete", "namespace", NS, "--wait=false")


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
