"""A real Prometheus that demands TLS and basic auth (``--web.config.file``).

``secure_prometheus(binary, root)`` starts one on a free loopback port with a
serving certificate for 127.0.0.1 signed by a test CA (the local cluster's
PKI helper makes both), and one basic-auth user whose bcrypt hash is below
(Prometheus accepts bcrypt hashes only; this one was made once with
libxcrypt, so no bcrypt package is needed). With ``require_client_cert`` it
also demands a client certificate signed by the same CA (mTLS), which is
written next to the CA.

It scrapes ``scrape_targets`` (plain-HTTP exporters, labels honoured) every
second, like ``tests.support.promserver.PrometheusServer``.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from tests.support.promserver import READY_DEADLINE, free_port

from gpufinops.localcluster.pki import ensure_pki

USERNAME = "gpufinops"
PASSWORD = "prometheus-test-password"
PASSWORD_BCRYPT = "$2b$04$dYxDMvCXXs7lYHtDRwx7WOrBBgoRhSmMvIis2Az8/wSefUxcEwFTq"
"""bcrypt (cost 4, fast for tests) of PASSWORD."""

_CLIENT_EXTENSIONS = """\
[v3_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
"""


@dataclass(frozen=True)
class SecurePrometheus:
    """How to reach a running ``secure_prometheus``."""

    url: str
    """``https://127.0.0.1:<port>``"""
    ca_file: Path
    """The CA that signed the serving certificate (and the client certificate)."""
    username: str
    password: str
    password_file: Path
    """PASSWORD in a file, as a mounted Secret would hold it."""
    client_cert: Path | None
    client_key: Path | None
    """The client certificate and key when ``require_client_cert``, else None."""
    log_file: Path

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _client_certificate(pki_dir: Path, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    cert, key, csr = pki_dir / "client.crt", pki_dir / "client.key", pki_dir / "client.csr"
    extensions = pki_dir / "client.cnf"
    extensions.write_text(_CLIENT_EXTENSIONS)
    for argv in (
        ["req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=gpufinops-operator",
         "-keyout", str(key), "-out", str(csr)],
        ["x509", "-req", "-sha256", "-days", "30", "-in", str(csr), "-CA", str(ca_cert),
         "-CAkey", str(ca_key), "-set_serial", str(secrets.randbits(63) | 1),
         "-extfile", str(extensions), "-extensions", "v3_client", "-out", str(cert)],
    ):  # fmt: skip
        done = subprocess.run(["openssl", *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"openssl {argv[0]} failed:\n{done.stderr}", pytrace=False)
    return cert, key


@contextlib.contextmanager
def secure_prometheus(
    binary: Path,
    root: Path,
    *,
    scrape_targets: Sequence[str] = (),
    require_client_cert: bool = False,
) -> Iterator[SecurePrometheus]:
    """Run a Prometheus behind TLS and basic auth under ``root``; stop it on exit.

    Fails the test (never skips) when it does not become ready.
    """
    root.mkdir(parents=True, exist_ok=True)
    pki = ensure_pki(root / "pki")
    client_cert = client_key = None
    if require_client_cert:
        client_cert, client_key = _client_certificate(pki.dir, pki.ca_cert, pki.ca_key)
    password_file = root / "password"
    password_file.write_text(PASSWORD + "\n")
    tls: dict[str, str] = {
        "cert_file": str(pki.serving_cert),
        "key_file": str(pki.serving_key),
    }
    if require_client_cert:
        tls |= {
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": str(pki.ca_cert),
        }
    web_config = root / "web.yml"
    web_config.write_text(
        yaml.safe_dump({"tls_server_config": tls, "basic_auth_users": {USERNAME: PASSWORD_BCRYPT}})
    )
    config = root / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "exporter",
                        "honor_labels": True,
                        "static_configs": [{"targets": list(scrape_targets)}],
                    }
                ]
                if scrape_targets
                else [],
            },
            sort_keys=False,
        )
    )
    data_dir = root / "data"
    data_dir.mkdir(exist_ok=True)
    log_file = root / "prometheus.log"
    process: subprocess.Popen[bytes] | None = None
    running: SecurePrometheus | None = None
    try:
        for _ in range(3):
            port = free_port()
            running = SecurePrometheus(
                url=f"https://127.0.0.1:{port}",
                ca_file=pki.ca_cert,
                username=USERNAME,
                password=PASSWORD,
                password_file=password_file,
                client_cert=client_cert,
                client_key=client_key,
                log_file=log_file,
            )
            with log_file.open("ab") as log:
                process = subprocess.Popen(
                    [
                        str(binary),
                        f"--config.file={config}",
                        f"--web.config.file={web_config}",
                        f"--storage.tsdb.path={data_dir}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if _wait_ready(process, running):
                break
            if process.poll() is None or "address already in use" not in running.log_tail():
                pytest.fail(
                    f"Prometheus with TLS and basic auth did not become ready:\n"
                    f"{running.log_tail()}",
                    pytrace=False,
                )
        else:
            pytest.fail("no free port for Prometheus", pytrace=False)
        assert running is not None
        yield running
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_ready(process: subprocess.Popen[bytes], server: SecurePrometheus) -> bool:
    cert = (
        (str(server.client_cert), str(server.client_key))
        if server.client_cert and server.client_key
        else None
    )
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(requests.RequestException):
            response = requests.get(
                server.url + "/-/ready",
                auth=(server.username, server.password),
                verify=str(server.ca_file),
                cert=cert,
                timeout=2,
            )
            if response.status_code == 200:
                return True
        time.sleep(0.1)
    return False
