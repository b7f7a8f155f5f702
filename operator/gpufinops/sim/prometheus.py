"""Replaying a service's own traffic: demand history from Prometheus as a trace.

The query must return requests per second (e.g.
``sum(rate(vllm:request_success_total[1m]))`` or a gateway's request counter).
Prometheus refuses range queries of more than 11,000 points, so a week at
15 s is fetched in chunks, cut as the operator cuts its own range reads
(``adapters.prometheus.client.range_chunks``); series in the result are summed
per timestamp.
"""

import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from gpufinops.adapters.prometheus.client import range_chunks
from gpufinops.sim.traces import Trace, TraceError, from_rate_samples

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


class RangeClient(Protocol):
    """The one call used from ``prometheus_api_client.PrometheusConnect``."""

    def custom_query_range(
        self,
        query: str,
        start_time: datetime,
        end_time: datetime,
        step: str,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]: ...


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration (``7d``, ``1h30m``, ``90s``) or a plain number."""
    raw = text.strip()
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if value > 0 and math.isfinite(value):
            return value
        raise ValueError(f"duration {text!r} must be positive")
    pos, total = 0, 0.0
    for match in _DURATION.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or total <= 0:
        raise ValueError(f"invalid duration {text!r} (examples: 7d, 12h, 1h30m, 900s)")
    return total


def sum_series(results: Iterable[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and the sum over series of a range query's ``values``; samples
    that are not finite numbers (``NaN``, ``+Inf``, garbage) are left out."""
    totals: dict[float, float] = {}
    for series in results:
        for pair in series.get("values") or ():
            try:
                stamp, value = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError):
                continue
            if math.isfinite(stamp) and math.isfinite(value):
                totals[stamp] = totals.get(stamp, 0.0) + value
    stamps = np.array(sorted(totals), dtype=np.float64)
    return stamps, np.array([totals[t] for t in stamps], dtype=np.float64)


def fetch_range(
    client: RangeClient, query: str, start: float, end: float, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """``query`` over ``start..end`` in chunks under the point limit, series summed."""
    parts: list[Mapping[str, Any]] = []
    for chunk in range_chunks(start, end, step):
        params = chunk.params()  # exact bounds, which the datetimes are not
        parts.extend(
            client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(chunk.start, UTC),
                end_time=datetime.fromtimestamp(chunk.end, UTC),
                step=params["step"],
                params=params,
            )
        )
    return sum_series(parts)


def prometheus_trace(
    url: str,
    query: str,
    since: str,
    step: float = 15.0,
    end: float | None = None,
    client: RangeClient | None = None,
) -> Trace:
    """The last ``since`` of ``query`` (requests/s) as a trace."""
    seconds = parse_duration(since)
    stop = math.floor((time.time() if end is None else end) / step) * step
    if client is None:
        from prometheus_api_client import PrometheusConnect

        client = PrometheusConnect(url=url, disable_ssl=False)
    try:
        stamps, values = fetch_range(client, query, stop - seconds, stop, step)
    except Exception as exc:  # the library raises bare Exceptions for HTTP errors
        raise TraceError(f"{url}: query failed: {exc}") from None
    if stamps.size == 0:
        raise TraceError(f"{url}: {query!r} returned no samples over the last {since}")
    return from_rate_samples("prometheus", stamps, values, step)
