"""HTTP sessions for the endpoints the operator calls (Prometheus, Alertmanager).

One ``requests.Session`` per endpoint, configured from an ``HTTPClientConfig``
(the shape of Prometheus' own ``http_config``): headers, credentials read from
mounted files, TLS verification and client certificates, AWS SigV4.

Credential files (a bearer token, a basic-auth username or password) are
re-read when they change: each request compares the file's inode, size and
modification time with those of the last read, so a rotated projected token
or Secret is used without a restart and an unchanged one costs one ``stat``.

Every failure to obtain credentials (a missing or unreadable file, no AWS
credentials, STS refusing a role) raises ``CredentialsUnavailable``, a
``requests.RequestException``: callers that report failed requests report it
too, with a message naming the config key and the path.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import requests
from botocore.auth import SigV4Auth as _BotocoreSigV4  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import (  # type: ignore[import-untyped]
    AssumeRoleCredentialFetcher,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
from botocore.session import Session as BotocoreSession  # type: ignore[import-untyped]
from requests.auth import AuthBase

from gpufinops.config.model import (
    BasicAuth,
    HTTPClientConfig,
    PrometheusConfig,
    SigV4Config,
    TLSConfig,
)

__all__ = [
    "BasicFileAuth",
    "BearerTokenFileAuth",
    "CredentialsUnavailable",
    "SigV4RequestAuth",
    "WatchedFile",
    "session_for",
]

_SSL_REASON = re.compile(r"\[SSL(?:: [A-Z0-9_]+)?\] ([^'\"()]+)")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authorization", "te", "upgrade"})
_AWS_SAFE = "-_.~"
"""Characters SigV4's canonical query string leaves unencoded (RFC 3986 unreserved)."""


class CredentialsUnavailable(requests.RequestException):
    """A credential (file, AWS credentials) could not be obtained; the message names
    the config key and the path, never the credential."""


def _default_prefix(config: HTTPClientConfig) -> str:
    return "prometheus." if isinstance(config, PrometheusConfig) else ""


def session_for(config: HTTPClientConfig, *, prefix: str | None = None) -> requests.Session:
    """A session that sends ``config``'s headers and credentials and verifies as it says.

    ``prefix`` is the config path of ``config`` (``"prometheus."``, the default
    for a ``PrometheusConfig``; ``"alerting.alertmanagerClient."``), used to
    name keys in errors. Nothing is read here: credential files are read at
    the first request, so a Secret mounted late fails requests, not the start.
    """
    where = _default_prefix(config) if prefix is None else prefix
    session = ConfiguredSession(config.tls, where)
    session.headers.update(config.headers)
    if config.bearer_token_file is not None:
        session.auth = BearerTokenFileAuth(
            WatchedFile(config.bearer_token_file, f"{where}bearerTokenFile")
        )
    elif config.basic_auth is not None:
        session.auth = BasicFileAuth(config.basic_auth, where)
    elif config.sigv4 is not None:
        session.auth = SigV4RequestAuth(config.sigv4, where)
    return session


class ConfiguredSession(requests.Session):
    """A session whose TLS settings come from the config alone.

    ``requests`` lets ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` replace a
    session's ``verify``; here the config wins. The CA and client certificate
    files are checked before each request, so a missing one is a
    ``CredentialsUnavailable`` naming its key (``requests`` would raise a bare
    ``OSError``), and a failed TLS handshake is an ``SSLError`` whose message
    is the handshake's reason, not urllib3's nested reprs.
    """

    def __init__(self, tls: TLSConfig, prefix: str = "") -> None:
        super().__init__()
        self._prefix = prefix
        self._files: list[tuple[str, str]] = []
        self._pinned_verify: bool | str | None = None
        if tls.insecure_skip_verify:
            self._pinned_verify = False
        elif tls.ca_file is not None:
            self._pinned_verify = tls.ca_file
            self._files.append((f"{prefix}tls.caFile", tls.ca_file))
        if self._pinned_verify is not None:
            self.verify = self._pinned_verify
        if tls.cert_file is not None and tls.key_file is not None:
            self.cert = (tls.cert_file, tls.key_file)
            self._files.append((f"{prefix}tls.certFile", tls.cert_file))
            self._files.append((f"{prefix}tls.keyFile", tls.key_file))

    def merge_environment_settings(
        self,
        url: str,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert
        )
        if self._pinned_verify is not None and verify is None:
            settings["verify"] = self._pinned_verify
        return settings

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        for key, path in self._files:
            if not os.access(path, os.R_OK):
                raise CredentialsUnavailable(_unreadable(key, path), request=request)
        try:
            return super().send(request, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(
                _tls_reason(exc, self._prefix), request=request
            ) from exc


def _unreadable(key: str, path: str, error: OSError | None = None) -> str:
    if error is None:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            error = exc
    why = error.strerror if error is not None and error.strerror else "unreadable"
    return f"{key} {path}: {why}"


def _tls_reason(exc: BaseException, prefix: str) -> str:
    """The handshake's own reason (e.g. ``certificate verify failed: ...``), with a hint."""
    found = _SSL_REASON.search(str(exc))
    reason = found.group(1).strip() if found else "TLS handshake failed"
    if "certificate verify failed" in reason:
        reason += f" (is {prefix}tls.caFile the CA that signed the server's certificate?)"
    elif "alert" in reason and "certificate" in reason:
        reason += (
            f" (the server wants a client certificate it trusts: {prefix}tls.certFile and "
            f"{prefix}tls.keyFile)"
        )
    return reason


class WatchedFile:
    """A small text file (a credential), re-read when its inode, size or mtime change.

    Kubernetes updates a mounted Secret or projected token by swapping a
    symlink, which changes the inode ``os.stat`` sees through the link.
    Surrounding whitespace is stripped, as Prometheus does.
    """

    def __init__(self, path: str, key: str) -> None:
        self.path = path
        self.key = key
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._value = ""

    def read(self) -> str:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise CredentialsUnavailable(_unreadable(self.key, self.path, exc)) from exc
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        value = f.read().strip()
                except OSError as exc:
                    raise CredentialsUnavailable(_unreadable(self.key, self.path, exc)) from exc
                except UnicodeDecodeError as exc:
                    raise CredentialsUnavailable(f"{self.key} {self.path}: not UTF-8 text") from exc
                if not value:
                    raise CredentialsUnavailable(f"{self.key} {self.path}: the file is empty")
                self._value, self._stamp = value, stamp
            return self._value


class BearerTokenFileAuth(AuthBase):
    """``Authorization: Bearer <token>``, the token from a file re-read when it changes."""

    def __init__(self, token: WatchedFile) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token.read()}"
        return r


