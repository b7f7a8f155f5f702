"""One autoscaling tick's signals, read from Prometheus into an ``Observation``."""

from __future__ import annotations

import logging
from typing import Protocol

from gpufinops.adapters.prometheus.client import MetricsError, PrometheusUnavailable
from gpufinops.adapters.prometheus.presets import SignalQueries
from gpufinops.core.scaling.observation import Observation

log = logging.getLogger(__name__)


class InstantSource(Protocol):
    """What reads one value (``PrometheusClient``, or a stand-in in tests)."""

    def instant(self, query: str) -> float | None: ...


def read_observation(client: InstantSource, queries: SignalQueries) -> Observation:
    """Read every signal; a signal that cannot be read is ``None``, never zero.

    ``error`` says why the queue is unknown when it is. The other signals are
    hints: their failures are logged, not reported. Once Prometheus is found
    unreachable the remaining queries are skipped, since each would only wait
    for its own timeout to fail the same way.
    """
    error: str | None = None
    absent = False
    try:
        queue = client.instant(queries.queue)
    except PrometheusUnavailable as exc:
        return Observation(error=exc.reason)
    except MetricsError as exc:
        queue = None
        error = f"{exc.reason}; query: {queries.queue}"
    else:
        if queue is None:
            error = f"query returned no series: {queries.queue}"
            absent = True

    unavailable = False

    def read(query: str | None) -> float | None:
        nonlocal unavailable
        if query is None or unavailable:
            return None
        try:
            return client.instant(query)
        except PrometheusUnavailable as exc:
            unavailable = True
            log.debug("signal not read: %s", exc.reason)
        except MetricsError as exc:
            log.debug("signal not read: %s; query: %s", exc.reason, query)
        return None

    return Observation(
        queue_depth=queue,
        running=read(queries.running),
        arrival_rate=read(queries.arrival_rate),
        throughput=read(queries.throughput),
        kv_cache_usage=read(queries.kv_cache_usage),
        error=error,
        queue_absent=absent,
    )
