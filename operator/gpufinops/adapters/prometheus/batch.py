"""Instant signals of every workload from one query per engine preset and metric.

Each workload's tick needs up to five instant values (queue, running, demand,
throughput, KV cache). Asked per workload, N workloads cost 5 N queries per
sync period, each a regex selection over the same series: at 2,000 workloads
that is 10,000 queries every 15 s, which loads Prometheus (and the operator's
threads) for answers it could give at once. Here each preset metric is asked
once for every workload that reads it, grouped by the labels the preset scopes
workloads with (``sum by (namespace, pod, model_name) (...)``), and each
workload adds up the rows of its own pods in Python.

What a workload reads does not change:

- rows are selected with the same pod pattern as the per-workload query
  (``pods_regex``, matched with ``re.fullmatch``: the RE2 patterns
  presets build use only syntax Python's ``re`` reads the same way), the same
  namespace and, when the spec names one, the same model;
- a workload without rows is unknown (no series), never zero;
- a NaN or infinite sum is an error, as ``PrometheusClient.instant`` makes it;
- a failed batch fails every workload that reads it, with the reason, and
  ``PrometheusUnavailable`` stays that class so ticks stop querying at once.

A batch is cached for ``ttl`` seconds (the operator uses half the sync period,
so values are at most that much older than a per-workload query would give)
and refreshed by the first workload that asks after it expired or whose
namespace it did not cover; the others wait for that one refresh instead of
sending their own. Ticks run in worker threads, hence thread locks.

``server: custom`` queries and ``queueQuery``/``demandQuery`` overrides are the
user's PromQL, which cannot be split by pod: they stay per workload. So does
the demand history (range queries for the forecaster): it is cached per
workload and fetched incrementally, a short tail per tick.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.presets import (
    PRESETS,
    RATE_WINDOW,
    Scope,
    ScopeLabels,
    SignalQueries,
    counter_rate,
    gauge_mean,
    gauge_sum,
    pods_regex,
    quote,
    quote_regex,
)
from gpufinops.api.inference import InferenceMetrics, MetricsServer

Row = tuple[Mapping[str, str], float]
"""One sample of an instant vector: its labels and value."""

Kind = Literal["gauge", "rate", "mean"]

Index = Mapping[str, tuple[list[str], list[tuple[str, str, float]]]]
"""Rows of one batch by namespace: sorted pod names, and (pod, model, value) in that order."""

POD_NAME_PREFIX = 58
"""Kubernetes keeps at least this many leading characters of ``<deployment>-<hash>-``
in pod names, so every pod of a Deployment starts with that many of its name's."""

_ABOVE_ANY = "\U0010ffff"

MAX_NAMESPACE_MATCHER = 4000
"""Longest namespace alternation put in a batch query. The query travels in the URL,
and proxies in front of Prometheus often refuse URLs over 8 KiB; past this the batch
reads every namespace and keeps only the workloads' rows, which is slower, not wrong."""


class InstantSource(Protocol):
    """What reads one value (``PrometheusClient``, or a stand-in in tests)."""

    def instant(self, query: str) -> float | None: ...


class VectorSource(Protocol):
    """What reads a whole instant vector (``PrometheusVectors``, or a stand-in in tests)."""

    def vector(self, query: str) -> list[Row]: ...


class PrometheusVectors:
    """Instant vector queries through a ``PrometheusClient``, with its error translation."""

    def __init__(self, client: PrometheusClient, *, kind: str = "signals_batch") -> None:
        self.client = client
        self.kind = kind
        """How the queries are counted in ``gpufinops_prometheus_queries_total``."""

    def vector(self, query: str, *, at: float | None = None) -> list[Row]:
        """Every series of ``query`` now (or at epoch ``at``) with its value; NaN kept as NaN.

        Raises ``MetricsError`` when the query fails or does not return a vector.
        """
        params = {} if at is None else {"time": repr(float(at))}
        client = self.client
        result = client.result(
            "/api/v1/query", query, params, kind=self.kind, bounds=client.batch_bounds
        )
        try:
            if not isinstance(result, list):
                raise TypeError(f"result is a {type(result).__name__}")
            if len(result) == 2 and not isinstance(result[0], dict):
                raise TypeError("result is a scalar, expected a vector")
            return [(dict(item["metric"]), float(item["value"][1])) for item in result]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsError(f"unreadable answer from Prometheus: {exc}", query=query) from exc