class BasicFileAuth(AuthBase):
    """HTTP basic auth; the password (and optionally the username) from files."""

    def __init__(self, config: BasicAuth, prefix: str = "") -> None:
        self.username = config.username
        self.username_file = (
            WatchedFile(config.username_file, f"{prefix}basicAuth.usernameFile")
            if config.username_file is not None
            else None
        )
        self.password_file = WatchedFile(config.password_file, f"{prefix}basicAuth.passwordFile")

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        username = self.username_file.read() if self.username_file else (self.username or "")
        password = self.password_file.read()
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        r.headers["Authorization"] = f"Basic {token}"
        return r


class SigV4RequestAuth(AuthBase):
    """AWS Signature Version 4 by botocore (Amazon Managed Service for Prometheus).

    Credentials come from botocore's default chain (environment, IRSA web
    identity, EKS Pod Identity, the instance profile, ``profile`` from the
    shared files), resolved at the first request and refreshed by botocore
    before they expire. With ``roleARN`` they are the source credentials of an
    STS AssumeRole whose credentials are refreshed the same way.

    The query string is re-encoded the way SigV4 canonicalises it (``%20``,
    not ``+``) before signing, so the URL sent is the one signed.
    """

    def __init__(self, config: SigV4Config, prefix: str = "") -> None:
        self.config = config
        self.key = f"{prefix}sigv4"
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None

    def credentials(self) -> Credentials:
        with self._lock:
            if self._credentials is None:
                self._credentials = self._resolve()
            return self._credentials

    def _resolve(self) -> Credentials:
        try:
            session = BotocoreSession(profile=self.config.profile)
            source = session.get_credentials()
        except BotoCoreError as exc:
            raise CredentialsUnavailable(f"{self.key}: AWS credentials: {exc}") from exc
        if source is None:
            raise CredentialsUnavailable(
                f"{self.key}: no AWS credentials found (IRSA, EKS Pod Identity, "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or an instance role)"
            )
        if self.config.role_arn is None:
            return source
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=functools.partial(session.create_client, region_name=self.config.region),
            source_credentials=source,
            role_arn=self.config.role_arn,
            extra_args={"RoleSessionName": "gpufinops"},
        )
        credentials: Credentials = DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method="assume-role"
        )
        return credentials

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        try:
            frozen = self.credentials().get_frozen_credentials()
        except (BotoCoreError, ClientError) as exc:
            raise CredentialsUnavailable(f"{self.key}: AWS credentials: {exc}") from exc
        url = _sigv4_url(r.url or "")
        r.url = url
        aws = AWSRequest(method=r.method, url=url, data=r.body, headers=_signed_headers(r.headers))
        _BotocoreSigV4(frozen, self.config.service, self.config.region).add_auth(aws)
        for name, value in aws.headers.items():
            r.headers[name] = value
        return r


def _signed_headers(headers: Mapping[str, str | bytes]) -> dict[str, str | bytes]:
    """The request's headers minus hop-by-hop ones, which proxies may rewrite."""
    return {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}


def _sigv4_url(url: str) -> str:
    """``url`` with its query encoded as SigV4's canonical query string encodes it."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(f"{quote(k, safe=_AWS_SAFE)}={quote(v, safe=_AWS_SAFE)}" for k, v in pairs)
    return urlunsplit(parts._replace(query=query))
