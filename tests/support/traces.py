"""Where the tests read the public production traces, and how they skip without them.

The traces are not in the repository: they are read from ``../shared/traces``
next to its root (or the folder ``$GPUFINOPS_TRACES_DIR`` names, as for ``gpufinops
demo``). A test that needs one skips when it is absent, and the skip reason names
the file and how to provide it, so that a CI run without the folder says in its
summary which tests did not run and why, instead of passing quietly. Each code path
such a test exercises also has a test on a small synthetic series, which always runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpufinops.cli.demo import TRACES_ENV

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRACES = ROOT.parent / "shared" / "traces"


def traces_dir() -> Path:
    """The traces folder: ``$GPUFINOPS_TRACES_DIR`` when set, else ``../shared/traces``."""
    return Path(os.environ.get(TRACES_ENV) or DEFAULT_TRACES)


def missing_reason(path: Path) -> str:
    """Why a test that needs ``path`` is skipped, and how to make it run."""
    return (
        f"trace {path} not found: the public traces are read from ../shared/traces next to "
        f"the repository root, or from ${TRACES_ENV}; put the shared traces folder there "
        f"(or set {TRACES_ENV} to a copy of it) to run this test"
    )


def trace_path(name: str) -> Path:
    """The trace file ``name``; skips the calling test, saying why, when it is absent."""
    path = traces_dir() / name
    if not path.is_file():
        pytest.skip(missing_reason(path))
    return path
