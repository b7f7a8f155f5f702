"""Where the Alertmanager binary comes from: the Debian package, like Prometheus.

Budget alerts are delivered to a real Alertmanager in the integration tests
and the local demo, so the payload is checked by the server that pages people,
not by a fake that accepts anything.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .binaries import _apt_install
from .errors import ClusterError

PACKAGE = "prometheus-alertmanager"
"""Debian names the package and its binary after the Prometheus project."""


def find_alertmanager(*, install: bool) -> Path:
    """The Alertmanager server binary, installing the Debian package when missing."""
    for candidate in (
        Path("/usr/bin/prometheus-alertmanager"),
        shutil.which("prometheus-alertmanager"),
        shutil.which("alertmanager"),
    ):
        if candidate is not None and os.access(candidate, os.X_OK):
            return Path(candidate)
    if not install:
        raise ClusterError("alertmanager not found")
    _apt_install(PACKAGE)
    return find_alertmanager(install=False)
