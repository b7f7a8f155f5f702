"""Shared test helpers: where the repository's manifests live."""

from pathlib import Path

import pytest
import yaml
from hypothesis import settings

# Tests are deterministic: hypothesis explores the same examples on every run (a
# failure found while developing is kept as an explicit example, not left to chance).
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.load_profile("deterministic")

ROOT = Path(__file__).resolve().parent.parent
INVALID_DIR = ROOT / "tests" / "manifests" / "invalid"
EXAMPLES_DIR = ROOT / "examples"


def invalid_manifests() -> list[tuple[Path, dict, str]]:
    """Each invalid manifest with the rejection message it must produce."""
    out = []
    for path in sorted(INVALID_DIR.glob("*.yaml")):
        text = path.read_text()
        expects = [
            line.removeprefix("# expect:").strip()
            for line in text.splitlines()
            if line.startswith("# expect:")
        ]
        assert expects, f"{path.name} has no '# expect:' line"
        out.append((path, yaml.safe_load(text), expects[0]))
    return out


def example_workloads() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "AIWorkload":
                out.append((path, doc))
    return out


@pytest.fixture
def repo_root() -> Path:
    return ROOT
