"""Print the sha256 of pyproject.toml's dependency tables, as the locks record it.

Only the tables the locks are made from count (``project.dependencies`` and
``project.optional-dependencies``), so editing anything else in pyproject.toml
does not make the locks stale.
"""

import hashlib
import json
import sys
import tomllib
from pathlib import Path


def source_hash(pyproject: Path) -> str:
    project = tomllib.loads(pyproject.read_text())["project"]
    tables = {
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    print(source_hash(root / "pyproject.toml"))
