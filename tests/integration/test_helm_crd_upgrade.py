"""`helm upgrade` updates the CRDs: a release installed from a chart whose CRD lacks a
field is upgraded to this chart, and the API server then accepts the field; the CRDs
outlive `helm uninstall`. CRDs installed before (the local cluster applies the
repository's) are adopted into the release first, as docs/deploy.md tells users of the
0.1.0 chart to do."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.kube import KubectlRun, ok

from gpufinops.localcluster.binaries import find_helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gpufinops"
RELEASE, RELEASE_NS, NS = "crd-upgrade", "gpufinops-crd-upgrade", "crd-upgrade-ws"
CRD = "aiworkloads.gpufinops.dev"
CRDS = [CRD, "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]
FIELD = "kvCacheTargetUsage"


def _inference_properties(crd: dict) -> dict:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"]["properties"]["inference"]["properties"])


def _workload(with_field: bool) -> str:
    extra = f"\n    {FIELD}: 0.8" if with_field else ""
    return f"""
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {{name: kv, namespace: {NS}}}
spec:
  type: Inference
  costAllocation: {{team: search}}
  inference:
    targetRef: {{name: llm}}
    maxReplicas: 4{extra}
"""


@pytest.fixture
def helm(kubeconfig: Path) -> Iterator[list[str]]:
    yield [str(find_helm()), f"--kubeconfig={kubeconfig}"]


@pytest.fixture
def adopted(kubectl: KubectlRun, helm: list[str]) -> Iterator[None]:
    """The cluster's CRDs handed to the release, and handed back afterwards exactly as
    the repository has them (the other tests' cluster is left as it was)."""
    ok(kubectl("annotate", "crd", *CRDS, f"meta.helm.sh/release-name={RELEASE}",
               f"meta.helm.sh/release-namespace={RELEASE_NS}", "--overwrite"))  # fmt: skip
    ok(kubectl("label", "crd", *CRDS, "app.kubernetes.io/managed-by=Helm", "--overwrite"))
    try:
        yield
    finally:
        subprocess.run([*helm, "uninstall", RELEASE, "-n", RELEASE_NS, "--wait"],
                       capture_output=True, timeout=180, check=False)  # fmt: skip
        kubectl("annotate", "crd", *CRDS, "meta.helm.sh/release-name-",
                "meta.helm.sh/release-namespace-", "helm.sh/resource-policy-")  # fmt: skip
        chart_labels = ("managed-by", "instance", "name", "part-of", "version")
        kubectl("label", "crd", *CRDS, "helm.sh/chart-",
                *(f"app.kubernetes.io/{k}-" for k in chart_labels))  # fmt: skip
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            ok(kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path)))
        kubectl("delete", "namespace", NS, RELEASE_NS, "--wait=true", "--timeout=60s")


def test_an_upgrade_adds_a_field_to_the_crd_and_uninstall_keeps_it(
    kubectl: KubectlRun, helm: list[str], adopted: None, tmp_path: Path
) -> None:
    old = tmp_path / "gpufinops-previous"
    shutil.copytree(CHART, old)
    crd_file = old / "files" / "crds" / f"{CRD}.yaml"
    previous = yaml.safe_load(crd_file.read_text())
    schema = previous["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    del schema["properties"]["spec"]["properties"]["inference"]["properties"][FIELD]
    crd_file.write_text(yaml.safe_dump(previous, sort_keys=False))
    chart_args = ["-n", RELEASE_NS, "--set", "admissionPolicy.enabled=false"]

    def release(verb: str, chart: Path) -> None:
        done = subprocess.run([*helm, verb, RELEASE, str(chart), *chart_args,
                               *(["--create-namespace"] if verb == "install" else [])],
                              capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    def crd() -> dict:
        return dict(json.loads(ok(kubectl("get", "crd", CRD, "-o", "json"))))

    release("install", old)
    assert FIELD not in _inference_properties(crd()), "the release installs its own CRD"
    ok(kubectl("create", "namespace", NS))
    refused = kubectl("apply", "-f", "-", input=_workload(with_field=True))
    assert refused.returncode != 0 and FIELD in refused.stderr, refused.stderr

    release("upgrade", CHART)
    assert FIELD in _inference_properties(crd()), "helm upgrade did not update the CRD"
    ok(kubectl("apply", "-f", "-", input=_workload(with_field=True)))
    assert crd()["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    gone = subprocess.run([*helm, "uninstall", RELEASE, "-n", RELEASE_NS, "--wait"],
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    # The CRDs stay, and so does every AIWorkload.
    ok(kubectl("get", "aiw", "kv", "-n", NS))
