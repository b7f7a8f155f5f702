"""Operator-wide Kopf settings: where Kopf keeps its bookkeeping, what it posts."""

import asyncio
import logging
import os
import socket
from typing import Any

import aiohttp
import kopf

from gpufinops.adapters.kubeclient import CONNECT_TIMEOUT_SECONDS, keepalive_socket_options
from gpufinops.api.resource import GROUP

ANNOTATION_PREFIX = GROUP

API_REQUESTS = 32
"""Requests Kopf sends to the API server at once, watches aside (they are long-lived).

Unbounded (Kopf's default), a start-up processes every listed object at once: one
request per object, each on its own TLS connection, and asyncio gives each TLS
connection a 256 KiB read buffer. At 500 workloads that was a thousand connections
and over 300 MB of buffers, most of the operator's memory."""

REQUEST_TIMEOUT_SECONDS = 60.0
"""Whole-request bound on Kopf's own short requests (lists, patches, Events, peering).

Kopf's default is five minutes, during which a request on a half-open connection
holds its handler (and one of the ``API_REQUESTS`` slots). A minute still covers the
initial LIST of every pod of a large cluster, which streams for seconds."""

WATCH_SERVER_TIMEOUT_SECONDS = 300
"""``timeoutSeconds`` of each watch request: the API server ends the watch after five
minutes and Kopf resumes it from the last resourceVersion, so no watch outlives a
failover by more than that even when every other guard misses."""

WATCH_CLIENT_TIMEOUT_SECONDS = WATCH_SERVER_TIMEOUT_SECONDS + 60
"""Client-side bound on a whole watch request: a server that never ends the watch
(the connection died silently) is given up on a minute after it should have."""


EVENT_COMPONENT = "gpufinops"
"""The component of every Event the operator posts (``source.component``)."""

WATCH_HANDLERS = ("track_node", "cost_on_node", "cost_on_workload", "namespace_relabelled")
"""Handlers Kopf runs on every watch event of their objects, node heartbeats included."""


class QuietWatchHandlers(logging.Filter):
    """Drops Kopf's "Handler 'x' succeeded." for handlers that run on every watch event.

    Kopf logs each handler's success at INFO. For a handler fed by node
    heartbeats that is a line per node every few seconds (20 lines a second
    with 1,000 nodes), which buries what the operator decided; their failures
    are still logged.
    """

    def __init__(self, names: tuple[str, ...] = WATCH_HANDLERS) -> None:
        super().__init__()
        self._quiet = frozenset(f"Handler '{name}' succeeded." for name in names)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage() not in self._quiet


_QUIET = QuietWatchHandlers()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Keep Kopf's state in our own annotations; our status schema has no room for it.

    Status fields Kopf would write (``status.kopf``) are pruned by the
    structural schema, which would make handlers re-run forever.
    """
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    bound_api_waits(settings)
    # Our handlers post their own, meaningful Events; Kopf's per-handler
    # "succeeded" chatter is left to the logs.
    settings.posting.level = logging.WARNING
    # Events say who posted them: `kubectl describe` shows "From gpufinops", and event
    # exporters can filter on the component (the pod's name tells replicas apart).
    settings.posting.reporting_component = EVENT_COMPONENT
    settings.posting.reporting_instance = os.environ.get("HOSTNAME") or EVENT_COMPONENT
    settings.posting.event_name_prefix = f"{EVENT_COMPONENT}-"
    objects = logging.getLogger("kopf.objects")
    if _QUIET not in objects.filters:
        objects.addFilter(_QUIET)


def bound_api_waits(settings: kopf.OperatorSettings) -> None:
    """Finite waits on every request Kopf makes, so a half-open connection after an API
    server failover fails and is retried (a watch re-established) instead of hanging.

    Kopf also restarts a watch that has been silent for ``inactivity_timeout`` (70 s by
    default, longer than the API server's 60 s bookmark interval); that default is kept.
    """
    settings.networking.connect_timeout = CONNECT_TIMEOUT_SECONDS
    settings.networking.request_timeout = REQUEST_TIMEOUT_SECONDS
    settings.watching.connect_timeout = CONNECT_TIMEOUT_SECONDS
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_SECONDS


def keepalive_socket(addr_info: aiohttp.AddrInfoType) -> socket.socket:
    """A socket for Kopf's connections with the Kubernetes client's keepalive options."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    try:
        for level, option, value in keepalive_socket_options():
            sock.setsockopt(level, option, value)
    except OSError:
        sock.close()
        raise
    return sock


def _bounded(limit: asyncio.Semaphore) -> aiohttp.ClientMiddlewareType:
    """A client middleware letting at most ``limit`` requests other than watches run."""

    async def middleware(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if request.url.query.get("watch") in ("true", "1"):
            return await handler(request)  # never queue a watch behind short requests
        async with limit:
            return await handler(request)

    return middleware


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    """Kopf's own login (in-cluster, then the kube context), with bounded concurrency.

    The credentials are those ``kopf.login_via_client`` finds; only the HTTP session
    differs from Kopf's: at most ``API_REQUESTS`` requests in flight besides watches, and
    TCP keepalive on every connection (a dead peer is found under a silent watch).
    """
    info = await asyncio.to_thread(kopf.login_via_client, **kwargs)
    if info is None:
        return None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=0, ssl=info.as_ssl_context(), socket_factory=keepalive_socket
        ),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        middlewares=(_bounded(asyncio.Semaphore(API_REQUESTS)),),
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )
