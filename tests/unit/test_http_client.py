"""Sessions built from an ``HTTPClientConfig``, against a local HTTP server that
records what it receives: headers, bearer tokens re-read on rotation, basic
auth from files, errors naming the key, and SigV4 signed by botocore (checked
by recomputing the signature from what the server received)."""

from __future__ import annotations

import base64
import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gpufinops.adapters.http_client import CredentialsUnavailable, session_for
from gpufinops.config.model import AlertingConfig, HTTPClientConfig, PrometheusConfig

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
ASSUMED_KEY = "ASIAASSUMEDEXAMPLE"
ASSUMED_SECRET = "assumed/secret/EXAMPLE"
ASSUMED_TOKEN = "assumed-session-token"
ROLE_ARN = "arn:aws:iam::123456789012:role/amp-query"

ASSUME_ROLE_RESPONSE = f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:gpufinops</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/amp-query/gpufinops</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{ASSUMED_KEY}</AccessKeyId>
      <SecretAccessKey>{ASSUMED_SECRET}</SecretAccessKey>
      <SessionToken>{ASSUMED_TOKEN}</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>
"""


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """A local HTTP server that records every request; STS AssumeRole is answered too."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)

    @property
    def last(self) -> Received:
        return self.requests[-1]


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorder.requests.append(
                Received(self.command, self.path, dict(self.headers.items()), body)
            )
            if b"Action=AssumeRole" in body:
                payload, kind = ASSUME_ROLE_RESPONSE.encode(), "text/xml"
            else:
                payload, kind = b'{"status":"success","data":{}}', "application/json"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield recorder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Static credentials in the environment, and nothing else botocore could find."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def config(**values: Any) -> PrometheusConfig:
    return PrometheusConfig.model_validate(values)


def get(session: requests.Session, server: Recorder, **params: str) -> Received:
    response = session.get(server.url + "/api/v1/query", params=params, timeout=10)
    assert response.status_code == 200
    return server.last


# ------------------------------------------------------------------ headers and tokens


def test_configured_headers_are_sent(server: Recorder) -> None:
    session = session_for(config(headers={"X-Scope-OrgID": "team-a", "X-Extra": "1"}))
    got = get(session, server, query="up")
    assert got.headers["X-Scope-OrgID"] == "team-a"
    assert got.headers["X-Extra"] == "1"
    assert "Authorization" not in got.headers


