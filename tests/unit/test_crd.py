"""The committed CRD is exactly what the API models generate, and is structural."""

from pathlib import Path
from typing import Any

import yaml

from gpufinops.api.crd import crd, crd_yaml
from gpufinops.cli.main import main

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "aiworkloads.gpufinops.dev.yaml"


def _walk(node: dict[str, Any], path: str = ""):
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_matches_generated() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), (
        "crds/aiworkloads.gpufinops.dev.yaml is stale: regenerate it with "
        "`gpufinops crd > crds/aiworkloads.gpufinops.dev.yaml`"
    )


def test_cli_prints_the_crd(capsys) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_every_field_is_described_for_kubectl_explain() -> None:
    schema = _schema()
    missing = [
        path
        for path, node in _walk(schema["properties"]["spec"], ".spec")
        if path and not path.endswith("[]") and not node.get("description")
    ]
    missing += [
        path
        for path, node in _walk(schema["properties"]["status"], ".status")
        if path and not path.endswith("[]") and not node.get("description")
    ]
    assert missing == []


def test_schema_is_structural() -> None:
    """One type per node, nothing the API server refuses in a structural schema."""
    for path, node in _walk(_schema()):
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "title", "const", "$defs"):
            assert banned not in node, f"{path} has {banned}"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert node.get("additionalProperties") is not False, path
        assert "default" not in node or node["default"] is not None, path
        if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
            node.get("exclusiveMinimum"), bool
        ):
            raise AssertionError(f"{path}: exclusiveMinimum must be a boolean in OpenAPI v3.0")


def test_crd_identity_and_columns() -> None:
    doc = yaml.safe_load(CRD_FILE.read_text())
    assert doc["metadata"]["name"] == "aiworkloads.gpufinops.dev"
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "AIWorkload",
        "aiworkloads",
        ["aiw"],
    )
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == [
        "Type",
        "Target",
        "Min",
        "Max",
        "Replicas",
        "Desired",
        "Placement",
        "Spend (MTD)",
        "Budget %",
        "Ready",
        "Age",
    ]


def test_cel_rules_name_their_field_and_reason() -> None:
    rules = [
        (path, r)
        for path, node in _walk(_schema())
        for r in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 12
    for path, r in rules:
        assert r["message"] and r["rule"] and r["reason"], path