@dataclass(frozen=True)
class BatchKey:
    """One preset metric read the same way for every workload: the unit of batching."""

    kind: Kind
    """``gauge`` and ``rate`` are summed over a workload's rows, ``mean`` averaged."""
    metrics: tuple[str, ...]
    """The metric name; for ``mean``, its successive names (see ``gauge_mean``)."""
    labels: ScopeLabels
    window: str = RATE_WINDOW

    @property
    def group_labels(self) -> tuple[str, ...]:
        scoped = (self.labels.namespace, self.labels.pod, self.labels.model)
        return tuple(label for label in scoped if label is not None)

    def query(self, namespaces: Collection[str] | None) -> str:
        """The PromQL answering every workload in ``namespaces`` (all when ``None``).

        Restricting to the namespaces of known workloads keeps series of other
        tenants out of the answer; the literal alternation is a set lookup in
        Prometheus, not a regex scan.
        """
        sel = ""
        if self.labels.namespace is not None and namespaces is not None:
            names = sorted(namespaces)
            if len(names) == 1:
                sel = f"{{{self.labels.namespace}={quote(names[0])}}}"
            else:
                alternatives = "|".join(quote_regex(name) for name in names)
                sel = f"{{{self.labels.namespace}=~{quote(alternatives)}}}"
        if self.kind == "mean":
            # Per series, not summed: a mean needs each pod's value and how many there are.
            return " or ".join(f"{metric}{sel}" for metric in self.metrics)
        metric = self.metrics[0]
        inner = f"{metric}{sel}" if self.kind == "gauge" else f"rate({metric}{sel}[{self.window}])"
        groups = ",".join(self.group_labels)
        return f"sum by ({groups}) ({inner})" if groups else f"sum({inner})"


def plan_for(
    metrics: InferenceMetrics,
    namespace: str,
    deployment: str,
    queries: SignalQueries,
    *,
    kind: str = "Deployment",
    rate_window: str = RATE_WINDOW,
    pods: str | None = None,
) -> dict[str, BatchKey]:
    """Which of the workload's ``queries`` a batch answers, and which batch.

    A query is batched only when it is exactly the preset's query for this
    scope, rebuilt here with the same functions; anything else (custom
    servers, the user's overrides) is absent and stays per workload.
    """
    if metrics.server == MetricsServer.CUSTOM:
        return {}
    preset = PRESETS[metrics.server]
    labels = preset.labels
    scope = Scope(namespace, deployment, model_name=metrics.model_name, kind=kind, pods=pods)
    sel = scope.matchers(labels)
    known: dict[str, BatchKey] = {}
    for gauge in (preset.queue, preset.running):
        if gauge is not None:
            known[gauge_sum(gauge, sel)] = BatchKey("gauge", (gauge,), labels)
    for counter in (preset.completions, preset.arrivals):
        if counter is not None:
            known[counter_rate(counter, sel, rate_window)] = BatchKey(
                "rate", (counter,), labels, rate_window
            )
    if preset.kv_cache:
        known[gauge_mean(preset.kv_cache, sel)] = BatchKey("mean", preset.kv_cache, labels)
    read = (
        queries.queue,
        queries.running,
        queries.arrival_rate,
        queries.throughput,
        queries.kv_cache_usage,
    )
    return {query: known[query] for query in read if query is not None and query in known}


@dataclass(frozen=True)
class Selector:
    """Which rows of a batch are one workload's: the per-workload query's matchers."""

    namespace: str
    deployment: str
    model_name: str | None
    kind: str = "Deployment"
    pods_pattern: str | None = None
    """RE2 of the pod names, overriding the one derived from ``deployment``."""
    pods: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = self.pods_pattern or pods_regex(self.kind, self.deployment)
        object.__setattr__(self, "pods", re.compile(pattern))

    def values(self, index: Index, labels: ScopeLabels) -> list[float]:
        entry = index.get(self.namespace if labels.namespace is not None else "")
        if entry is None:
            return []
        pods, rows = entry
        lo, hi = 0, len(rows)
        pattern: re.Pattern[str] | None = None
        if labels.pod is not None:
            # Sorted pod names: only those starting with the Deployment's name are candidates.
            prefix = self.deployment[:POD_NAME_PREFIX]
            lo = bisect.bisect_left(pods, prefix)
            hi = bisect.bisect_left(pods, prefix + _ABOVE_ANY, lo)
            pattern = self.pods
        model = self.model_name if labels.model is not None else None
        return [
            value
            for pod, row_model, value in rows[lo:hi]
            if (pattern is None or pattern.fullmatch(pod)) and (model is None or row_model == model)
        ]


def index_rows(rows: list[Row], labels: ScopeLabels) -> Index:
    """Group rows by namespace and sort them by pod, so a workload finds its own quickly."""
    grouped: dict[str, list[tuple[str, str, float]]] = {}
    for metric, value in rows:
        namespace = metric.get(labels.namespace, "") if labels.namespace is not None else ""
        pod = metric.get(labels.pod, "") if labels.pod is not None else ""
        model = metric.get(labels.model, "") if labels.model is not None else ""
        grouped.setdefault(namespace, []).append((pod, model, value))
    index: dict[str, tuple[list[str], list[tuple[str, str, float]]]] = {}
    for namespace, items in grouped.items():
        items.sort(key=lambda item: item[0])
        index[namespace] = ([item[0] for item in items], items)
    return index


