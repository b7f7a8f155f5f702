"""CustomResourceDefinitions from the repository's ``crds/`` directory."""

from __future__ import annotations

from pathlib import Path

import yaml

from .kubectl import Kubectl


def crd_files(crds_dir: Path) -> list[Path]:
    if not crds_dir.is_dir():
        return []
    return sorted(p for p in crds_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def crd_names(path: Path) -> list[str]:
    """The names of the CustomResourceDefinitions in one YAML file."""
    return [
        str(doc["metadata"]["name"])
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]


def install(kubectl: Kubectl, crds_dir: Path, *, timeout: float = 60.0) -> list[str]:
    """Apply every file of CRDs and wait for each CRD to be Established; return their names."""
    files = [path for path in crd_files(crds_dir) if crd_names(path)]
    if not files:
        return []
    args = ["apply", "--server-side", "--force-conflicts"]
    for path in files:
        args += ["-f", str(path)]
    kubectl.check(*args)
    names = [name for path in files for name in crd_names(path)]
    kubectl.check(
        "wait",
        "--for=condition=Established",
        f"--timeout={timeout:.0f}s",
        *(f"crd/{name}" for name in names),
        timeout=timeout + 10,
    )
    return names
