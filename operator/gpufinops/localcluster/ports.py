"""Loopback ports of the local cluster, picked once and recorded in ``state.json``.

Ports are picked at random below the kernel's ephemeral range, so that outgoing
connections (which take ephemeral ports) cannot grab them between two runs.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
from collections.abc import Iterable
from pathlib import Path

HOST = "127.0.0.1"
PORT_NAMES = (
    "etcd-client",
    "etcd-peer",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "prometheus",
)
_LOW, _HIGH = 20000, 32000


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick(count: int, taken: Iterable[int]) -> list[int]:
    """``count`` distinct free ports, none in ``taken``; sockets are held while picking."""
    avoid = set(taken)
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 50):
            if len(ports) == count:
                break
            port = random.randrange(_LOW, _HIGH)
            if port in avoid:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((HOST, port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            avoid.add(port)
            ports.append(port)
        while len(ports) < count:  # crowded range: let the kernel choose
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            held.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
    return ports


class PortMap:
    """Named ports persisted in ``<state_dir>/state.json``."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self.ports: dict[str, int] = {}
        if state_file.exists():
            data = json.loads(state_file.read_text())
            self.ports = {str(k): int(v) for k, v in data.get("ports", {}).items()}

    def __getitem__(self, name: str) -> int:
        return self.ports[name]

    def ensure(self, *, recheck: bool) -> None:
        """Give every name a port; with ``recheck``, replace recorded ports now in use."""
        missing = [n for n in PORT_NAMES if n not in self.ports]
        if recheck:
            missing += [n for n in PORT_NAMES if n in self.ports and not port_is_free(self[n])]
        if missing:
            keep = [p for n, p in self.ports.items() if n not in missing]
            for name, port in zip(missing, _pick(len(missing), keep), strict=True):
                self.ports[name] = port
        self.save()

    def save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps({"ports": self.ports}, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)
