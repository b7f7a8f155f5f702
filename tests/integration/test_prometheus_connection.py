"""The operator autoscales through a Prometheus that demands credentials, on the real
control plane with `gpufinops run` as a process:

- a Prometheus started with ``--web.config.file`` demanding TLS (a test CA) and basic
  auth, the operator configured with ``tls.caFile`` and ``basicAuth`` (password file);
- a Prometheus behind a proxy demanding a bearer token and an ``X-Scope-OrgID`` tenant
  header, the operator configured with ``bearerTokenFile`` and ``headers``; the token
  is rotated (file rewritten, proxy expecting the new one) and the operator keeps
  reading without a restart.

Each operator is configured through its config file only (no ``--prometheus-url``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.auth_proxy import AuthProxy
from tests.support.exporter import Exporter
from tests.support.inference import WORKLOAD, llm_deployment, llm_replicas, set_vllm
from tests.support.kube import KubectlRun, made_namespaces, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import describe_on_timeout, poll
from tests.support.secure_prometheus import secure_prometheus

from gpufinops.localcluster.binaries import find_prometheus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TLS = "promconn-tls"
TOKEN = "promconn-token"
NAMESPACES = (TLS, TOKEN)
QUEUE = 2000


@pytest.fixture(scope="module")
def namespaces(kubectl: KubectlRun) -> Iterator[None]:
    with made_namespaces(kubectl, NAMESPACES):
        yield


def _operator(kubeconfig: Path, root: Path, namespace: str, prometheus: dict[str, Any]) -> Any:
    config = yaml.safe_load((ROOT / "operator/gpufinops/config/default.yaml").read_text())
    config["prometheus"] = {"timeoutSeconds": 10, **prometheus}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return running_operator(
        kubeconfig, root, "--config", str(root / "config.yaml"), "--namespace", namespace,
        "--sync-seconds", "1",
    )  # fmt: skip


def _condition(kubectl: KubectlRun, ns: str, ctype: str) -> dict[str, Any]:
    got = kubectl("get", "aiw", "llm", "-n", ns, "-o", "json")
    status = json.loads(got.stdout).get("status") or {} if got.returncode == 0 else {}
    return next((dict(c) for c in status.get("conditions") or [] if c["type"] == ctype), {})


def _scales_up(kubectl: KubectlRun, exporter: Exporter, ns: str) -> None:
    set_vllm(exporter, ns, waiting=QUEUE)
    ok(kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(llm_deployment(ns))))
    ok(kubectl("apply", "-n", ns, "-f", "-", input=WORKLOAD))
    poll(lambda: llm_replicas(kubectl, ns) > 1, f"{ns}/llm scaled up on its queue")
    # The scale is written before the status of the same tick: wait for it, not assume it.
    poll(lambda: _condition(kubectl, ns, "MetricsAvailable").get("status") == "True",
         f"{ns} MetricsAvailable=True")  # fmt: skip


def _describe(kubectl: KubectlRun, ns: str, op: RunningOperator) -> str:
    got = kubectl("get", "aiw,deployments", "-n", ns, "-o", "yaml")
    return f"--- {ns}:\n{got.stdout[-3000:]}\n--- operator log:\n{op.log.read_text()[-3000:]}"


def test_autoscales_through_tls_and_basic_auth(
    namespaces: None,
    exporter: Exporter,
    kubeconfig: Path,
    kubectl: KubectlRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("promconn-tls")
    with secure_prometheus(
        find_prometheus(install=True), root / "prometheus", scrape_targets=[exporter.target]
    ) as prometheus:
        connection = {
            "url": prometheus.url,
            "tls": {"caFile": str(prometheus.ca_file)},
            "basicAuth": {
                "username": prometheus.username,
                "passwordFile": str(prometheus.password_file),
            },
        }
        with (
            _operator(kubeconfig, root, TLS, connection) as op,
            describe_on_timeout(lambda: _describe(kubectl, TLS, op)),
        ):
            _scales_up(kubectl, exporter, TLS)


def test_autoscales_through_a_token_and_tenant_header_and_follows_token_rotation(
    namespaces: None,
    exporter: Exporter,
    prometheus: str,
    kubeconfig: Path,
    kubectl: KubectlRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("promconn-token")
    token_file = root / "token"
    token_file.write_text("first-token\n")
    with AuthProxy(prometheus, token="first-token", tenant="team-serving") as proxy:
        connection = {
            "url": proxy.url,
            "bearerTokenFile": str(token_file),
            "headers": {"X-Scope-OrgID": "team-serving"},
        }
        with (
            _operator(kubeconfig, root, TOKEN, connection) as op,
            describe_on_timeout(lambda: _describe(kubectl, TOKEN, op)),
        ):
            _scales_up(kubectl, exporter, TOKEN)
            assert not proxy.refusals, proxy.refusals

            # Rotated, as the kubelet rewrites a mounted Secret: the next reads use it.
            token_file.write_text("second-token\n")
            proxy.token = "second-token"
            let_through = proxy.forwarded
            poll(lambda: proxy.forwarded > let_through + 5, "reads with the rotated token")
            refused = [r for r in proxy.refusals if "token" in r.reason]
            # At most the reads already in flight when the token changed were refused.
            assert len(refused) <= 2, refused
            assert _condition(kubectl, TOKEN, "MetricsAvailable").get("status") == "True"
