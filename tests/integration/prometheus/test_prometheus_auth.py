"""The client against real Prometheus servers that demand credentials.

One Prometheus demands TLS (a test CA), basic auth and a client certificate
(its own ``--web.config.file``); another, plain, sits behind a reverse proxy
that checks a bearer token and ``X-Scope-OrgID``. Clients are built from a
``PrometheusConfig`` as the operator builds them, and every failure must be a
``MetricsError`` whose reason says what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.auth_proxy import AuthProxy
from tests.support.promserver import PrometheusServer
from tests.support.secure_prometheus import SecurePrometheus, secure_prometheus

from gpufinops.adapters.prometheus import MetricsError, PrometheusClient
from gpufinops.config.model import PrometheusConfig


@pytest.fixture(scope="module")
def secured(
    prometheus_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecurePrometheus]:
    with secure_prometheus(
        prometheus_binary, tmp_path_factory.mktemp("secure-prometheus"), require_client_cert=True
    ) as running:
        yield running


@pytest.fixture(scope="module")
def plain_prometheus(
    prometheus_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    root = tmp_path_factory.mktemp("plain-prometheus")
    with PrometheusServer(prometheus_binary, root, []) as server:
        yield server


def client_for(**values: Any) -> PrometheusClient:
    return PrometheusClient.from_config(PrometheusConfig.model_validate(values))


def secured_config(server: SecurePrometheus, **overrides: Any) -> dict[str, Any]:
    assert server.client_cert is not None and server.client_key is not None
    values: dict[str, Any] = {
        "url": server.url,
        "timeoutSeconds": 10,
        "tls": {
            "caFile": str(server.ca_file),
            "certFile": str(server.client_cert),
            "keyFile": str(server.client_key),
        },
        "basicAuth": {"username": server.username, "passwordFile": str(server.password_file)},
    }
    return values | overrides


def failure(client: PrometheusClient, query: str = "vector(1)") -> str:
    with client, pytest.raises(MetricsError) as caught:
        client.instant(query)
    return caught.value.reason


# ------------------------------------------------------------------ TLS, basic auth, mTLS


def test_tls_and_basic_auth_from_files_read_a_value(secured: SecurePrometheus) -> None:
    with client_for(**secured_config(secured)) as client:
        assert client.instant("vector(1)") == 1.0
        assert client.instant("sum(vector(2) * 3)") == 6.0


def test_a_wrong_password_is_a_clear_refusal(secured: SecurePrometheus, tmp_path: Path) -> None:
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password")
    config = secured_config(
        secured, basicAuth={"username": secured.username, "passwordFile": str(wrong)}
    )
    reason = failure(client_for(**config))
    assert "401" in reason, reason


def test_a_missing_password_file_names_the_key(secured: SecurePrometheus, tmp_path: Path) -> None:
    missing = tmp_path / "secret" / "password"
    config = secured_config(
        secured, basicAuth={"username": secured.username, "passwordFile": str(missing)}
    )
    reason = failure(client_for(**config))
    assert "prometheus.basicAuth.passwordFile" in reason, reason
    assert str(missing) in reason, reason


def test_without_the_ca_the_certificate_is_refused(secured: SecurePrometheus) -> None:
    config = secured_config(secured)
    del config["tls"]["caFile"]
    reason = failure(client_for(**config))
    assert "certificate verify failed" in reason, reason
    assert "prometheus.tls.caFile" in reason, reason


def test_without_a_client_certificate_the_handshake_fails(secured: SecurePrometheus) -> None:
    config = secured_config(secured, tls={"caFile": str(secured.ca_file)})
    reason = failure(client_for(**config))
    assert "client certificate" in reason, reason
    assert "prometheus.tls.certFile" in reason, reason


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_skip_verify_still_needs_the_credentials(secured: SecurePrometheus) -> None:
    assert secured.client_cert is not None and secured.client_key is not None
    tls = {
        "insecureSkipVerify": True,
        "certFile": str(secured.client_cert),
        "keyFile": str(secured.client_key),
    }
    with client_for(**secured_config(secured, tls=tls)) as client:
        assert client.instant("vector(1)") == 1.0
    reason = failure(client_for(url=secured.url, tls=tls))
    assert "401" in reason, reason


# ------------------------------------------------------------------ bearer token and tenant


def test_token_and_tenant_header_through_a_checking_proxy(
    plain_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("token-one\n")
    with AuthProxy(plain_prometheus.url, token="token-one", tenant="team-a") as proxy:
        with client_for(
            url=proxy.url, bearerTokenFile=str(token), headers={"X-Scope-OrgID": "team-a"}
        ) as client:
            assert client.instant("vector(1)") == 1.0
            assert proxy.forwarded >= 1 and not proxy.refusals

            # The Secret is rotated: the proxy wants the new token at once, and the
            # same client (no restart) sends it at its next query.
            proxy.token = "token-two"
            with pytest.raises(MetricsError, match="401"):
                client.instant("vector(1)")
            token.write_text("token-two\n")
            assert client.instant("vector(2)") == 2.0

        # Another tenant's header is refused, and so is none.
        reason = failure(
            client_for(
                url=proxy.url, bearerTokenFile=str(token), headers={"X-Scope-OrgID": "team-b"}
            )
        )
        assert "401" in reason, reason
        reason = failure(client_for(url=proxy.url, bearerTokenFile=str(token)))
        assert "401" in reason, reason
        assert [r.reason for r in proxy.refusals][-2:] == ["missing or wrong X-Scope-OrgID"] * 2


def test_range_queries_carry_the_credentials_too(
    plain_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("range-token")
    with (
        AuthProxy(plain_prometheus.url, token="range-token", tenant="t") as proxy,
        client_for(
            url=proxy.url, bearerTokenFile=str(token), headers={"X-Scope-OrgID": "t"}
        ) as client,
    ):
        series = client.range("vector(3)", 1_700_000_000, 1_700_000_600, 60)
        assert list(series.values) == [3.0] * 11
        assert not proxy.refusals


def test_a_missing_token_file_is_a_failed_read_naming_the_key(
    plain_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    missing = tmp_path / "serviceaccount" / "token"
    with AuthProxy(plain_prometheus.url, token="x") as proxy:
        reason = failure(client_for(url=proxy.url, bearerTokenFile=str(missing)))
        assert "prometheus.bearerTokenFile" in reason and str(missing) in reason, reason
        assert proxy.forwarded == 0 and not proxy.refusals  # nothing was sent
