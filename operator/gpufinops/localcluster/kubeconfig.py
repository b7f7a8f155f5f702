"""Kubeconfig files: one per client of the apiserver, each with its bearer token."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

CONTEXT = "gpufinops-local"


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, user: str, token: str) -> None:
    """Write a self-contained kubeconfig for ``user`` (the CA embedded), atomically."""
    ca_data = base64.b64encode(ca_cert.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": ca_data},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    tmp.replace(path)
