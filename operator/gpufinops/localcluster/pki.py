"""Keys, certificates and bearer tokens of the local cluster (made with the openssl CLI).

Everything is generated once into ``<state_dir>/pki`` and reused by later runs:
a CA, the kube-apiserver serving certificate signed by it, the service-account
signing key pair, and a static token file (``--token-auth-file``) with one user
per client of the apiserver.
"""

from __future__ import annotations

import csv
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import ClusterError

# user name -> groups. The scheduler gets the role the RBAC bootstrap policy grants
# its user. The controller-manager runs every controller with its own identity
# (--use-service-account-credentials=false), which needs cluster-admin: minting a
# service-account token per controller, one after another, doubles the start-up.
USERS: dict[str, tuple[str, ...]] = {
    "admin": ("system:masters",),
    "system:kube-controller-manager": ("system:masters",),
    "system:kube-scheduler": (),
    "kwok": ("system:masters",),
}

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"

_OPENSSL_CONFIG = f"""\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = gpufinops-local
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @alt_names
[alt_names]
DNS.1 = localhost
DNS.2 = kubernetes
DNS.3 = kubernetes.default
DNS.4 = kubernetes.default.svc
DNS.5 = kubernetes.default.svc.cluster.local
IP.1 = 127.0.0.1
IP.2 = {KUBERNETES_SERVICE_IP}
"""


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    @property
    def token_file(self) -> Path:
        return self.dir / "tokens.csv"

    def token(self, user: str) -> str:
        """The bearer token of ``user`` from the static token file."""
        with self.token_file.open(newline="") as f:
            for row in csv.reader(f):
                if len(row) >= 2 and row[1] == user:
                    return row[0]
        raise ClusterError(f"no token for {user} in {self.token_file}")


def ensure_pki(pki_dir: Path) -> Pki:
    """Create whatever part of the PKI is missing and return it."""
    if shutil.which("openssl") is None:
        raise ClusterError("the openssl CLI is required to generate the cluster's certificates")
    pki = Pki(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True)
    pki_dir.chmod(0o700)
    config = pki_dir / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        _openssl(
            "req", "-x509", "-config", str(config), "-extensions", "v3_ca",
            "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
            "-subj", "/CN=gpufinops-local-ca",
            "-keyout", str(pki.ca_key), "-out", str(pki.ca_cert),
        )  # fmt: skip
        pki.serving_cert.unlink(missing_ok=True)
    if not (pki.serving_cert.exists() and pki.serving_key.exists()):
        csr = pki_dir / "apiserver.csr"
        _openssl(
            "req", "-new", "-config", str(config), "-newkey", "rsa:2048", "-nodes",
            "-subj", "/CN=kube-apiserver", "-keyout", str(pki.serving_key), "-out", str(csr),
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-sha256", "-days", "3650", "-in", str(csr),
            "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
            "-set_serial", str(secrets.randbits(63) | 1),
            "-extfile", str(config), "-extensions", "v3_server", "-out", str(pki.serving_cert),
        )  # fmt: skip
        csr.unlink()
    if not (pki.sa_key.exists() and pki.sa_pub.exists()):
        _openssl("genrsa", "-out", str(pki.sa_key), "2048")
        _openssl("rsa", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    _ensure_tokens(pki.token_file)
    return pki


def _ensure_tokens(path: Path) -> None:
    """Write the token file unless it already lists exactly USERS; keep existing tokens."""
    rows: list[list[str]] = []
    if path.exists():
        with path.open(newline="") as f:
            rows = [row for row in csv.reader(f) if row]
    tokens = {row[1]: row[0] for row in rows if len(row) >= 2}
    wanted = [
        [
            tokens.get(user) or secrets.token_hex(24),
            user,
            user,
            *([",".join(groups)] if groups else []),
        ]
        for user, groups in USERS.items()
    ]
    if rows == wanted:
        return
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows(wanted)
    tmp.chmod(0o600)
    tmp.replace(path)


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {proc.stderr.strip()}")
