"""Credentials for the Kubernetes client, and a bound on how long any of its calls waits.

The ``kubernetes`` client waits forever by default: with no ``_request_timeout`` it
sends no timeout to urllib3 at all, and a connection left half-open (the API server
failed over, a load balancer forgot the flow) never answers and never fails. The
autoscaler writes scales and status from a few worker threads, so a handful of
such calls would stop every workload's scaling. Every client made here therefore
gives each call a connect and a read timeout unless the caller chose its own,
and turns on TCP keepalive, which also finds a dead peer under a long watch.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client, config
from kubernetes.client import rest

CONNECT_TIMEOUT_SECONDS = 10.0
"""Time to open the TCP connection and finish the TLS handshake. A healthy API server,
even a busy one, accepts in milliseconds; ten seconds rides out a slow DNS answer or a
lost SYN (retransmitted after 1 s and 3 s) and no more."""

READ_TIMEOUT_SECONDS = 30.0
"""Longest silence allowed while waiting for response bytes (between reads, not for
the whole response). The API server answers a write within its own 60 s request
budget, usually in milliseconds, and starts streaming a LIST within seconds: thirty
seconds of silence means the connection is dead, not the request slow."""

KEEPALIVE_IDLE_SECONDS = 30
"""Idle time before the kernel probes a connection (client-go uses 30 s too)."""
KEEPALIVE_INTERVAL_SECONDS = 10
"""Time between unanswered probes."""
KEEPALIVE_PROBES = 3
"""Unanswered probes before the kernel drops the connection: a dead peer is found within
``30 + 3 x 10`` = 60 s of silence, before a watch's server-side timeout would end it."""


@dataclass(frozen=True)
class ApiTimeouts:
    """The connect and read timeouts each call gets unless it passes its own."""

    connect: float = CONNECT_TIMEOUT_SECONDS
    read: float = READ_TIMEOUT_SECONDS

    def for_request(self, url: str, query_params: Any = None) -> tuple[float, float | None]:
        """``(connect, read)`` for one request; a watch gets no read timeout.

        A watch is silent while nothing changes, so a read timeout would cut healthy
        watches; keepalive finds a dead peer under it instead.
        """
        return (self.connect, None if _is_watch(url, query_params) else self.read)


def _is_watch(url: str, query_params: Any) -> bool:
    query = parse_qs(urlsplit(url).query)
    # Older clients pass the query separately, as (name, value) pairs.
    for name, value in query_params or ():
        query.setdefault(str(name), []).append(str(value))
    return any(v.lower() in ("true", "1") for v in query.get("watch", []))


def keepalive_socket_options() -> list[tuple[int, int, int]]:
    """Socket options for every API connection: no Nagle delay (urllib3's own default,
    which a given list replaces) and TCP keepalive with the probes above, as far as the
    platform names them (macOS calls the idle time ``TCP_KEEPALIVE``)."""
    options = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
    idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
    if idle is not None:
        options.append((socket.IPPROTO_TCP, idle, KEEPALIVE_IDLE_SECONDS))
    if hasattr(socket, "TCP_KEEPINTVL"):
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_SECONDS))
    if hasattr(socket, "TCP_KEEPCNT"):
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES))
    return options


class BoundedRESTClient(rest.RESTClientObject):
    """The client's REST layer, with ``timeouts`` for every request that names none."""

    def __init__(self, configuration: client.Configuration, timeouts: ApiTimeouts) -> None:
        super().__init__(configuration)
        self.timeouts = timeouts

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("_request_timeout"):
            kwargs["_request_timeout"] = self.timeouts.for_request(url, kwargs.get("query_params"))
        return super().request(method, url, *args, **kwargs)  # type: ignore[no-untyped-call]


def bounded(
    configuration: client.Configuration, timeouts: ApiTimeouts | None = None
) -> client.ApiClient:
    """An API client for ``configuration`` whose calls all time out and keep alive.

    ``configuration`` is changed (its socket options); ``timeouts`` defaults to
    ``ApiTimeouts()``.
    """
    configuration.socket_options = keepalive_socket_options()
    api = client.ApiClient(configuration)
    api.rest_client.pool_manager.clear()  # never used: no connection opened yet
    api.rest_client = BoundedRESTClient(configuration, timeouts or ApiTimeouts())
    return api


def load_kube_config(
    context: str | None = None,
    *,
    config_file: str | Path | None = None,
    timeouts: ApiTimeouts | None = None,
) -> client.ApiClient:
    """An API client for the cluster the operator runs in (or the current context).

    With ``config_file``, that kubeconfig (and ``context`` in it) instead. The
    credentials are loaded into the client's own configuration, not the process-wide
    default, and every call is bounded as ``bounded`` says.
    """
    configuration = client.Configuration()
    if config_file is not None:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(config_file), context=context, client_configuration=configuration
        )
        return bounded(configuration, timeouts)
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(context=context, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return bounded(configuration, timeouts)
