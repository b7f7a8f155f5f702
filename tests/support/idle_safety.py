"""What the idle-shutdown safety tests need besides nodes and an operator.

A validating admission webhook served by the test itself over HTTPS (its own CA
and serving certificate, made with the openssl CLI), to act at the exact moment
the API server admits a change to a node; minimal Cluster API CRDs (no controller
runs behind them); and a way to watch a value for a while, to show that
something does *not* happen.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from tests.support.kube import KubectlRun, ok
from tests.support.polling import poll

T = TypeVar("T")

CAPI_GROUP, CAPI_VERSION = "cluster.x-k8s.io", "v1beta1"


def observe(read: Callable[[], T], seconds: float, what: str) -> list[T]:
    """Every value ``read`` returns, once per poll, for ``seconds`` from now.

    For what must *not* happen: the caller asserts on the values seen; the wait
    itself is on the clock, through ``poll``.
    """
    seen: list[T] = []
    end = time.time() + seconds

    def look() -> bool:
        seen.append(read())
        return time.time() > end

    poll(look, f"{seconds:g}s of watching {what}", deadline=seconds + 60)
    return seen


def transitions(values: list[T]) -> list[T]:
    """``values`` without consecutive repeats: 6, 6, 5, 5, 4 -> 6, 5, 4."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


# ------------------------------------------------------------------ Cluster API


def capi_crd(plural: str, kind: str) -> dict[str, Any]:
    """A CRD of group cluster.x-k8s.io that stores anything: enough for the operator
    to read and patch Machines and MachineDeployments as Cluster API serves them."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{CAPI_GROUP}"},
        "spec": {
            "group": CAPI_GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                      "listKind": f"{kind}List"},
            "versions": [{
                "name": CAPI_VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                }},
            }],
        },
    }  # fmt: skip


CAPI_CRDS = (capi_crd("machines", "Machine"), capi_crd("machinedeployments", "MachineDeployment"))


@contextmanager
def capi_crds_installed(kubectl: KubectlRun) -> Iterator[None]:
    """The Cluster API CRDs, installed unless already there; removed after if installed here."""
    names = [crd["metadata"]["name"] for crd in CAPI_CRDS]
    missing = [crd for crd, name in zip(CAPI_CRDS, names, strict=True)
               if kubectl("get", "crd", name).returncode != 0]  # fmt: skip
    for crd in missing:
        ok(kubectl("apply", "-f", "-", input=json.dumps(crd)))
    try:
        ok(kubectl("wait", "--for=condition=Established", *(f"crd/{n}" for n in names),
                   "--timeout=60s"))  # fmt: skip
        yield
    finally:
        for crd in missing:
            kubectl("delete", "crd", crd["metadata"]["name"], "--wait=true", "--timeout=60s")


def capi_object(kind: str, name: str, namespace: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{CAPI_GROUP}/{CAPI_VERSION}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, **meta},
    }


# ------------------------------------------------------------------ admission webhook


@dataclass(frozen=True)
class ServingCert:
    ca: Path
    cert: Path
    key: Path


_CA_EXTENSIONS = """\
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

_SERVER_EXTENSIONS = """\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
"""


def serving_cert(directory: Path) -> ServingCert:
    """A throw-away CA and a certificate for 127.0.0.1 signed by it (the API server
    checks a webhook's certificate against the caBundle, by subject alternative name)."""
    directory.mkdir(parents=True, exist_ok=True)
    made = ServingCert(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    ca_key, csr = directory / "ca.key", directory / "tls.csr"
    (directory / "ca.cnf").write_text(_CA_EXTENSIONS)
    (directory / "server.ext").write_text(_SERVER_EXTENSIONS)
    _openssl("req", "-x509", "-config", str(directory / "ca.cnf"), "-extensions", "v3_ca",
             "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "1",
             "-subj", "/CN=idle-safety-webhook-ca", "-keyout", str(ca_key),
             "-out", str(made.ca))  # fmt: skip
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", str(made.key), "-out", str(csr))  # fmt: skip
    _openssl("x509", "-req", "-sha256", "-days", "1", "-in", str(csr),
             "-CA", str(made.ca), "-CAkey", str(ca_key), "-set_serial", "1",
             "-extfile", str(directory / "server.ext"), "-out", str(made.cert))  # fmt: skip
    return made


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"openssl {args[0]} failed: {proc.stderr}"


def _taint_keys(obj: dict[str, Any] | None) -> set[str]:
    return {t.get("key", "") for t in ((obj or {}).get("spec") or {}).get("taints") or []}


@dataclass
class NodeTaintWebhook:
    """Reviews node updates; when one adds ``taint`` to a node, calls
    ``on_taint(node)`` before answering "allowed" (so whatever it does happens
    before the tainted node is stored, and before its writer hears back)."""

    taint: str
    on_taint: Callable[[str], object]
    reviews: int = 0
    dry_runs: int = 0
    tainted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def review(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.reviews += 1
            if request.get("dryRun"):
                self.dry_runs += 1  # sideEffects: NoneOnDryRun
                return
            name = request.get("name") or request["object"]["metadata"]["name"]
            added = _taint_keys(request["object"]) - _taint_keys(request.get("oldObject"))
            if self.taint in added:
                self.tainted.append(name)
                try:
                    self.on_taint(name)
                except Exception as exc:  # reported by the test, the update is still allowed
                    self.errors.append(f"{name}: {exc!r}")


class _Handler(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        self.server.webhook.review(request)
        body = json.dumps({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": request["uid"], "allowed": True},
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the API server calls often; failures show up in the webhook's errors


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True
    webhook: NodeTaintWebhook


@contextmanager
def node_taint_webhook(
    kubectl: KubectlRun,
    certs: ServingCert,
    name: str,
    node_labels: dict[str, str],
    webhook: NodeTaintWebhook,
    probe_node: str,
) -> Iterator[NodeTaintWebhook]:
    """Serve ``webhook`` on 127.0.0.1 and register it for updates of the nodes
    labelled ``node_labels``; unregister and stop it after.

    Returns once the API server calls it (a server-side dry run on ``probe_node``
    reaches it): failurePolicy Ignore would otherwise let a webhook the API server
    cannot reach go unnoticed.
    """
    server = _WebhookServer(("127.0.0.1", 0), _Handler)
    server.webhook = webhook
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="node-taint-webhook", daemon=True)
    thread.start()
    port = server.server_address[1]
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": f"{name}.gpufinops.dev",
            "clientConfig": {
                "url": f"https://127.0.0.1:{port}/validate",
                "caBundle": base64.b64encode(certs.ca.read_bytes()).decode(),
            },
            "rules": [{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["nodes"], "scope": "Cluster"}],
            "objectSelector": {"matchLabels": node_labels},
            "failurePolicy": "Ignore",
            "sideEffects": "NoneOnDryRun",
            "timeoutSeconds": 10,
            "admissionReviewVersions": ["v1"],
        }],
    }  # fmt: skip
    try:
        ok(kubectl("apply", "-f", "-", input=json.dumps(configuration)))

        def called() -> bool:
            ok(kubectl("annotate", "node", probe_node, "--overwrite", "--dry-run=server",
                       "gpufinops.dev/webhook-probe=1"))  # fmt: skip
            return webhook.dry_runs > 0

        poll(called, f"the API server to call the webhook on https://127.0.0.1:{port}")
        yield webhook
    finally:
        kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
