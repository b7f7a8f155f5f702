"""Daemons of the local cluster: started detached, tracked by pid files, awaited by polling.

Each daemon ``name`` writes its output to ``<log_dir>/<name>.log`` and is recorded in
``<run_dir>/<name>.pid`` (pid and executable), so that a later process (``down``
from another shell) finds and stops it, and a pid reused by an unrelated process is
not mistaken for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ClusterError

# Children started by this interpreter, reaped when stopped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: Sequence[str]
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return pid_file(self.run_dir, self.name)

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def _alive(pid: int, exe: str) -> bool:
    """True when ``pid`` is a live (not zombie) process running ``exe``."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except (OSError, UnicodeDecodeError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and argv0 == exe


def running_pid(run_dir: Path, name: str) -> int | None:
    """The pid of daemon ``name`` when its pid file names a live process, else None."""
    try:
        record = json.loads(pid_file(run_dir, name).read_text())
        pid, exe = int(record["pid"]), str(record["exe"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    child = _CHILDREN.get(pid)
    if child is not None:
        # Our own child: ask the kernel directly. Its /proc cmdline is still this
        # interpreter's between fork and exec, which must not read as "exited".
        return pid if child.poll() is None else None
    return pid if _alive(pid, exe) else None


def start(daemon: Daemon) -> int:
    """Start ``daemon`` in its own session (it outlives this interpreter); return its pid."""
    daemon.run_dir.mkdir(parents=True, exist_ok=True)
    daemon.log_dir.mkdir(parents=True, exist_ok=True)
    with daemon.log_file.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(daemon.argv)}\n".encode())
        log.flush()
        child = subprocess.Popen(
            list(daemon.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[child.pid] = child
    tmp = daemon.pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": child.pid, "exe": daemon.argv[0]}) + "\n")
    tmp.replace(daemon.pid_file)
    return child.pid


def stop(run_dir: Path, name: str, *, timeout: float = 20.0) -> None:
    """Stop daemon ``name`` (SIGTERM, then SIGKILL after ``timeout``) and remove its pid file."""
    pid = running_pid(run_dir, name)
    if pid is not None:
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(run_dir, name, timeout):
            _signal_group(pid, signal.SIGKILL)
            if not _wait_gone(run_dir, name, 5.0):
                raise ClusterError(f"{name} (pid {pid}) did not exit after SIGKILL")
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            child.wait()
    pid_file(run_dir, name).unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Each daemon leads its own session and process group (start_new_session).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(run_dir: Path, name: str, timeout: float) -> bool:
    try:
        poll(lambda: running_pid(run_dir, name) is None, timeout=timeout, what=f"{name} to exit")
    except ClusterError:
        return False
    return True


def poll(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Call ``check`` until it is true, backing off from 20 ms to 500 ms; raise at the deadline."""
    deadline = time.monotonic() + timeout
    interval = 0.02
    while not check():
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def wait_ready(daemon: Daemon, check: Callable[[], bool], *, timeout: float) -> None:
    """Wait until ``check`` passes; fail at once, with its log, if the daemon dies."""

    def ready() -> bool:
        if check():
            return True
        if running_pid(daemon.run_dir, daemon.name) is None:
            raise ClusterError(f"{daemon.name} exited during start-up\n{log_tail(daemon)}")
        return False

    try:
        poll(ready, timeout=timeout, what=f"{daemon.name} to become ready")
    except ClusterError as exc:
        if "timed out" in str(exc):
            raise ClusterError(f"{exc}\n{log_tail(daemon)}") from None
        raise


def log_tail(daemon: Daemon, lines: int = 30) -> str:
    try:
        text = daemon.log_file.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {daemon.log_file})"
    return f"--- last lines of {daemon.log_file}:\n" + "\n".join(text[-lines:])
