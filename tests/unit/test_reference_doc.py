"""docs/reference.md is exactly what the API models generate, and covers every field."""

import re
from pathlib import Path

from gpufinops.api.crd import crd
from gpufinops.api.reference import reference_markdown
from gpufinops.cli.main import main

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_committed_reference_matches_generated() -> None:
    assert REFERENCE.read_text() == reference_markdown(), (
        "docs/reference.md is stale: regenerate it with `gpufinops reference > docs/reference.md`"
    )


def test_cli_prints_the_reference(capsys) -> None:
    assert main(["reference"]) == 0
    assert capsys.readouterr().out == reference_markdown()


def _fields(node: dict, path: str):
    for name, sub in (node.get("properties") or {}).items():
        yield f"{path}.{name}", sub
        yield from _fields(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _fields(node["items"], f"{path}[]")


def test_every_field_and_rule_of_the_crd_is_in_the_reference() -> None:
    text = reference_markdown()
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    sections = dict(
        (m.group(1), m.end()) for m in re.finditer(r"^### `([^`]+)`$", text, re.MULTILINE)
    )
    for part in ("spec", "status"):
        for path, node in _fields(schema[part], part):
            parent, _, name = path.rpartition(".")
            assert parent in sections, f"no section for {parent}"
            body = text[sections[parent] :].split("\n### ", 1)[0]
            assert f"| `{name}` |" in body, f"{path} missing from the reference"
            for r in node.get("x-kubernetes-validations", []):
                assert r["message"] in text, f"rule of {path} missing: {r['message']}"
            if node.get("type") == "object" and node.get("properties"):
                assert path in sections, f"no section for {path}"


def test_links_point_at_sections() -> None:
    text = reference_markdown()
    anchors = {
        "".join(c for c in m.group(1).lower() if c.isalnum() or c in "-_")
        for m in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)
    }
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= anchors, links - anchors


def test_table_rows_have_five_cells() -> None:
    """A stray | in a description or pattern would shift the columns."""
    for line in reference_markdown().splitlines():
        if line.startswith("| `"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            assert len(cells) == 5, line
