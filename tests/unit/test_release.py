"""One version: pyproject.toml sets it; the package, the chart and the image carry it,
and the changelog has a section for it."""

import re
import tomllib
from pathlib import Path

import yaml

import gpufinops

ROOT = Path(__file__).resolve().parents[2]


def _version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def test_the_package_reports_the_pyproject_version() -> None:
    assert gpufinops.__version__ == _version()


def test_the_chart_and_its_app_are_the_pyproject_version() -> None:
    chart = yaml.safe_load((ROOT / "helm/gpufinops/Chart.yaml").read_text())
    assert chart["version"] == _version(), "Chart.yaml version"
    assert chart["appVersion"] == _version(), "Chart.yaml appVersion (the image tag by default)"


def test_the_image_is_labelled_with_the_pyproject_version() -> None:
    labels = re.findall(r'org\.opencontainers\.image\.version="([^"]+)"', (
        ROOT / "Dockerfile").read_text())  # fmt: skip
    assert labels == [_version()]


def test_the_changelog_has_the_version_and_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert headings[0] == "Unreleased"
    assert _version() in headings
    assert f"[{_version()}]: " in text, "a link for the version's heading"
