"""The real API server rejects every invalid manifest with a message naming the field."""

from pathlib import Path

import pytest
from tests.conftest import EXAMPLES_DIR, invalid_manifests

INVALID = invalid_manifests()


@pytest.mark.parametrize(("path", "doc", "expect"), INVALID, ids=[p.stem for p, _, _ in INVALID])
def test_api_server_rejects(kubectl, path: Path, doc: dict, expect: str) -> None:
    result = kubectl("apply", "--dry-run=server", "-n", "default", "-f", str(path))
    assert result.returncode != 0, f"{path.name} was accepted:\n{result.stdout}"
    assert expect in result.stderr, result.stderr


def test_examples_apply_and_get_shows_the_columns(kubectl) -> None:
    ns = "examples"
    kubectl("create", "namespace", ns)
    applied = kubectl("apply", "-n", ns, "-f", str(EXAMPLES_DIR))
    assert applied.returncode == 0, applied.stderr
    assert "aiworkload.gpufinops.dev/llama-3-8b created" in applied.stdout
    got = kubectl("get", "aiw", "-n", ns)
    assert got.returncode == 0, got.stderr
    header = got.stdout.splitlines()[0].split()
    assert header == [
        "NAME",
        "TYPE",
        "TARGET",
        "MIN",
        "MAX",
        "REPLICAS",
        "DESIRED",
        "PLACEMENT",
        "SPEND",
        "(MTD)",
        "BUDGET",
        "%",
        "READY",
        "AGE",
    ]
    names = sorted(line.split()[0] for line in got.stdout.splitlines()[1:])
    assert names == ["finetune-llama-3-8b", "llama-3-8b", "notebook-alice"]


def test_defaults_are_applied_by_the_api_server(kubectl) -> None:
    manifest = """
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {name: defaults, namespace: default}
spec:
  type: Inference
  costAllocation: {team: search}
  inference:
    targetRef: {name: llm}
    maxReplicas: 3
"""
    created = kubectl("apply", "-f", "-", input=manifest)
    assert created.returncode == 0, created.stderr
    got = kubectl(
        "get",
        "aiw",
        "defaults",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.mode} {.spec.inference.minReplicas} {.spec.inference.metrics.server} "
        "{.spec.inference.forecast.leadTimeSeconds} {.spec.inference.forecast.quantile}",
    )
    assert got.stdout == "Active 1 vllm 180 0.9"


def test_explain_teaches_the_api(kubectl) -> None:
    result = kubectl("explain", "aiw.spec.inference.forecast.leadTimeSeconds")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "about the time a new replica takes to become ready" in text


def test_scale_subresource_sets_the_manual_override(kubectl) -> None:
    manifest = """
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {name: scalable, namespace: default}
spec:
  type: Inference
  costAllocation: {team: search}
  inference: {targetRef: {name: llm}, maxReplicas: 5}
"""
    assert kubectl("apply", "-f", "-", input=manifest).returncode == 0
    scaled = kubectl("scale", "aiw/scalable", "-n", "default", "--replicas=2")
    assert scaled.returncode == 0, scaled.stderr
    got = kubectl("get", "aiw", "scalable", "-n", "default", "-o", "jsonpath={.spec.replicas}")
    assert got.stdout == "2"
    too_many = kubectl("scale", "aiw/scalable", "-n", "default", "--replicas=9")
    assert too_many.returncode != 0
    assert "spec.replicas must be less than or equal to spec.inference.maxReplicas" in (
        too_many.stderr
    )


def test_a_converted_keda_scaled_object_is_accepted_by_the_api_server(
    kubectl, tmp_path: Path
) -> None:
    import subprocess
    import sys

    import yaml
    from tests.unit.test_keda_convert import SCALED_OBJECT

    source = tmp_path / "scaledobject.yaml"
    source.write_text(yaml.safe_dump({**SCALED_OBJECT, "metadata": {"name": "llama"}}))
    done = subprocess.run(
        [sys.executable, "-m", "gpufinops", "convert", "keda", "-f", str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    applied = kubectl("apply", "--dry-run=server", "-n", "default", "-f", "-", input=done.stdout)
    assert applied.returncode == 0, applied.stderr
    assert "aiworkload.gpufinops.dev/llama created (server dry run)" in applied.stdout
