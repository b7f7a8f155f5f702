"""Replaying a service's own traffic: demand history from Prometheus as a trace.

The query must return requests per second (e.g.
``sum(rate(vllm:request_success_total[1m]))`` or a gateway's request counter).
Prometheus refuses range queries of more than 11,000 points, so a week at
15 s is fetched in chunks; series in the result are summed per timestamp.
"""

import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from gpufinops.sim.traces import Trace, TraceError, from_rate_samples

MAX_POINTS = 11_000
"""Prometheus' limit on points per series in one range query."""

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


def chunks(
    start: float, end: float, step: float, max_points: int = MAX_POINTS
) -> list[tuple[float, float]]:
    """Consecutive ``(first, last)`` sample times covering ``start..end`` on the
    step grid, each with at most ``max_points`` samples and none shared."""
    if step <= 0 or end < start:
        raise ValueError("need step > 0 and end >= start")
    count = math.floor((end - start) / step + 1e-9) + 1
    out = []
    for first in range(0, count, max_points):
        last = min(count, first + max_points) - 1
        out.append((start + first * step, start + last * step))
    return out


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
    for first, last in chunks(start, end, step, MAX_POINTS - 1):
        # Exact float bounds: the library would round datetimes to whole seconds.
        params = {"start": repr(first), "end": repr(last), "step": repr(float(step))}
        parts.extend(
            client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(first, UTC),
                end_time=datetime.fromtimestamp(last, UTC),
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
