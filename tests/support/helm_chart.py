"""The chart as ``helm template`` renders it: what the chart's unit test modules share.

helm is the binary built by ``hack/build-helm.sh`` (built on first use, then cached).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufinops.localcluster.binaries import find_helm
from gpufinops.localcluster.errors import ClusterError

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gpufinops"
NAMESPACE = "gpufinops-system"


def helm_binary() -> Path:
    """The helm binary; the test fails (never skips) without it."""
    try:
        return find_helm()
    except ClusterError as exc:
        pytest.fail(f"helm is not available: {exc}", pytrace=False)


def template(
    helm: Path, *args: str, release: str = "gpufinops"
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart with raw arguments (``-f FILE``, ``--set K=V``)."""
    return subprocess.run(
        [str(helm), "template", release, str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def rendered(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The documents of a successful ``template``."""
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = kinds(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
