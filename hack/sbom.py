"""Write a CycloneDX 1.5 SBOM (JSON) of the image's Python packages, from requirements.lock.

The image installs exactly the lock (``pip install --require-hashes``), so the lock
is the list of what it ships: each pin becomes a component with its purl and the
sha256 of every file the lock accepts for it. No clock, no random serial number: the
same lock gives the same SBOM.

    python hack/sbom.py [requirements.lock] > sbom.cdx.json
"""

import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def components(lock_text: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock_text):
        match = PIN.match(block.splitlines()[0]) if block and not block.startswith("#") else None
        if match is None:
            continue
        name, version, marker = match.groups()
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": f"pkg:pypi/{name.lower()}@{version}",
            "name": name,
            "version": version,
            "purl": f"pkg:pypi/{name.lower()}@{version}",
            "hashes": [{"alg": "SHA-256", "content": h} for h in HASH.findall(block)],
        }
        if marker:
            component["properties"] = [{"name": "python:environment-marker", "value": marker}]
        out.append(component)
    return out


def sbom(lock: Path, pyproject: Path) -> dict[str, Any]:
    project = tomllib.loads(pyproject.read_text())["project"]
    parts = components(lock.read_text())
    root = f"pkg:pypi/{project['name']}@{project['version']}"
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "component": {
                "type": "application",
                "bom-ref": root,
                "name": project["name"],
                "version": project["version"],
                "purl": root,
                "licenses": [{"license": {"id": project["license"]}}],
            }
        },
        "components": parts,
        "dependencies": [{"ref": root, "dependsOn": [c["bom-ref"] for c in parts]}],
    }


if __name__ == "__main__":
    lock = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "requirements.lock"
    json.dump(sbom(lock, ROOT / "pyproject.toml"), sys.stdout, indent=2)
    sys.stdout.write("\n")
