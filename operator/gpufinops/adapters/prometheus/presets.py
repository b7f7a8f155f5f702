"""PromQL for each serving engine's signals, scoped to one workload.

Every preset query selects the workload's series by label: its namespace, the
pods of its Deployment and, when the spec names one, its model. Gauges are
summed over pods (KV-cache usage is averaged); counters become per-second rates
over ``rate_window``. ``server: custom`` uses the spec's queries verbatim, and
``queueQuery``/``demandQuery`` override the preset of any engine.

Demand (arrival rate) is the one signal most engines do not export directly:

- vLLM, Triton and SGLang count requests only when they *finish*, so their
  preset demand is the completion rate. It equals demand while the service keeps
  up and underestimates it while requests queue, which is when the queue signal
  takes over. Arrivals could be estimated as completions plus the growth of
  waiting and running requests, but that derivative is noisy at scrape
  resolution and its ``rate`` and ``deriv`` windows rarely align, so the preset
  does not attempt it. Set ``demandQuery`` to a gateway or router counter of
  received requests when you have one: it is the better demand series.
- TGI counts requests on arrival (``tgi_request_count``), so its preset demand
  is a true arrival rate.

Queries are plain strings built by pure functions; nothing here talks to Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gpufinops.api.inference import InferenceMetrics, MetricsServer

RATE_WINDOW = "1m"
"""Default window of ``rate()``: at least four samples at the usual 15 s scrape."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_REGEX_SPECIALS = frozenset("\\.+*?()|[]{}^$")

# generateName keeps at most 63 - 5 characters before the 5 random ones.
_GENERATED_BASE_MAX = 58
# pod-template-hash: a uint32 in decimal re-encoded in a safe alphabet, 1-10 characters.
_TEMPLATE_HASH_MAX = 10


def quote(value: str) -> str:
    """``value`` as a PromQL double-quoted string literal (Go escapes)."""
    out: list[str] = []
    for ch in value:
        if ch in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def quote_regex(value: str) -> str:
    """``value`` as an RE2 pattern matching exactly itself (Go's ``regexp.QuoteMeta``)."""
    return "".join("\\" + ch if ch in _REGEX_SPECIALS else ch for ch in value)


def deployment_pods_regex(deployment: str) -> str:
    """An RE2 pattern matching the names of the Deployment's pods and of no other's.

    Pods are named ``<deployment>-<pod-template-hash>-<5 random>``. The looser
    ``<deployment>-.*`` would also select the pods of a Deployment called
    ``<deployment>-large``, so the two generated parts are matched by shape.
    Kubernetes cuts ``<deployment>-<hash>-`` to 58 characters before adding the
    random part, so for long names only what survives the cut is pinned down.
    """
    name = quote_regex(deployment)
    if len(deployment) + 1 + _TEMPLATE_HASH_MAX + 1 <= _GENERATED_BASE_MAX:
        return f"{name}-[a-z0-9]{{1,{_TEMPLATE_HASH_MAX}}}-[a-z0-9]{{5}}"
    if len(deployment) + 1 < _GENERATED_BASE_MAX:
        return f"{name}-[a-z0-9-]+"
    return f"{quote_regex(deployment[:_GENERATED_BASE_MAX])}[a-z0-9]{{5}}"


def pods_regex(kind: str, name: str) -> str:
    """An RE2 pattern of the names of the pods of ``kind`` ``name``.

    Deployments and Argo Rollouts name pods ``<name>-<hash>-<5 random>``,
    StatefulSets ``<name>-<ordinal>``, LeaderWorkerSets ``<name>-<group>`` (leaders)
    and ``<name>-<group>-<worker>``, Jobs ``<name>-<5 random>``. Any other kind is
    matched loosely (``<name>-...``): set ``queueQuery`` to select its pods exactly.
    """
    if kind in ("Deployment", "Rollout"):
        return deployment_pods_regex(name)
    if kind == "StatefulSet":
        return f"{quote_regex(name)}-[0-9]+"
    if kind == "LeaderWorkerSet":
        return f"{quote_regex(name)}-[0-9]+(-[0-9]+)?"
    if kind == "Job":
        return f"{quote_regex(name)}-[a-z0-9]{{5}}"
    return f"{quote_regex(name)}-[a-z0-9][-a-z0-9.]*"


