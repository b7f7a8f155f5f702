"""What a tenant's AIWorkload may ask the operator to do on their behalf (pure).

The operator acts with its own account, so everything it does for a workload
must be something the workload's namespace is entitled to. The chart's
admission policy refuses most overreach before it is stored, checking the
requesting user's own RBAC; these checks are the operator's own, so a cluster
without the policy (or an object stored before it) is still refused, in the
``InvalidSpec`` condition:

- the cost is booked to the namespace's team when the namespace says which
  (label ``gpufinops.dev/team``), never to another;
- a node pool is used only by the namespaces its ``namespaceSelector`` admits;
- a ``jobTemplate``'s pods ask for nothing beyond the Pod Security "baseline"
  profile (no host namespaces, privileged containers, host paths or ports,
  extra capabilities, chosen nodes), run as the namespace's default
  ServiceAccount and at no chosen priority — unless the operator config allows
  them. A user may still run such pods through a Job of their own (``jobRef``),
  which Kubernetes admits with their own rights;
- a custom PromQL query (``queueQuery``, ``demandQuery``) reads only the
  namespace's own series: every selector gets the namespace matcher
  (``core.promql``), unless the operator config trusts the namespace.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import (
    CapacityType,
    JobTemplatePolicy,
    OperatorConfig,
    QueryConfinement,
)
from gpufinops.core.promql import QueryRefused, confine

TEAM_LABEL = "gpufinops.dev/team"

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})  # fmt: skip
"""Capabilities the Pod Security baseline profile lets a container add."""


@dataclass(frozen=True)
class NamespaceView:
    """The workload's namespace, as far as the checks need it."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(pod: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(_list(pod.get(kind))):
            yield f"{kind}[{i}]", _mapping(c)