@dataclass(frozen=True)
class _Result:
    """One refresh of a batch; replaced whole, so readers need no lock."""

    fetched: float
    namespaces: frozenset[str] | None
    index: Index | None
    error: MetricsError | None
    query: str
    workloads: int


class _Batch:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.result: _Result | None = None


class SignalBatcher:
    """Shared by every workload of an operator: one cache entry per ``BatchKey``."""

    def __init__(
        self,
        source: VectorSource,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.vectors = source
        self.ttl = ttl
        self.clock = clock
        self.queries = 0
        """Batch queries sent so far (for benchmarks and tests)."""
        self._registry = threading.Lock()
        self._batches: dict[BatchKey, _Batch] = {}
        # Weak: a workload that is gone (deleted, retargeted) drops out of the batch query.
        self._sources: weakref.WeakSet[BatchedSource] = weakref.WeakSet()

    def source(
        self,
        metrics: InferenceMetrics,
        namespace: str,
        deployment: str,
        queries: SignalQueries,
        fallback: InstantSource,
        kind: str = "Deployment",
        pods: str | None = None,
    ) -> BatchedSource:
        """An ``InstantSource`` for one workload; ``fallback`` answers what is not batched."""
        plan = plan_for(metrics, namespace, deployment, queries, kind=kind, pods=pods)
        selector = Selector(namespace, deployment, metrics.model_name, kind, pods)
        source = BatchedSource(self, plan, selector, fallback)
        with self._registry:
            self._sources.add(source)
            for key in plan.values():
                self._batches.setdefault(key, _Batch())
        return source

    def value(self, key: BatchKey, selector: Selector, query: str) -> float | None:
        """The workload's value of ``query`` from the batch of ``key``, as ``instant`` gives it."""
        result = self._fresh(key, selector.namespace)
        if result.error is not None:
            error = result.error
            plural = "s" if result.workloads != 1 else ""
            raise type(error)(
                f"{error.reason} (one query for {result.workloads} workload{plural})", query=query
            )
        assert result.index is not None
        values = selector.values(result.index, key.labels)
        if not values:
            return None
        total = sum(values)
        value = total / len(values) if key.kind == "mean" else total
        if not math.isfinite(value):
            raise MetricsError(f"query returned {value!r}", query=query)
        return value

    def _covers(self, result: _Result | None, namespace: str) -> bool:
        return (
            result is not None
            and self.clock() - result.fetched < self.ttl
            and (result.namespaces is None or namespace in result.namespaces)
        )

    def _fresh(self, key: BatchKey, namespace: str) -> _Result:
        with self._registry:
            batch = self._batches.setdefault(key, _Batch())
        result = batch.result
        if result is not None and self._covers(result, namespace):
            return result
        with batch.lock:
            result = batch.result  # refreshed while this thread waited for the lock?
            if result is not None and self._covers(result, namespace):
                return result
            namespaces, workloads = self._readers(key)
            namespaces.add(namespace)
            scoped = key.labels.namespace is not None and (
                sum(len(name) + 1 for name in namespaces) <= MAX_NAMESPACE_MATCHER
            )
            query = key.query(namespaces if scoped else None)
            index: Index | None = None
            error: MetricsError | None = None
            try:
                index = index_rows(self.vectors.vector(query), key.labels)
            except MetricsError as exc:
                error = exc
            self.queries += 1
            result = _Result(
                # From the answer, not the question: a query slower than the TTL must not
                # leave every waiting tick to find it expired and send its own again.
                fetched=self.clock(),
                namespaces=frozenset(namespaces) if scoped else None,
                index=index,
                error=error,
                query=query,
                workloads=max(workloads, 1),
            )
            batch.result = result
            return result

    def _readers(self, key: BatchKey) -> tuple[set[str], int]:
        """Namespaces and number of the live workloads that read ``key``."""
        with self._registry:
            sources = list(self._sources)
        readers = [source for source in sources if key in source.keys]
        return {source.selector.namespace for source in readers}, len(readers)


class BatchedSource:
    """One workload's ``InstantSource``: batched answers for preset queries, the rest direct."""

    def __init__(
        self,
        batcher: SignalBatcher,
        plan: Mapping[str, BatchKey],
        selector: Selector,
        fallback: InstantSource,
    ) -> None:
        self.batcher = batcher
        self.plan = dict(plan)
        self.keys = frozenset(plan.values())
        self.selector = selector
        self.fallback = fallback

    def instant(self, query: str) -> float | None:
        key = self.plan.get(query)
        if key is None:
            return self.fallback.instant(query)
        return self.batcher.value(key, self.selector, query)