def test_bearer_token_is_re_read_when_the_file_changes(server: Recorder, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    session = session_for(config(bearerTokenFile=str(token), headers={"X-Scope-OrgID": "t"}))
    assert get(session, server).headers["Authorization"] == "Bearer first-token"
    assert get(session, server).headers["Authorization"] == "Bearer first-token"

    # In place, as an editor would (another size).
    token.write_text("second-token-longer")
    assert get(session, server).headers["Authorization"] == "Bearer second-token-longer"

    # Swapped for a new file, as the kubelet updates a Secret or projected token
    # (same size: the inode tells).
    fresh = tmp_path / "token.new"
    fresh.write_text("third-token-xlonger")
    os.replace(fresh, token)
    got = get(session, server)
    assert got.headers["Authorization"] == "Bearer third-token-xlonger"
    assert got.headers["X-Scope-OrgID"] == "t"


def test_bearer_token_through_a_symlinked_secret_volume(server: Recorder, tmp_path: Path) -> None:
    """The kubelet's layout: token -> ..data/token, ..data -> a timestamped directory."""
    first, second = tmp_path / "..2024_01", tmp_path / "..2024_02"
    first.mkdir()
    second.mkdir()
    (first / "token").write_text("old")
    (second / "token").write_text("new")
    data = tmp_path / "..data"
    data.symlink_to(first.name)
    (tmp_path / "token").symlink_to("..data/token")
    session = session_for(config(bearerTokenFile=str(tmp_path / "token")))
    assert get(session, server).headers["Authorization"] == "Bearer old"
    swap = tmp_path / "..data_tmp"
    swap.symlink_to(second.name)
    os.replace(swap, data)
    assert get(session, server).headers["Authorization"] == "Bearer new"


def test_basic_auth_from_files(server: Recorder, tmp_path: Path) -> None:
    (tmp_path / "username").write_text("operator\n")
    (tmp_path / "password").write_text("s3cret\n")
    session = session_for(
        config(
            basicAuth={
                "usernameFile": str(tmp_path / "username"),
                "passwordFile": str(tmp_path / "password"),
            }
        )
    )
    expected = base64.b64encode(b"operator:s3cret").decode()
    assert get(session, server).headers["Authorization"] == f"Basic {expected}"

    (tmp_path / "password").write_text("rotated-password")
    expected = base64.b64encode(b"operator:rotated-password").decode()
    assert get(session, server).headers["Authorization"] == f"Basic {expected}"


def test_basic_auth_with_an_inline_username(server: Recorder, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("pw")
    session = session_for(
        config(basicAuth={"username": "reader", "passwordFile": str(tmp_path / "password")})
    )
    expected = base64.b64encode(b"reader:pw").decode()
    assert get(session, server).headers["Authorization"] == f"Basic {expected}"


# ------------------------------------------------------------------ errors naming the key


def test_missing_token_file_names_the_key_and_the_path(server: Recorder, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "token"
    session = session_for(config(bearerTokenFile=str(missing)))
    with pytest.raises(CredentialsUnavailable) as caught:
        session.get(server.url + "/api/v1/query", timeout=10)
    message = str(caught.value)
    assert "prometheus.bearerTokenFile" in message
    assert str(missing) in message
    assert "No such file" in message
    # Callers catching requests' errors report it as a failed request.
    assert isinstance(caught.value, requests.RequestException)
    assert server.requests == []


def test_a_token_file_that_appears_later_is_used(server: Recorder, tmp_path: Path) -> None:
    token = tmp_path / "token"
    session = session_for(config(bearerTokenFile=str(token)))
    with pytest.raises(CredentialsUnavailable):
        session.get(server.url, timeout=10)
    token.write_text("late")
    assert get(session, server).headers["Authorization"] == "Bearer late"


def test_empty_or_unreadable_password_file_names_the_key(server: Recorder, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("  \n")
    alerting = AlertingConfig.model_validate(
        {"alertmanagerClient": {"basicAuth": {"username": "u", "passwordFile": str(password)}}}
    )
    session = session_for(alerting.alertmanager_client, prefix="alerting.alertmanagerClient.")
    with pytest.raises(CredentialsUnavailable, match=r"alerting\.alertmanagerClient\.basicAuth"):
        session.post(server.url, json={}, timeout=10)
    if os.geteuid() != 0:  # root reads any file
        password.write_text("pw")
        password.chmod(0)
        with pytest.raises(CredentialsUnavailable, match="Permission denied"):
            session.post(server.url, json={}, timeout=10)


def test_missing_ca_file_names_the_key(server: Recorder, tmp_path: Path) -> None:
    session = session_for(config(tls={"caFile": str(tmp_path / "ca.crt")}))
    with pytest.raises(CredentialsUnavailable, match=r"prometheus\.tls\.caFile .*ca\.crt"):
        session.get(server.url, timeout=10)


def test_a_generic_client_config_names_bare_keys(server: Recorder, tmp_path: Path) -> None:
    session = session_for(HTTPClientConfig(bearerTokenFile=str(tmp_path / "t")))
    with pytest.raises(CredentialsUnavailable, match=r"^bearerTokenFile "):
        session.get(server.url, timeout=10)


def test_config_tls_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/other.pem")
    session = session_for(config(tls={"insecureSkipVerify": True}))
    settings = session.merge_environment_settings("https://x", {}, None, None, None)
    assert settings["verify"] is False
    plain = session_for(config())
    settings = plain.merge_environment_settings("https://x", {}, None, None, None)
    assert settings["verify"] == "/etc/ssl/other.pem"  # nothing configured: as requests does


# ------------------------------------------------------------------ SigV4


def signed_headers(received: Received) -> dict[str, str]:
    """The headers the Authorization header says were signed, as received."""
    authorization = received.headers["Authorization"]
    names = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    lower = {k.lower(): v for k, v in received.headers.items()}
    return {name: lower[name] for name in names}


def assert_signature_valid(
    received: Received, server: Recorder, key: str, secret: str, token: str | None = None
) -> None:
    """Recompute the signature from the request as the server received it."""
    authorization = received.headers["Authorization"]
    request = AWSRequest(
        method=received.method,
        url=server.url + received.path,
        headers=signed_headers(received),
        data=received.body,
    )
    request.context["timestamp"] = received.headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials(key, secret, token), "aps", "eu-west-1")
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    assert authorization.endswith(f"Signature={expected}")


@pytest.mark.usefixtures("aws_env")
def test_sigv4_signs_with_botocore_covering_the_query(server: Recorder) -> None:
    session = session_for(
        config(sigv4={"region": "eu-west-1"}, headers={"X-Scope-OrgID": "tenant"})
    )
    query = 'sum(rate(vllm:num_requests_waiting{namespace="a b",pod=~"x+y.*"}[5m])) > 0'
    got = get(session, server, query=query, time="1700000000.5")
    authorization = got.headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/eu-west-1/aps/aws4_request" in authorization
    assert got.headers["X-Amz-Date"].endswith("Z")
    assert "x-scope-orgid" in signed_headers(got)
    assert "host" in signed_headers(got)
    # The query arrived intact (spaces as %20, as signed).
    assert "%20" in got.path and "+" not in got.path.split("?", 1)[1].replace("%2B", "")
    assert_signature_valid(got, server, ACCESS_KEY, SECRET_KEY)


@pytest.mark.usefixtures("aws_env")
def test_sigv4_signs_a_post_body(server: Recorder) -> None:
    session = session_for(config(sigv4={"region": "eu-west-1"}))
    response = session.post(server.url + "/api/v1/query", data={"query": "up == 1"}, timeout=10)
    assert response.status_code == 200
    got = server.last
    assert got.body == b"query=up+%3D%3D+1"
    assert_signature_valid(got, server, ACCESS_KEY, SECRET_KEY)


@pytest.mark.usefixtures("aws_env")
def test_sigv4_assumes_the_role_through_sts(
    server: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", server.url)
    session = session_for(config(sigv4={"region": "eu-west-1", "roleARN": ROLE_ARN}))
    got = get(session, server, query="up")
    sts_call = server.requests[0]
    assert b"Action=AssumeRole" in sts_call.body
    assert b"RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Famp-query" in sts_call.body
    assert sts_call.headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/"
    )
    assert got.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ASSUMED_KEY}/")
    assert got.headers["X-Amz-Security-Token"] == ASSUMED_TOKEN
    assert_signature_valid(got, server, ASSUMED_KEY, ASSUMED_SECRET, ASSUMED_TOKEN)
    # The assumed credentials are kept until they near expiry.
    get(session, server, query="up")
    assert sum(b"Action=AssumeRole" in r.body for r in server.requests) == 1


def test_sigv4_without_credentials_is_a_clear_failed_request(
    server: Recorder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    session = session_for(config(sigv4={"region": "eu-west-1"}))
    with pytest.raises(CredentialsUnavailable, match=r"prometheus\.sigv4: no AWS credentials"):
        session.get(server.url, timeout=10)
    assert server.requests == []
