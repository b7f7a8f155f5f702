"""Running kubectl against the local cluster."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import ClusterError


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl args...``; never raises on a non-zero exit."""
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        return subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    def check(
        self, *args: str, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl args...``; raise ClusterError (with its stderr) on failure."""
        proc = self.run(*args, input=input, timeout=timeout)
        if proc.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc
