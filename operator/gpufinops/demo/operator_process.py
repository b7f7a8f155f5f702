"""``gpufinops run`` as a child process of the demo.

A child rather than Kopf in the demo's own interpreter: Kopf owns its event
loop and installs signal handlers, its log would garble the screen, and a child
can be stopped (and checked gone) as a whole. It is also exactly the command a
user runs in production, so the demo shows the real thing. The child leads its
own process group, so a Ctrl-C on the terminal reaches only the demo, which
then stops it in order; and it is told to die with the demo (Linux
``PR_SET_PDEATHSIG``) so even a killed demo leaves no operator behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking the kernel to SIGTERM the child when the demo exits.

    libc is resolved here, in the parent: between fork and exec the child may
    only make the system call, not load anything (other threads may hold locks).
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


class OperatorProcess:
    """The operator, with its liveness and metrics on free loopback ports."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.live_port, self.metrics_port = free_port(), free_port()
        self.log = log
        self.argv = [
            sys.executable, "-m", "gpufinops", "run", *args, "--log-format", "plain",
            "--liveness", f"http://127.0.0.1:{self.live_port}/healthz",
            "--metrics-address", f"127.0.0.1:{self.metrics_port}",
        ]  # fmt: skip
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_death_signal(),
            )  # fmt: skip

    def state(self) -> str:
        """One phrase for the screen: starting, running or exited."""
        if self.process is None:
            return "not started"
        code = self.process.poll()
        if code is not None:
            return f"exited with {code} (log: {self.log})"
        return f"running, pid {self.process.pid}" if self.live() else "starting"

    def live(self) -> bool:
        url = f"http://127.0.0.1:{self.live_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Kopf finishes its handlers), SIGKILL after ``timeout``; reaps the child."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
