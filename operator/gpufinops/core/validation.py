"""Re-validation of an AIWorkload spec by the operator.

The API server already enforces the CRD schema, but objects stored before a
CRD upgrade, or written with validation off, can still reach us; and some
rules (node pools must exist in the operator config) cannot be expressed in
the CRD at all. Every problem is reported with the field and how to fix it.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import OperatorConfig
from gpufinops.core.tenancy import (
    NamespaceView,
    acted_pools,
    confined_queries,
    tenancy_problems,
)


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec: where, and what to do about it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class SpecCheck:
    """The outcome of validating a spec: the parsed spec, or the problems."""

    spec: AIWorkloadSpec | None
    problems: list[SpecProblem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.spec is not None and not self.problems

    def summary(self, limit: int = 5) -> str:
        shown = "; ".join(str(p) for p in self.problems[:limit])
        more = len(self.problems) - limit
        return shown + (f" (and {more} more)" if more > 0 else "")


def _path(loc: tuple[int | str, ...]) -> str:
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _shown(value: str, limit: int = 63) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters: a condition
    message has a size limit, and an echoed input must not push it over."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_spec(
    raw: Mapping[str, Any] | None,
    config: OperatorConfig,
    namespace: NamespaceView | None = None,
) -> SpecCheck:
    """Validate ``raw`` (the object's spec as stored) against the API and the config,
    and, given its ``namespace``, against what that namespace is entitled to
    (``core.tenancy``): a spec that asks for more is not acted on."""
    if raw is not None and not isinstance(raw, Mapping):
        # An object stored without schema validation may hold anything under spec.
        got = type(raw).__name__
        return SpecCheck(
            spec=None, problems=[SpecProblem("spec", f"expected an object, got {got}")]
        )
    try:
        spec = AIWorkloadSpec.model_validate(dict(raw or {}))
    except ValidationError as exc:
        problems = [
            SpecProblem(_path(tuple(e["loc"])), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        return SpecCheck(spec=None, problems=problems)
    problems = []
    known = [p.name for p in config.node_pools]
    for i, name in enumerate(spec.node_pools or []):
        if name not in known:
            problems.append(
                SpecProblem(
                    f"spec.nodePools[{i}]",
                    f"node pool {_shown(name)} is not defined in the operator config "
                    f"(known pools: {', '.join(known) or 'none'})",
                )
            )
    if namespace is not None:
        problems += [SpecProblem(p, m) for p, m in tenancy_problems(spec, namespace, config)]
        spec, refused = confined_queries(spec, namespace, config)
        problems += [SpecProblem(p, m) for p, m in refused]
        spec = acted_pools(spec, namespace, config)
    return SpecCheck(spec=spec if not problems else None, problems=problems)
