"""A thin Prometheus HTTP API client: instant values and chunked range series.

It wraps ``prometheus_api_client.PrometheusConnect`` and turns every way a
query can fail (connection, timeout, HTTP status, unreadable body, NaN or Inf)
into a ``MetricsError`` whose ``reason`` is fit for a status condition. An
empty result is not an error: it is ``None`` (instant) or NaN samples (range),
never zero.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

import numpy as np
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests import exceptions as http_errors
from urllib3.util.retry import Retry

from gpufinops.adapters.operator_metrics import PROMETHEUS_QUERIES
from gpufinops.core.forecast.series import DemandSeries, FloatArray

MAX_POINTS_PER_REQUEST = 11_000
"""Prometheus refuses range queries of more than 11,000 points per series."""

_STATUS_ERROR = re.compile(r"HTTP Status Code (\d+) \((.*)\)", re.DOTALL)
_ERRNO = re.compile(r"\[Errno -?\d+\][^'\")]*")


class MetricsError(Exception):
    """A query could not be answered; ``reason`` says why, for status and Events."""

    def __init__(self, reason: str, *, query: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.query = query


class PrometheusUnavailable(MetricsError):
    """Prometheus could not be reached or did not answer: every other query would fail too."""


class PrometheusClient:
    """Instant and range queries against one Prometheus server."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        disable_ssl: bool = False,
        headers: Mapping[str, str] | None = None,
        retries: int = 1,
        max_points: int = MAX_POINTS_PER_REQUEST,
    ) -> None:
        """``retries`` re-tries refused connections and 502/503/504 answers, not slow queries.

        ``timeout`` bounds each HTTP request, in seconds. ``max_points`` caps the
        samples of one range request (lower it only to test chunking).
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 1 <= max_points <= MAX_POINTS_PER_REQUEST:
            raise ValueError(f"max_points must be between 1 and {MAX_POINTS_PER_REQUEST}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_points = max_points
        retry = Retry(
            total=retries,
            connect=retries,
            read=False,  # re-raise read timeouts as such; a slow query is not retried
            status=retries,
            backoff_factor=0.1,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
        )
        self._prom = PrometheusConnect(
            url=self.url,
            headers=dict(headers or {}),
            disable_ssl=disable_ssl,
            retry=retry,
            # Annotated int upstream; it is handed to requests, which takes float seconds.
            timeout=cast(int, timeout),
        )

    @property
    def connection(self) -> PrometheusConnect:
        """The underlying ``PrometheusConnect``, for the API calls not wrapped here."""
        return self._prom

    def close(self) -> None:
        self._prom.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def instant(self, query: str, *, at: float | None = None) -> float | None:
        """The single value of ``query`` now (or at epoch ``at``); ``None`` when it has no series.

        Raises ``MetricsError`` when the query fails, returns several series
        (aggregate it, e.g. with ``sum``), or its value is NaN or infinite.
        """
        params = {} if at is None else {"time": repr(float(at))}
        result = self._call(
            query, lambda: self._prom.custom_query(query, params=params), kind="instant"
        )
        try:
            if not isinstance(result, list):
                raise TypeError(f"result is a {type(result).__name__}")
            if len(result) == 2 and not isinstance(result[0], dict):
                raw = result[1]  # a scalar: [time, "value"]
            elif not result:
                return None
            elif len(result) > 1:
                raise MetricsError(
                    f"query returned {len(result)} series, expected one "
                    "(aggregate it, e.g. with sum)",
                    query=query,
                )
            else:
                raw = result[0]["value"][1]
            value = float(raw)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsError(f"unreadable answer from Prometheus: {exc}", query=query) from exc
        if not math.isfinite(value):
            raise MetricsError(f"query returned {value!r}", query=query)
        return value

    def range(self, query: str, start: float, end: float, step: float) -> DemandSeries:
        """``query`` at ``start``, ``start + step``, ... up to ``end`` inclusive (epoch seconds).

        The span is split into requests of at most ``max_points`` samples.
        Steps with no value, or a NaN or infinite one, are NaN in the series.
        """
        if step <= 0:
            raise ValueError("step must be positive")
        if end < start:
            raise ValueError("end must not precede start")
        count = math.floor((end - start) / step + 1e-9) + 1
        values = np.full(count, np.nan, dtype=np.float64)
        for first in range(0, count, self.max_points):
            last = min(count, first + self.max_points) - 1
            self._fill(query, values, start, step, first, last)
        return DemandSeries(start, step, values)

    def _fill(
        self,
        query: str,
        values: FloatArray,
        start: float,
        step: float,
        first: int,
        last: int,
    ) -> None:
        """Query samples ``first..last`` (inclusive) of the grid into ``values``."""
        chunk_start = start + first * step
        chunk_end = start + last * step
        # The library rounds datetimes to whole seconds; exact values override them.
        params = {"start": repr(chunk_start), "end": repr(chunk_end), "step": repr(float(step))}
        result = self._call(
            query,
            lambda: self._prom.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(chunk_start, UTC),
                end_time=datetime.fromtimestamp(chunk_end, UTC),
                step=params["step"],
                params=params,
            ),
            kind="range",
        )
        try:
            if not isinstance(result, list):
                raise TypeError(f"result is a {type(result).__name__}")
            if len(result) > 1:
                raise MetricsError(
                    f"query returned {len(result)} series, expected one "
                    "(aggregate it, e.g. with sum)",
                    query=query,
                )
            samples = result[0]["values"] if result else []
            for stamp, raw in samples:
                index = round((float(stamp) - start) / step)
                if first <= index <= last:
                    value = float(raw)
                    values[index] = value if math.isfinite(value) else np.nan
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsError(f"unreadable answer from Prometheus: {exc}", query=query) from exc

    def _call(self, query: str, request: Callable[[], Any], *, kind: str) -> Any:
        """Run one API call, translating its failures into ``MetricsError``.

        ``kind`` labels the call in ``gpufinops_prometheus_queries_total``.
        """
        PROMETHEUS_QUERIES.labels(kind).inc()
        try:
            return request()
        except PrometheusApiClientException as exc:
            raise _status_error(str(exc), query) from exc
        except http_errors.InvalidJSONError as exc:
            # A body that is not the API's JSON (e.g. a proxy's login page).
            raise MetricsError(f"unreadable answer from Prometheus: {exc}", query=query) from exc
        except http_errors.InvalidURL as exc:
            raise MetricsError(f"invalid Prometheus URL {self.url}: {exc}", query=query) from exc
        except http_errors.ConnectionError as exc:
            raise PrometheusUnavailable(
                f"Prometheus unreachable at {self.url}: {_short(exc)}", query=query
            ) from exc
        except http_errors.Timeout as exc:
            raise PrometheusUnavailable(
                f"Prometheus did not answer within {self.timeout:g}s", query=query
            ) from exc
        except http_errors.RequestException as exc:
            raise PrometheusUnavailable(
                f"request to Prometheus failed: {_short(exc)}", query=query
            ) from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            # JSON, but not the API's shape.
            raise MetricsError(f"unreadable answer from Prometheus: {exc}", query=query) from exc


def _status_error(message: str, query: str) -> MetricsError:
    """The error for a non-200 answer, with Prometheus' own explanation when it gave one."""
    match = _STATUS_ERROR.fullmatch(message)
    if match is None:
        return MetricsError(f"Prometheus answered: {message}", query=query)
    status = int(match.group(1))
    detail = match.group(2)
    try:
        body = ast.literal_eval(detail)
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        payload = json.loads(body)
        detail = f"{payload.get('errorType', 'error')}: {payload['error']}"
    except (ValueError, SyntaxError, KeyError, TypeError, AttributeError):
        detail = detail[:200]
    if status >= 500:
        return PrometheusUnavailable(f"Prometheus answered HTTP {status}: {detail}", query=query)
    return MetricsError(f"Prometheus rejected the query (HTTP {status}): {detail}", query=query)


def _short(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 error (its errno text), not the object reprs."""
    text = str(exc)
    found = _ERRNO.search(text)
    if found is not None:
        return found.group(0).strip()
    if "timed out" in text:
        return "connection timed out"
    return text[:200]
