"""The release workflow ships what the project says it ships: the image and the chart to
an OCI registry, both signed, the image's SBOM attested, only for the version that
pyproject.toml sets."""

from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "release.yaml"


def _workflow() -> dict[Any, Any]:
    return dict(yaml.safe_load(WORKFLOW.read_text()))


def _runs() -> str:
    steps = _workflow()["jobs"]["release"]["steps"]
    return "\n".join(str(s.get("run", "")) for s in steps)


def test_it_runs_on_version_tags_and_by_hand_with_keyless_signing_rights() -> None:
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["tags"] == ["v*.*.*"] and "workflow_dispatch" in triggers
    assert workflow["permissions"] == {
        "contents": "write", "packages": "write", "id-token": "write"
    }  # fmt: skip


def test_a_tag_must_be_the_pyproject_version_and_the_unit_tests_pass_first() -> None:
    runs = _runs()
    assert '"v${version}"' in runs and "pyproject.toml" in runs
    assert "make bootstrap" in runs and "tests/unit" in runs


def test_image_and_chart_are_pushed_and_signed_and_the_sbom_attested() -> None:
    steps = _workflow()["jobs"]["release"]["steps"]
    build = next(s for s in steps if str(s.get("uses", "")).startswith("docker/build-push-action"))
    assert build["with"]["push"] is True and "linux/arm64" in build["with"]["platforms"]
    runs = _runs()
    assert 'cosign sign --yes "$IMAGE"' in runs
    assert "cosign attest --yes --type cyclonedx --predicate sbom.cdx.json" in runs
    assert "hack/sbom.py requirements.lock" in runs
    assert "helm push" in runs and "oci://" in runs
    assert 'cosign sign --yes "${REGISTRY}/charts/gpufinops@${digest}"' in runs
