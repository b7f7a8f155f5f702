"""A thin Prometheus HTTP API client: instant values and chunked range series.

Every answer is read under bounds (``AnswerBounds``): bytes and series are
counted while the body streams in, so a query that matches far more than it
should (a tenant's ``{__name__=~".+"}``) is refused after a few kilobytes
instead of being loaded whole. The query's ``timeout`` goes to Prometheus too,
so it stops evaluating when the operator stops waiting, and reading has a
total deadline, so a server that trickles bytes cannot hold a thread.

Every way a query can fail (connection, timeout, HTTP status, unreadable body,
oversized answer, NaN or Inf) becomes a ``MetricsError`` whose ``reason`` is fit
for a status condition: it never carries Prometheus' error body beyond a
parse error of the query itself, since an execution error lists other series'
label sets. An empty result is not an error: it is ``None`` (instant) or NaN
samples (range), never zero.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import requests
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests import exceptions as http_errors
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from gpufinops.adapters.operator_metrics import PROMETHEUS_QUERIES, PROMETHEUS_REFUSED
from gpufinops.core.forecast.series import DemandSeries, FloatArray

if TYPE_CHECKING:
    from gpufinops.config.model import PrometheusConfig

log = logging.getLogger(__name__)

MAX_POINTS_PER_REQUEST = 11_000
"""Prometheus refuses range queries of more than 11,000 points per series."""

CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection; a Prometheus that is up accepts at once."""

_CHUNK = 64 * 1024
_SERIES_KEY = re.compile(rb'"metric"\s*:\s*\{')
"""Where a series starts in the API's JSON. Inside a label value the quotes are
escaped, and a label named ``metric`` has a string value, so this counts series only."""
_ERRNO = re.compile(r"\[Errno -?\d+\][^'\")]*")


