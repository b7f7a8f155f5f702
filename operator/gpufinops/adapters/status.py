"""Reading and writing AIWorkload status in its Kubernetes wire form."""

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from gpufinops.api.status import Condition


def read_conditions(status: Mapping[str, Any] | None) -> list[Condition]:
    """Conditions as stored; entries another writer mangled are dropped, not fatal."""
    out = []
    for raw in (status or {}).get("conditions") or []:
        try:
            out.append(Condition.model_validate(raw))
        except ValidationError:
            continue
    return out


def conditions_patch(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    """Conditions as the status subresource stores them (camelCase, RFC 3339 times)."""
    return [c.to_wire() for c in conditions]
