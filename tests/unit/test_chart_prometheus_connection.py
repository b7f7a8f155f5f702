"""The chart's connection values: Secrets and ConfigMaps mounted as the files the
operator config names, for Prometheus and the Alertmanager, and the other
connection keys passed through to a valid operator config."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.helm_chart import ROOT, helm_binary, kinds, one, rendered, template

from gpufinops.config.model import OperatorConfig, QueryConfinement, parse_config

VALUES = ROOT / "tests" / "helm-values" / "prometheus-connection.yaml"
SECRETS_DIR = "/var/run/secrets/gpufinops"


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def render(helm: Path, *args: str) -> list[dict[str, Any]]:
    return rendered(template(helm, *args))


def sets(**values: Any) -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        out += ["--set", f"{key}={value}"]
    return out


def operator_config(docs: list[dict[str, Any]]) -> OperatorConfig:
    return parse_config(yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"]))


def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (workload,) = kinds(docs, "Deployment") + kinds(docs, "StatefulSet")
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def mounted_source(docs: list[dict[str, Any]], path: str) -> tuple[str, str, str]:
    """(kind, name, key) of the Secret or ConfigMap key that ``path`` is in the pod."""
    spec = pod(docs)
    directory, filename = posixpath.split(path)
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] is True
    assert "subPath" not in mount  # a subPath mount never sees a rotated Secret
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    if "secret" in volume:
        kind, source, name = "Secret", volume["secret"], volume["secret"]["secretName"]
    else:
        kind, source, name = "ConfigMap", volume["configMap"], volume["configMap"]["name"]
    (item,) = [i for i in source["items"] if i["path"] == filename]
    return kind, name, item["key"]


def connection_volumes(docs: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in pod(docs)["volumes"] if v["name"] not in ("config", "tmp")]


# ------------------------------------------------------------------ defaults


def test_defaults_render_no_credentials_and_the_model_defaults(helm: Path) -> None:
    docs = render(helm)
    config = operator_config(docs)
    prometheus = config.prometheus
    assert prometheus.bearer_token_file is None
    assert prometheus.basic_auth is None and prometheus.sigv4 is None
    assert prometheus.headers == {}
    assert prometheus.tls.ca_file is None and not prometheus.tls.insecure_skip_verify
    # The values file spells out the model's defaults, and they agree.
    defaults = OperatorConfig().prometheus
    assert prometheus.custom_queries == defaults.custom_queries
    assert prometheus.limits == defaults.limits
    assert connection_volumes(docs) == []
    assert "envFrom" not in pod(docs)["containers"][0]


# ------------------------------------------------------------------ Secrets as files


def test_every_credential_file_is_the_named_secret_or_config_map_key(helm: Path) -> None:
    docs = render(helm, "-f", str(VALUES))
    config = operator_config(docs)
    prometheus = config.prometheus
    assert prometheus.headers == {"X-Scope-OrgID": "team-a"}
    assert prometheus.bearer_token_file is not None
    assert prometheus.bearer_token_file.startswith(f"{SECRETS_DIR}/prometheus/")
    assert mounted_source(docs, prometheus.bearer_token_file) == ("Secret", "mimir-token", "token")
    assert prometheus.tls.ca_file is not None
    assert mounted_source(docs, prometheus.tls.ca_file) == ("ConfigMap", "mimir-ca", "ca.crt")
    assert prometheus.tls.cert_file is not None and prometheus.tls.key_file is not None
    assert mounted_source(docs, prometheus.tls.cert_file) == (
        "Secret",
        "gpufinops-client-tls",
        "tls.crt",
    )
    assert mounted_source(docs, prometheus.tls.key_file) == (
        "Secret",
        "gpufinops-client-tls",
        "tls.key",
    )

    client = config.alerting.alertmanager_client
    assert client.headers == {"X-Scope-OrgID": "team-a"}
    assert client.basic_auth is not None
    assert client.basic_auth.username_file is not None
    assert mounted_source(docs, client.basic_auth.username_file) == (
        "Secret",
        "alertmanager-auth",
        "username",
    )
    assert mounted_source(docs, client.basic_auth.password_file) == (
        "Secret",
        "alertmanager-auth",
        "password",
    )
    assert client.tls.ca_file is not None
    assert mounted_source(docs, client.tls.ca_file) == ("Secret", "alertmanager-ca", "ca.pem")


def test_custom_queries_and_limits_pass_through(helm: Path) -> None:
    prometheus = operator_config(render(helm, "-f", str(VALUES))).prometheus
    custom = prometheus.custom_queries
    assert custom.confinement is QueryConfinement.NAMESPACE
    assert custom.namespace_label == "k8s_namespace"
    assert custom.trusted_namespace_selector is not None
    assert custom.trusted_namespace_selector.matches({"gpufinops.dev/trusted-queries": "true"})
    assert (custom.workers, custom.per_namespace) == (8, 2)
    limits = prometheus.limits
    assert (limits.max_series, limits.max_response_bytes) == (3, 2 << 20)
    assert (limits.max_batch_series, limits.max_batch_response_bytes) == (50_000, 16 << 20)
    assert prometheus.timeout_seconds == 20


def test_secret_volumes_are_not_world_readable(helm: Path) -> None:
    for volume in pod(render(helm, "-f", str(VALUES)))["volumes"]:
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] == 0o440, volume["name"]


def test_extra_volumes_mounts_and_environment(helm: Path) -> None:
    spec = pod(render(helm, "-f", str(VALUES)))
    container = spec["containers"][0]
    assert {"name": "aws-config", "configMap": {"name": "aws-config"}} in spec["volumes"]
    assert {"name": "aws-config", "mountPath": "/etc/aws", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert container["envFrom"] == [{"configMapRef": {"name": "gpufinops-env"}}]
    assert {"name": "AWS_CONFIG_FILE", "value": "/etc/aws/config"} in container["env"]


def test_the_statefulset_mounts_them_too(helm: Path) -> None:
    docs = render(helm, "-f", str(VALUES), "--set", "replicaCount=2")
    assert kinds(docs, "StatefulSet")
    token = operator_config(docs).prometheus.bearer_token_file
    assert token is not None
    assert mounted_source(docs, token) == ("Secret", "mimir-token", "token")


def test_basic_auth_with_an_inline_username_mounts_the_password_only(helm: Path) -> None:
    docs = render(
        helm,
        *sets(
            **{
                "config.prometheus.basicAuth.secret": "prom-auth",
                "config.prometheus.basicAuth.username": "reader",
                "config.prometheus.basicAuth.passwordKey": "pw",
            }
        ),
    )
    basic = operator_config(docs).prometheus.basic_auth
    assert basic is not None
    assert basic.username == "reader" and basic.username_file is None
    assert mounted_source(docs, basic.password_file) == ("Secret", "prom-auth", "pw")
    (volume,) = [v for v in pod(docs)["volumes"] if v["name"] == "prometheus-basic-auth"]
    assert volume["secret"]["items"] == [{"key": "pw", "path": "pw"}]


def test_files_already_in_the_pod_pass_through_unmounted(helm: Path) -> None:
    """OpenShift: the ServiceAccount token and the service CA bundle."""
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ca = "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt"
    docs = render(
        helm,
        *sets(
            **{
                "config.prometheus.url": "https://thanos-querier.openshift-monitoring.svc:9091",
                "config.prometheus.bearerTokenFile": token,
                "config.prometheus.tls.caFile": ca,
            }
        ),
    )
    prometheus = operator_config(docs).prometheus
    assert prometheus.bearer_token_file == token
    assert prometheus.tls.ca_file == ca
    assert connection_volumes(docs) == []


def test_sigv4_for_amazon_managed_prometheus(helm: Path) -> None:
    role = "arn:aws:iam::123456789012:role/gpufinops-amp"
    docs = render(
        helm,
        *sets(
            **{
                "config.prometheus.url": "https://aps-workspaces.eu-west-1.amazonaws.com"
                "/workspaces/ws-0123/",
                "config.prometheus.sigv4.region": "eu-west-1",
                "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn": role,
            }
        ),
    )
    sigv4 = operator_config(docs).prometheus.sigv4
    assert sigv4 is not None
    assert (sigv4.region, sigv4.service, sigv4.role_arn) == ("eu-west-1", "aps", None)
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role

    docs = render(
        helm,
        *sets(
            **{
                "config.prometheus.sigv4.region": "us-east-1",
                "config.prometheus.sigv4.roleARN": role,
            }
        ),
    )
    sigv4 = operator_config(docs).prometheus.sigv4
    assert sigv4 is not None and sigv4.role_arn == role


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "config.prometheus.bearerToken.secret": "s",
                "config.prometheus.bearerTokenFile": "/t",
            },
            "config.prometheus: give bearerToken.secret or bearerTokenFile, not both",
        ),
        (
            {
                "config.prometheus.tls.ca.secret": "s",
                "config.prometheus.tls.ca.configMap": "c",
            },
            "config.prometheus: tls.ca takes a configMap or a secret, not both",
        ),
        (
            {
                "config.alerting.alertmanagerClient.tls.clientCert.secret": "s",
                "config.alerting.alertmanagerClient.tls.certFile": "/c",
            },
            "config.alerting.alertmanagerClient: give tls.clientCert or tls.certFile",
        ),
        (
            {"config.prometheus.headers.Authorization": "Bearer x"},
            "invalid propertyName 'Authorization'",
        ),
        (
            {"config.prometheus.customQueries.confinement": "Cluster"},
            "/config/prometheus/customQueries/confinement",
        ),
        (
            {"config.prometheus.limits.maxSeries": "1"},
            "/config/prometheus/limits/maxSeries",
        ),
        (
            {"config.alerting.alertmanagerClient.bearerToken.name": "s"},
            "/config/alerting/alertmanagerClient/bearerToken",
        ),
    ],
)
def test_contradictions_and_bad_values_are_refused(
    helm: Path, values: dict[str, str], message: str
) -> None:
    result = template(helm, *sets(**values))
    assert result.returncode != 0, result.stdout[-2000:]
    assert message in result.stderr, result.stderr