class MetricsError(Exception):
    """A query could not be answered; ``reason`` says why, for status and Events."""

    def __init__(self, reason: str, *, query: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.query = query


class PrometheusUnavailable(MetricsError):
    """Prometheus could not be reached or did not answer: every other query would fail too."""


class AnswerTooLarge(MetricsError):
    """The answer passed a bound; it was refused while being read, never loaded whole."""


@dataclass(frozen=True)
class AnswerBounds:
    """How much one answer may weigh."""

    series: int
    """Series the answer may hold; one more and it is refused."""
    bytes: int
    """Bytes of the (decompressed) body."""
    series_key: str = "prometheus.limits.maxSeries"
    bytes_key: str = "prometheus.limits.maxResponseBytes"
    """The config keys that set them, named in the refusal."""


WORKLOAD_BOUNDS = AnswerBounds(series=2, bytes=1 << 20)
"""A workload's own query needs one series: the second already makes it an error."""
BATCH_BOUNDS = AnswerBounds(
    series=200_000,
    bytes=32 << 20,
    series_key="prometheus.limits.maxBatchSeries",
    bytes_key="prometheus.limits.maxBatchResponseBytes",
)


@dataclass(frozen=True)
class RangeChunk:
    """One request's share of a range query: samples ``first..last`` (inclusive) of the
    grid ``start, start + step, ...``, whose times are ``start..end``."""

    first: int
    last: int
    start: float
    end: float
    step: float

    @property
    def points(self) -> int:
        return self.last - self.first + 1

    def params(self) -> dict[str, str]:
        """``start``, ``end`` and ``step`` of the request, as exact floats: sent as
        datetimes, ``prometheus_api_client`` would round them to whole seconds."""
        return {"start": repr(self.start), "end": repr(self.end), "step": repr(float(self.step))}


def range_chunks(
    start: float, end: float, step: float, max_points: int = MAX_POINTS_PER_REQUEST
) -> list[RangeChunk]:
    """The grid ``start, start + step, ...`` up to ``end`` inclusive, cut into consecutive
    requests of at most ``max_points`` samples, none shared, so that Prometheus
    answers each (it refuses a range of more than 11,000 points per series).

    Every range read goes through this: the operator's (``PrometheusClient.range``)
    and the simulator's replay of a service's history (``sim.prometheus``).
    """
    if step <= 0:
        raise ValueError("step must be positive")
    if end < start:
        raise ValueError("end must not precede start")
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    count = math.floor((end - start) / step + 1e-9) + 1
    out = []
    for first in range(0, count, max_points):
        last = min(count, first + max_points) - 1
        out.append(RangeChunk(first, last, start + first * step, start + last * step, step))
    return out


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
        session: requests.Session | None = None,
        bounds: AnswerBounds = WORKLOAD_BOUNDS,
        batch_bounds: AnswerBounds = BATCH_BOUNDS,
    ) -> None:
        """``retries`` re-tries refused connections and 502/503/504 answers, not slow queries.

        ``timeout`` bounds each query, in seconds: Prometheus is asked to give
        up after it, and the operator stops reading a little later. ``session``
        carries credentials, headers and TLS (``adapters.http_client``).
        ``max_points`` caps the samples of one range request (lower it only to
        test chunking).
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 1 <= max_points <= MAX_POINTS_PER_REQUEST:
            raise ValueError(f"max_points must be between 1 and {MAX_POINTS_PER_REQUEST}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_points = max_points
        self.bounds = bounds
        self.batch_bounds = batch_bounds
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
        self.session = session if session is not None else requests.Session()
        if session is None and disable_ssl:
            self.session.verify = False
        self.session.headers.update(headers or {})
        self.session.mount(self.url, HTTPAdapter(max_retries=retry))
        # Kept for the API calls not wrapped here (labels, metadata); queries go below.
        self._prom = PrometheusConnect(url=self.url, session=self.session, retry=retry)

    @classmethod
    def from_config(cls, config: PrometheusConfig) -> PrometheusClient:
        """The client an operator's ``prometheus`` config describes."""
        from gpufinops.adapters.http_client import session_for

        limits = config.limits
        return cls(
            config.url,
            timeout=config.timeout_seconds,
            session=session_for(config),
            bounds=AnswerBounds(series=limits.max_series, bytes=limits.max_response_bytes),
            batch_bounds=AnswerBounds(
                series=limits.max_batch_series,
                bytes=limits.max_batch_response_bytes,
                series_key=BATCH_BOUNDS.series_key,
                bytes_key=BATCH_BOUNDS.bytes_key,
            ),
        )

    @property
    def connection(self) -> PrometheusConnect:
        """The underlying ``PrometheusConnect``, for the API calls not wrapped here."""
        return self._prom

    def close(self) -> None:
        self.session.close()

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
        result = self.result("/api/v1/query", query, params, kind="instant")
        try:
            if not isinstance(result, list):
                raise TypeError(f"result is a {type(result).__name__}")
            if len(result) == 2 and not isinstance(result[0], dict):
                raw = result[1]  # a scalar: [time, "value"]
            elif not result:
                return None
            elif len(result) > 1:
                raise MetricsError(_several(len(result), self.bounds), query=query)
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

        The span is split into requests of at most ``max_points`` samples
        (``range_chunks``). Steps with no value, or a NaN or infinite one, are NaN
        in the series.
        """
        chunks = range_chunks(start, end, step, self.max_points)
        values = np.full(chunks[-1].last + 1, np.nan, dtype=np.float64)
        for chunk in chunks:
            self._fill(query, values, start, chunk)
        return DemandSeries(start, step, values)

    def _fill(self, query: str, values: FloatArray, start: float, chunk: RangeChunk) -> None:
        """Query the chunk's samples into their places in ``values`` (the grid from ``start``)."""
        # A range answer of one series at 11,000 points is ~300 KB; allow for that.
        bounds = AnswerBounds(
            series=self.bounds.series,
            bytes=max(self.bounds.bytes, 64 * chunk.points + 4096),
            series_key=self.bounds.series_key,
            bytes_key=self.bounds.bytes_key,
        )
        result = self.result(
            "/api/v1/query_range", query, chunk.params(), kind="range", bounds=bounds
        )
        try:
            if not isinstance(result, list):
                raise TypeError(f"result is a {type(result).__name__}")
            if len(result) > 1:
                raise MetricsError(_several(len(result), self.bounds), query=query)
            samples = result[0]["values"] if result else []
            for stamp, raw in samples:
                index = round((float(stamp) - start) / chunk.step)
                if chunk.first <= index <= chunk.last:
                    value = float(raw)
                    values[index] = value if math.isfinite(value) else np.nan
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsError(f"unreadable answer from Prometheus: {exc}", query=query) from exc

    def result(
        self,
        path: str,
        query: str,
        params: Mapping[str, str],
        *,
        kind: str,
        bounds: AnswerBounds | None = None,
    ) -> Any:
        """``data.result`` of one API call, read under ``bounds`` (the workload bounds).

        ``kind`` labels the call in ``gpufinops_prometheus_queries_total``.
        """
        bounds = bounds or self.bounds
        PROMETHEUS_QUERIES.labels(kind).inc()
        sent = {
            **params,
            "query": query,
            "timeout": f"{self.timeout:g}s",
            # Prometheus 3 truncates the answer itself; older versions ignore the parameter,
            # and the count while reading holds either way.
            "limit": str(bounds.series),
        }
        try:
            status, body = self._get(path, sent, bounds)
        except AnswerTooLarge as exc:
            PROMETHEUS_REFUSED.labels(kind).inc()
            exc.query = query
            raise
        except http_errors.InvalidURL as exc:
            raise MetricsError(f"invalid Prometheus URL {self.url}: {exc}", query=query) from exc
        except http_errors.SSLError as exc:
            raise PrometheusUnavailable(
                f"TLS with Prometheus at {self.url} failed: {_short(exc)}", query=query
            ) from exc
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
        if status != 200:
            raise _status_error(status, body, query)
        try:
            payload = json.loads(body)
            if payload.get("status") != "success":
                raise ValueError(f"status {payload.get('status')!r}")
            return payload["data"]["result"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Not the API's JSON (e.g. a proxy's login page): say what, not the page.
            raise MetricsError(
                f"unreadable answer from Prometheus: {type(exc).__name__}", query=query
            ) from exc

    def _get(self, path: str, params: Mapping[str, str], bounds: AnswerBounds) -> tuple[int, bytes]:
        """The status and body of one GET, read chunk by chunk within ``bounds``.

        A body is read only while it stays within the bounds and the deadline
        (the query timeout plus connecting): past either, the connection is
        dropped and the answer refused.
        """
        deadline = time.monotonic() + CONNECT_TIMEOUT + self.timeout + 1.0
        response = self.session.get(
            self.url + path,
            params=params,
            timeout=(CONNECT_TIMEOUT, self.timeout + 1.0),
            stream=True,
        )
        with response:
            chunks: list[bytes] = []
            size = 0
            series = 0
            tail = b""
            for chunk in response.iter_content(_CHUNK):
                size += len(chunk)
                if size > bounds.bytes:
                    raise AnswerTooLarge(
                        f"answer larger than {_bytes(bounds.bytes)} ({bounds.bytes_key}); "
                        "select fewer series, e.g. aggregate with sum"
                    )
                if response.status_code == 200:
                    window = tail + chunk
                    series += len(_SERIES_KEY.findall(window)) - len(_SERIES_KEY.findall(tail))
                    tail = window[-32:]
                    if series > bounds.series:
                        raise AnswerTooLarge(_several(series, bounds, more=True))
                if time.monotonic() > deadline:
                    raise http_errors.Timeout("answer not complete before the deadline")
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)