def service_pods_regex(kind: str, name: str, spot_pools: Sequence[str] = ()) -> str:
    """The pods of ``kind`` ``name`` and of its spot children (``<name>-spot-<pool>``,
    one Deployment per pool of ``spec.inference.spot``): one service, one signal."""
    own = pods_regex(kind, name)
    if not spot_pools:
        return own
    children = [deployment_pods_regex(f"{name}-spot-{pool}") for pool in spot_pools]
    return "(?:" + "|".join([own, *children]) + ")"


@dataclass(frozen=True)
class ScopeLabels:
    """Names of the labels that locate a workload's series; ``None`` skips that matcher.

    The defaults are what the Prometheus Operator's PodMonitor/ServiceMonitor
    attach (``namespace``, ``pod``) plus the engine's own model label.
    """

    namespace: str | None = "namespace"
    pod: str | None = "pod"
    model: str | None = "model_name"

    def __post_init__(self) -> None:
        for name in (self.namespace, self.pod, self.model):
            if name is not None and not _LABEL_NAME.fullmatch(name):
                raise ValueError(f"invalid Prometheus label name {name!r}")


@dataclass(frozen=True)
class Scope:
    """The workload whose series a query selects."""

    namespace: str
    deployment: str
    model_name: str | None = None
    """Value of the model label; ``None`` selects every model of the pods."""
    pods: str | None = None
    """RE2 of the pod names, overriding the one derived from ``deployment``."""
    kind: str = "Deployment"
    """Kind of the scaled object named ``deployment``, whose pods are selected."""

    def matchers(self, labels: ScopeLabels) -> str:
        """The label matchers, as ``{a="x",b=~"y"}`` (empty when there are none)."""
        parts: list[str] = []
        if labels.namespace is not None:
            parts.append(f"{labels.namespace}={quote(self.namespace)}")
        if labels.pod is not None:
            pods = self.pods if self.pods is not None else pods_regex(self.kind, self.deployment)
            parts.append(f"{labels.pod}=~{quote(pods)}")
        if labels.model is not None and self.model_name is not None:
            parts.append(f"{labels.model}={quote(self.model_name)}")
        return "{" + ",".join(parts) + "}" if parts else ""


@dataclass(frozen=True)
class Preset:
    """The metric names one engine exports; ``None`` where it has no such metric."""

    queue: str
    """Gauge of requests waiting to be scheduled."""
    running: str | None
    """Gauge of requests being served."""
    completions: str | None
    """Counter of requests finished successfully (throughput)."""
    arrivals: str | None
    """Counter of requests received, when the engine counts them on arrival."""
    kv_cache: tuple[str, ...]
    """Gauges of KV-cache usage (0-1) under their successive names, newest first."""
    prompt_tokens: str | None
    """Counter of prompt (prefill) tokens processed."""
    generation_tokens: str | None
    """Counter of generated tokens."""
    labels: ScopeLabels = field(default_factory=ScopeLabels)


PRESETS: dict[MetricsServer, Preset] = {
    MetricsServer.VLLM: Preset(
        queue="vllm:num_requests_waiting",
        running="vllm:num_requests_running",
        completions="vllm:request_success_total",
        arrivals=None,
        # The older name is still exported by earlier releases; both are read.
        kv_cache=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        prompt_tokens="vllm:prompt_tokens_total",
        generation_tokens="vllm:generation_tokens_total",
    ),
    MetricsServer.TRITON: Preset(
        # "Pending" counts requests queued in the scheduler awaiting execution.
        queue="nv_inference_pending_request_count",
        running=None,
        # Requests, not nv_inference_count, which counts batch elements.
        completions="nv_inference_request_success",
        arrivals=None,
        kv_cache=(),
        prompt_tokens=None,
        generation_tokens=None,
        labels=ScopeLabels(model="model"),
    ),
    MetricsServer.TGI: Preset(
        queue="tgi_queue_size",
        running="tgi_batch_current_size",
        completions="tgi_request_success",
        arrivals="tgi_request_count",
        kv_cache=(),
        # Histogram sums observed when a request ends.
        prompt_tokens="tgi_request_input_length_sum",
        generation_tokens="tgi_request_generated_tokens_sum",
        # One model per TGI server: it has no model label.
        labels=ScopeLabels(model=None),
    ),
    MetricsServer.SGLANG: Preset(
        queue="sglang:num_queue_reqs",
        running="sglang:num_running_reqs",
        # The end-to-end latency histogram is observed once per finished request.
        completions="sglang:e2e_request_latency_seconds_count",
        arrivals=None,
        kv_cache=("sglang:token_usage",),
        prompt_tokens="sglang:prompt_tokens_total",
        generation_tokens="sglang:generation_tokens_total",
    ),
}


