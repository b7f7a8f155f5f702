"""`gpufinops run` as a real process for integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.polling import describe_on_timeout, poll
from tests.support.promserver import free_port, http_ok

START_DEADLINE = 60.0


@dataclass
class RunningOperator:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_url: str

    def kill(self) -> None:
        """SIGKILL, as a node failure or the OOM killer would: no cleanup handler runs."""
        self.process.kill()
        self.process.wait()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the operator's own ``name`` samples whose labels include ``labels``."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@contextmanager
def running_operator(
    kubeconfig: Path,
    log_dir: Path,
    *args: str,
    command: Sequence[str] = (sys.executable, "-m", "gpufinops"),
    environ: Mapping[str, str] | None = None,
) -> Iterator[RunningOperator]:
    """Start the operator with ``args``, wait for its liveness endpoint, stop it after.

    ``command`` runs gpufinops (another installation of it: the image's, in a chroot);
    ``environ`` replaces this process' environment (``KUBECONFIG`` is added to it).
    """
    live, metrics = free_port(), free_port()
    liveness = f"http://127.0.0.1:{live}/healthz"
    log = log_dir / "operator.log"
    env = {**(os.environ if environ is None else environ), "KUBECONFIG": str(kubeconfig)}
    argv = [*command, "run", *args, "--log-format", "json",
            "--liveness", liveness,
            "--metrics-address", f"127.0.0.1:{metrics}"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with describe_on_timeout(lambda: f"operator log:\n{_tail(log)}"):
            poll(lambda: _answers(proc, log, liveness), f"the operator to answer on {liveness}",
                 deadline=START_DEADLINE)  # fmt: skip
        yield RunningOperator(proc, log, f"http://127.0.0.1:{metrics}/metrics")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(proc: subprocess.Popen[bytes], log: Path, url: str) -> bool:
    """Whether the starting operator answers at ``url``; fails at once if it exited."""
    if proc.poll() is not None:
        raise AssertionError(f"operator did not start:\n{_tail(log)}")
    return http_ok(url)


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]