def _several(count: int, bounds: AnswerBounds, *, more: bool = False) -> str:
    """The refusal of an answer with too many series, naming the knob when it is one."""
    if bounds.series <= 2:
        return (
            f"query returned {'more than one' if more else count} series, expected one "
            "(aggregate it, e.g. with sum)"
        )
    return (
        f"query returned more than {bounds.series} series ({bounds.series_key}); "
        "select fewer series, e.g. aggregate with sum"
    )


def _status_error(status: int, body: bytes, query: str) -> MetricsError:
    """The error for a non-200 answer, short and free of other series' labels.

    A ``bad_data`` answer is about the query or its parameters (a parse error):
    its message is the user's to read. Any other (an execution error lists the
    label sets of the series that clashed, a proxy's page may say anything) is
    summarised by its type; the full answer goes to the operator's debug log.
    """
    error_type, detail = "error", ""
    try:
        payload = json.loads(body)
        error_type = str(payload.get("errorType", "error"))
        detail = str(payload.get("error", ""))
    except (ValueError, AttributeError):
        pass
    log.debug("Prometheus answered HTTP %s for %s: %s", status, query, body[:2000])
    if status >= 500 and error_type not in ("execution", "timeout", "canceled"):
        return PrometheusUnavailable(f"Prometheus answered HTTP {status}", query=query)
    if error_type == "bad_data" and detail:
        return MetricsError(
            f"Prometheus rejected the query (HTTP {status}): bad_data: {detail[:200]}",
            query=query,
        )
    if error_type == "timeout":
        return MetricsError(
            f"Prometheus gave up on the query after its timeout (HTTP {status})", query=query
        )
    return MetricsError(f"Prometheus rejected the query (HTTP {status}, {error_type})", query=query)


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"


def _short(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 error (its errno text), not the object reprs."""
    text = str(exc)
    found = _ERRNO.search(text)
    if found is not None:
        return found.group(0).strip()
    if "timed out" in text:
        return "connection timed out"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate verify failed (set prometheus.tls.caFile to the CA that signed it)"
    return text[:200]