@dataclass(frozen=True)
class SignalQueries:
    """One PromQL query per signal; ``None`` where the signal is not available."""

    queue: str
    running: str | None = None
    arrival_rate: str | None = None
    """Demand in requests/s; also the series the forecaster learns from."""
    throughput: str | None = None
    kv_cache_usage: str | None = None
    prompt_tokens_rate: str | None = None
    generation_tokens_rate: str | None = None


def gauge_sum(metric: str, matchers: str) -> str:
    return f"sum({metric}{matchers})"


def counter_rate(metric: str, matchers: str, window: str) -> str:
    return f"sum(rate({metric}{matchers}[{window}]))"


def gauge_mean(metrics: tuple[str, ...], matchers: str) -> str:
    """The mean over pods of whichever name each pod exports.

    ``or`` keeps a pod's series under the first name and adds the other names
    only for pods lacking it (set operators match label sets ignoring the
    metric name), so a pod exporting both is not counted twice.
    """
    return "avg(" + " or ".join(f"{m}{matchers}" for m in metrics) + ")"


def build_queries(
    server: MetricsServer,
    scope: Scope,
    *,
    queue_query: str | None = None,
    demand_query: str | None = None,
    labels: ScopeLabels | None = None,
    rate_window: str = RATE_WINDOW,
) -> SignalQueries:
    """The queries of ``server``'s preset for ``scope``, with the user's overrides.

    ``labels`` replaces the preset's label names (for relabelled setups).
    ``queue_query`` and ``demand_query`` are used verbatim: they are the
    user's PromQL and already select what they mean to.
    """
    if not _DURATION.fullmatch(rate_window):
        raise ValueError(f"invalid PromQL duration {rate_window!r}")
    if server == MetricsServer.CUSTOM:
        if not queue_query:
            raise ValueError("a queue query is required when the server is custom")
        return SignalQueries(queue=queue_query, arrival_rate=demand_query or None)
    preset = PRESETS[server]
    sel = scope.matchers(labels if labels is not None else preset.labels)

    def rate(metric: str | None) -> str | None:
        return counter_rate(metric, sel, rate_window) if metric is not None else None

    throughput = rate(preset.completions)
    arrivals = rate(preset.arrivals) or throughput
    return SignalQueries(
        queue=queue_query or gauge_sum(preset.queue, sel),
        running=gauge_sum(preset.running, sel) if preset.running is not None else None,
        arrival_rate=demand_query or arrivals,
        throughput=throughput,
        kv_cache_usage=gauge_mean(preset.kv_cache, sel) if preset.kv_cache else None,
        prompt_tokens_rate=rate(preset.prompt_tokens),
        generation_tokens_rate=rate(preset.generation_tokens),
    )


def queries_for(
    metrics: InferenceMetrics,
    namespace: str,
    deployment: str,
    *,
    kind: str = "Deployment",
    labels: ScopeLabels | None = None,
    rate_window: str = RATE_WINDOW,
    pods: str | None = None,
) -> SignalQueries:
    """The queries of an AIWorkload's ``inference.metrics`` section (``deployment`` is the
    name of the scaled object, of kind ``kind``; ``pods`` overrides the RE2 of its pods'
    names, e.g. ``service_pods_regex``)."""
    scope = Scope(
        namespace=namespace, deployment=deployment, model_name=metrics.model_name, kind=kind,
        pods=pods,
    )  # fmt: skip
    return build_queries(
        metrics.server,
        scope,
        queue_query=metrics.queue_query,
        demand_query=metrics.demand_query,
        labels=labels,
        rate_window=rate_window,
    )
