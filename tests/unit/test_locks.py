"""The locks are what pyproject.toml asks for, every pin carries hashes, and the tests
run on exactly the locked versions (what the image ships)."""

import importlib.metadata
import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME, DEV = ROOT / "requirements.lock", ROOT / "requirements-dev.lock"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _lock_source() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_source", ROOT / "hack/lock_source.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins(lock: Path) -> dict[str, str]:
    """Name -> version of the pins that apply to this interpreter (markers evaluated)."""
    out: dict[str, str] = {}
    env = default_environment()
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker and not Requirement(f"x ; {marker}").marker.evaluate(env):  # type: ignore[union-attr]
            continue
        out[canonicalize_name(name)] = version
    return out


def _blocks(lock: Path) -> list[str]:
    """Each pin with its continuation lines (its hashes)."""
    text = lock.read_text()
    return [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if not b.startswith("#")]


def _requirements() -> tuple[list[Requirement], list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    extras = project["optional-dependencies"]
    dev = [Requirement(r) for group in ("dev", "sim") for r in extras[group]]
    return runtime, [r for r in dev if canonicalize_name(r.name) != "gpufinops"]


@pytest.mark.parametrize("lock", [RUNTIME, DEV], ids=lambda p: p.name)
def test_a_lock_is_made_from_the_pyproject_of_now(lock: Path) -> None:
    recorded = re.search(r"^# pyproject-dependencies-sha256: (\w+)$", lock.read_text(), re.M)
    assert recorded, f"{lock.name} has no pyproject-dependencies-sha256 line"
    now = _lock_source().source_hash(ROOT / "pyproject.toml")
    assert recorded.group(1) == now, (
        f"pyproject.toml's dependencies changed since {lock.name} was made: run `make lock`"
    )


@pytest.mark.parametrize("lock", [RUNTIME, DEV], ids=lambda p: p.name)
def test_every_pin_carries_hashes(lock: Path) -> None:
    blocks = _blocks(lock)
    assert blocks
    unhashed = [b.split()[0] for b in blocks if "--hash=sha256:" not in b]
    assert not unhashed, f"pins without hashes in {lock.name}: {unhashed}"


def test_every_requirement_of_pyproject_is_pinned_within_its_range() -> None:
    runtime, dev = _requirements()
    for lock, requirements in ((RUNTIME, runtime), (DEV, runtime + dev)):
        pinned = pins(lock)
        for req in requirements:
            version = pinned.get(canonicalize_name(req.name))
            assert version is not None, f"{req.name} is not in {lock.name}"
            assert req.specifier.contains(version, prereleases=True), (
                f"{lock.name} pins {req.name}=={version}, outside pyproject's {req}"
            )


def test_the_dev_lock_pins_the_runtime_lock_unchanged() -> None:
    runtime, dev = pins(RUNTIME), pins(DEV)
    differ = {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v}
    assert not differ, f"runtime pins changed in the dev lock: {differ}"


def test_the_tests_run_on_the_locked_versions() -> None:
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
    }
    locked = pins(DEV)
    wrong = {n: (v, installed.get(n)) for n, v in locked.items() if installed.get(n) != v}
    assert not wrong, f"installed versions differ from the dev lock (run `make bootstrap`): {wrong}"
    extra = sorted(set(installed) - set(locked) - {"gpufinops", "pip"})
    assert not extra, f"installed but not locked: {extra}"


def test_the_sbom_lists_every_locked_package_and_is_valid_cyclonedx() -> None:
    import json
    import subprocess
    import sys

    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    made = subprocess.run(
        [sys.executable, str(ROOT / "hack/sbom.py"), str(RUNTIME)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(made.stdout) is None
    bom = json.loads(made.stdout)
    listed = {(c["name"].lower(), c["version"]) for c in bom["components"]}
    locked = {
        (m.group(1).lower(), m.group(2))
        for line in RUNTIME.read_text().splitlines()
        if (m := PIN.match(line)) is not None
    }
    assert listed == locked
    assert all(c["hashes"] for c in bom["components"])
    assert bom["metadata"]["component"]["version"] == _lock_source_version()


def _lock_source_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])
