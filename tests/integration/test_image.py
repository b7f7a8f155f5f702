"""The operator image, built here without a Docker engine (``hack/build-image.sh``:
Debian bookworm from debootstrap, requirements.lock installed with --require-hashes,
committed by buildah): as its non-root user, its root filesystem runs
``gpufinops run --help`` and the operator against the local cluster, and the image
carries the Dockerfile's configuration.

Building needs root (debootstrap, chroot, buildah's vfs storage) and the package
registries (Debian, PyPI); the base is cached in ~/.cache/gpufinops/image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.kube import KubectlRun, ok
from tests.support.operator import running_operator
from tests.support.polling import poll

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
USER = "10001:10001"
ENV = {"PATH": "/opt/gpufinops/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
NS = "image-test"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (debootstrap, chroot, buildah vfs storage)")
    out = tmp_path_factory.mktemp("image")
    built = subprocess.run(
        [str(ROOT / "hack" / "build-image.sh")], cwd=ROOT,
        env={**os.environ, "IMAGE_DIR": str(out), "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-5000:]
    yield out
    shutil.rmtree(out / "rootfs", ignore_errors=True)


def in_image(image: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` in the image's root filesystem, as its non-root user."""
    return subprocess.run(
        ["/usr/sbin/chroot", f"--userspec={USER}", str(image / "rootfs"), *argv],
        env=ENV, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_image_runs_gpufinops_as_its_non_root_user(image: Path) -> None:
    helped = in_image(image, "/opt/gpufinops/bin/gpufinops", "run", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "usage: gpufinops run" in helped.stdout
    version = in_image(image, "/opt/gpufinops/bin/gpufinops", "--version")
    assert version.stdout.strip() == f"gpufinops {VERSION}", version.stdout + version.stderr
    assert in_image(image, "/usr/bin/id", "-u").stdout.strip() == "10001"


def test_the_image_holds_exactly_the_locked_packages_and_no_pip(image: Path) -> None:
    listed = in_image(image, "/opt/gpufinops/bin/python", "-c", (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version "
        "for d in m.distributions()}))"))  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    installed = json.loads(listed.stdout)
    assert installed.pop("gpufinops") == VERSION
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from test_locks import RUNTIME, pins  # the lock's pins for Linux and Python 3.11

    assert installed == pins(RUNTIME)
    assert "pip" not in installed and "setuptools" not in installed


def test_the_image_is_configured_as_the_dockerfile_says(image: Path) -> None:
    buildah = ["buildah", "--storage-driver", "vfs"]
    inspected = subprocess.run(
        [*buildah, "inspect", "--type", "image", f"gpufinops:{VERSION}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert inspected.returncode == 0, inspected.stderr
    config = json.loads(inspected.stdout)["OCIv1"]["config"]
    assert config["User"] == USER
    assert config["Entrypoint"] == ["/opt/gpufinops/bin/gpufinops", "run"]
    assert sorted(config["ExposedPorts"]) == ["8080/tcp", "9100/tcp"]
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    assert (image / f"gpufinops-{VERSION}.oci.tar").stat().st_size > 10_000_000
    sbom = json.loads((image / "sbom.cdx.json").read_text())
    assert sbom["metadata"]["component"]["version"] == VERSION


def test_the_images_operator_works_against_the_local_cluster(
    image: Path, kubeconfig: Path, kubectl: KubectlRun, tmp_path: Path
) -> None:
    inside = Path("/tmp/kubeconfig")
    target = image / "rootfs" / inside.relative_to("/")
    shutil.copyfile(kubeconfig, target)
    target.chmod(0o644)
    ok(kubectl("create", "namespace", NS))
    chroot = ("/usr/sbin/chroot", f"--userspec={USER}", str(image / "rootfs"),
              "/opt/gpufinops/bin/gpufinops")  # fmt: skip
    try:
        with running_operator(inside, tmp_path, "--namespace", NS, "--sync-seconds", "1",
                              command=chroot, environ=ENV):  # fmt: skip
            workload = f"""
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {{name: notebook, namespace: {NS}}}
spec:
  type: Experiment
  costAllocation: {{team: research}}
  experiment:
    targetRef: {{kind: Deployment, name: notebook}}
"""
            ok(kubectl("apply", "-f", "-", input=workload))

            def accepted() -> bool:
                got = json.loads(ok(kubectl("get", "aiw", "notebook", "-n", NS, "-o", "json")))
                conditions = (got.get("status") or {}).get("conditions") or []
                return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

            poll(accepted, "the image's operator to accept the workload (Ready)")
            # While it runs, so that its finalizer is released.
            ok(kubectl("delete", "aiw", "notebook", "-n", NS, "--wait=true", "--timeout=60s"))
    finally:
        kubectl("delete", "namespace", NS, "--wait=true", "--timeout=60s")
