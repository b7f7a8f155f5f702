"""Every wait on the Kubernetes API is finite: Kopf's settings and the client's defaults."""

from __future__ import annotations

import math
import socket

import kopf
import pytest

from gpufinops.adapters.kubeclient import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    ApiTimeouts,
    keepalive_socket_options,
)
from gpufinops.handlers.startup import configure, keepalive_socket


class Bag:
    pass


def _finite(value: float | None) -> bool:
    return value is not None and 0 < value < math.inf


def test_configure_gives_kopf_finite_request_and_watch_timeouts() -> None:
    settings = kopf.OperatorSettings()
    configure(settings=settings, memo=Bag())
    assert _finite(settings.networking.connect_timeout)
    assert _finite(settings.networking.request_timeout)
    assert settings.networking.request_timeout < kopf.OperatorSettings().networking.request_timeout
    assert _finite(settings.watching.connect_timeout)
    assert _finite(settings.watching.server_timeout)
    assert _finite(settings.watching.client_timeout)
    # The server ends a watch first; the client's bound is for a server that never does.
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert _finite(settings.watching.inactivity_timeout)


@pytest.mark.parametrize(
    ("url", "query", "read"),
    [
        ("https://k/apis/apps/v1/namespaces/ml/deployments/llm/scale", None, READ_TIMEOUT_SECONDS),
        ("https://k/api/v1/pods?labelSelector=a%3Db&limit=5", None, READ_TIMEOUT_SECONDS),
        ("https://k/api/v1/pods?watch=true&timeoutSeconds=300", None, None),
        ("https://k/api/v1/pods?watch=1", None, None),
        ("https://k/api/v1/pods?watch=false", None, READ_TIMEOUT_SECONDS),
        ("https://k/api/v1/pods", [("watch", True)], None),  # older clients: query apart
    ],
)
def test_each_call_gets_a_connect_and_read_timeout_but_a_watch_no_read_timeout(
    url: str, query: object, read: float | None
) -> None:
    assert ApiTimeouts().for_request(url, query) == (CONNECT_TIMEOUT_SECONDS, read)


def test_kopfs_sockets_carry_the_keepalive_options() -> None:
    info = socket.getaddrinfo("127.0.0.1", 443, type=socket.SOCK_STREAM)[0]
    with keepalive_socket(info) as sock:
        for level, option, value in keepalive_socket_options():
            assert sock.getsockopt(level, option) == value
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


def test_events_are_reported_by_gpufinops() -> None:
    settings = kopf.OperatorSettings()
    configure(settings=settings, memo=Bag())
    assert settings.posting.reporting_component == "gpufinops"
    assert settings.posting.event_name_prefix == "gpufinops-"
    assert settings.posting.reporting_instance