def job_template_problems(
    template: Mapping[str, Any], allowed_priority_classes: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """What a jobTemplate's pod spec asks beyond the baseline: (path, problem) pairs."""
    path = "spec.training.jobTemplate.template.spec"
    pod = _mapping(_mapping(template.get("template")).get("spec"))
    out: list[tuple[str, str]] = []
    for key in ("hostPID", "hostIPC", "hostNetwork", "hostUsers"):
        value = pod.get(key)
        if (key == "hostUsers" and value is True) or (key != "hostUsers" and value):
            out.append((f"{path}.{key}", "host namespaces are not allowed"))
    if pod.get("nodeName"):
        out.append((f"{path}.nodeName", "choosing a node bypasses placement and the scheduler"))
    account = pod.get("serviceAccountName") or pod.get("serviceAccount")
    if account not in (None, "", "default"):
        problem = f"only the namespace's default ServiceAccount, not {str(account)[:63]!r}"
        out.append((f"{path}.serviceAccountName", problem))
    priority = pod.get("priorityClassName")
    if priority and priority not in set(allowed_priority_classes):
        problem = f"priority class {str(priority)[:63]!r} is not allowed by the operator config"
        out.append((f"{path}.priorityClassName", problem))
    for i, volume in enumerate(_list(pod.get("volumes"))):
        if "hostPath" in _mapping(volume):
            out.append((f"{path}.volumes[{i}].hostPath", "hostPath volumes are not allowed"))
    for where, c in _containers(pod):
        security = _mapping(c.get("securityContext"))
        if security.get("privileged"):
            out.append((f"{path}.{where}.securityContext.privileged", "privileged containers "
                        "are not allowed"))  # fmt: skip
        added = _list(_mapping(security.get("capabilities")).get("add"))
        extra = sorted({str(a) for a in added} - BASELINE_CAPABILITIES)
        if extra:
            out.append((f"{path}.{where}.securityContext.capabilities.add",
                        f"capabilities beyond the baseline: {', '.join(extra)[:120]}"))  # fmt: skip
        for j, port in enumerate(_list(c.get("ports"))):
            if _mapping(port).get("hostPort"):
                out.append((f"{path}.{where}.ports[{j}].hostPort", "host ports are not allowed"))
    return out


def booked_spec(spec: Mapping[str, Any], namespace: NamespaceView) -> dict[str, Any]:
    """The spec as cost is booked: to the namespace's team when the namespace names one.

    A workload claiming another team is refused (``InvalidSpec``), but what it
    spends is still counted, and counted against its own namespace's team.
    """
    team = namespace.labels.get(TEAM_LABEL)
    allocation = _mapping(spec.get("costAllocation"))
    if team is None or allocation.get("team") == team:
        return dict(spec)
    return {**spec, "costAllocation": {**allocation, "team": team}}


def tenancy_problems(
    spec: AIWorkloadSpec, namespace: NamespaceView, config: OperatorConfig
) -> list[tuple[str, str]]:
    """Everything the workload asks that its namespace is not entitled to: (path, problem)."""
    out: list[tuple[str, str]] = []
    team = namespace.labels.get(TEAM_LABEL)
    if team is not None and spec.cost_allocation.team != team:
        out.append((
            "spec.costAllocation.team",
            f"namespace {namespace.name} belongs to team {team[:63]!r} (label {TEAM_LABEL}); "
            f"cost is booked to it, not to {spec.cost_allocation.team[:63]!r}",
        ))  # fmt: skip
    labels = dict(namespace.labels)
    for i, name in enumerate(spec.node_pools or []):
        pool = config.pool(name)
        selector = pool.namespace_selector if pool is not None else None
        if selector is not None and not selector.matches(labels):
            out.append((f"spec.nodePools[{i}]",
                        f"node pool {name!r} is not open to namespace {namespace.name} "
                        "(its namespaceSelector in the operator config)"))  # fmt: skip
    out += spot_problems(spec, namespace, config)
    training = spec.training
    if training is not None and training.job_template is not None:
        policy = config.tenancy.job_templates
        if policy == JobTemplatePolicy.BASELINE:
            allowed = config.tenancy.allowed_priority_classes
            out += job_template_problems(training.job_template, allowed)
    return out


def spot_problems(
    spec: AIWorkloadSpec, namespace: NamespaceView, config: OperatorConfig
) -> list[tuple[str, str]]:
    """What ``spec.inference.spot`` asks that cannot be run: the operator copies the
    target's pod template into a Deployment per pool, so the target must be a
    Deployment, and each pool must be a spot pool of the config open to the namespace."""
    inference = spec.inference
    if inference is None or inference.spot is None:
        return []
    out: list[tuple[str, str]] = []
    ref = inference.target_ref
    if not ref.is_deployment:
        out.append((
            "spec.inference.spot",
            f"spot replicas run as copies of the target's pod template, which only an apps/v1 "
            f"Deployment has: targetRef is {ref.kind} ({ref.resolved_api_version}); point "
            "targetRef at a Deployment or remove spot",
        ))  # fmt: skip
    labels = dict(namespace.labels)
    spot_pools = [p.name for p in config.node_pools if p.capacity_type == CapacityType.SPOT]
    for i, name in enumerate(inference.spot.pools):
        path = f"spec.inference.spot.pools[{i}]"
        pool = config.pool(name)
        if pool is None:
            out.append((path, f"node pool {name[:63]!r} is not defined in the operator config "
                              f"(its spot pools: {', '.join(spot_pools) or 'none'})"))  # fmt: skip
        elif pool.capacity_type != CapacityType.SPOT:
            out.append((path, f"node pool {name!r} is capacityType {pool.capacity_type}: list "
                              "spot pools only (the target itself keeps the on-demand replicas; "
                              f"spot pools: {', '.join(spot_pools) or 'none'})"))  # fmt: skip
        elif pool.namespace_selector is not None and not pool.namespace_selector.matches(labels):
            out.append((path, f"node pool {name!r} is not open to namespace {namespace.name} "
                              "(its namespaceSelector in the operator config): use another "
                              "pool, or ask a platform admin"))  # fmt: skip
    return out


CUSTOM_QUERIES = (("queue_query", "queueQuery"), ("demand_query", "demandQuery"))


def confined_queries(
    spec: AIWorkloadSpec, namespace: NamespaceView, config: OperatorConfig
) -> tuple[AIWorkloadSpec, list[tuple[str, str]]]:
    """``spec`` with its custom queries confined to ``namespace``, and the queries refused.

    A namespace is trusted (its queries run as written) only when the config
    says so: ``customQueries.confinement: None``, or labels an admin set that
    match ``trustedNamespaceSelector``. A namespace whose labels are not known
    yet is not trusted.
    """
    inference = spec.inference
    if inference is None:
        return spec, []
    metrics = inference.metrics
    policy = config.prometheus.custom_queries
    selector = policy.trusted_namespace_selector
    trusted = policy.confinement == QueryConfinement.NONE or (
        selector is not None and selector.matches(dict(namespace.labels))
    )
    if trusted:
        return spec, []
    updates: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for name, key in CUSTOM_QUERIES:
        query = getattr(metrics, name)
        if query is None:
            continue
        try:
            updates[name] = confine(query, policy.namespace_label, namespace.name)
        except QueryRefused as exc:
            problems.append((f"spec.inference.metrics.{key}", exc.reason))
    if not updates or problems:
        return spec, problems
    scoped = inference.model_copy(update={"metrics": metrics.model_copy(update=updates)})
    return spec.model_copy(update={"inference": scoped}), []


def acted_pools(
    spec: AIWorkloadSpec, namespace: NamespaceView, config: OperatorConfig
) -> AIWorkloadSpec:
    """``spec`` with ``nodePools`` filled in when it names none: every pool of the
    operator config open to the namespace (its ``namespaceSelector``), in config order.

    The API says an empty list means every pool; the placement works on the list,
    so the spec acted on carries it (a pool closed to the namespace is never in it).
    """
    if spec.node_pools:
        return spec
    labels = dict(namespace.labels)
    pools = [
        p.name
        for p in config.node_pools
        if p.namespace_selector is None or p.namespace_selector.matches(labels)
    ]
    return spec.model_copy(update={"node_pools": pools})
