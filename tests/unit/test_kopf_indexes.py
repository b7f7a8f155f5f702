"""Every Kopf index a handler reads is registered: a lost ``@kopf.index`` decorator
otherwise shows only at run time, as a KeyError in the handler that reads it."""

import re
from pathlib import Path

import kopf

import gpufinops.handlers  # noqa: F401  (registers the handlers)

HANDLERS = Path(__file__).resolve().parents[2] / "operator" / "gpufinops" / "handlers"
READS = (
    r'indexes\["(\w+)"\]',
    r'indexes\.get\("(\w+)"',
    r"indexes\[k\] for k in \(([^)]*)\)",
)


def read_indexes() -> set[str]:
    names: set[str] = set()
    for path in HANDLERS.glob("*.py"):
        text = path.read_text()
        for pattern in READS:
            for found in re.findall(pattern, text):
                names |= set(re.findall(r"\w+", found))
        listed = re.search(r"_INDEXES = \(([^)]*)\)", text)
        if listed:
            names |= set(re.findall(r'"(\w+)"', listed.group(1)))
    return names


def test_every_index_read_is_registered() -> None:
    registered = {h.id for h in kopf.get_default_registry()._indexing.get_all_handlers()}
    read = read_indexes()
    assert {"pods_by_node", "pdbs", "deployments", "gpu_pods"} <= read  # the scan sees them
    assert not read - registered, f"indexes read but not registered: {sorted(read - registered)}"
