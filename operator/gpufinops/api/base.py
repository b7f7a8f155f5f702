"""Shared building blocks of the API models.

Fields are snake_case in Python and camelCase on the wire, like every
Kubernetes API. ``rule`` attaches a CEL validation that the generated CRD
carries, so the API server rejects what the operator would reject.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

CEL_KEY = "x-kubernetes-validations"

# Names of Kubernetes objects (RFC 1123 subdomain), and of pools/labels (RFC 1123 label).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Five-field cron ("m h dom mon dow") or a descriptor such as @daily.
CRON = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"


def rule(
    expression: str, message: str, field_path: str | None = None, reason: str = "FieldValueInvalid"
) -> dict[str, str]:
    """One CEL rule for ``x-kubernetes-validations``.

    ``field_path`` makes the API server name the offending field in its error,
    which is what a user reading ``kubectl apply`` output needs.
    """
    out = {"rule": expression, "message": message, "reason": reason}
    if field_path:
        out["fieldPath"] = field_path
    return out


def cel(*rules: dict[str, str]) -> dict[str, Any]:
    """Schema extra carrying CEL rules for a model or a field."""
    return {CEL_KEY: list(rules)}


class ApiModel(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """Serialise as the API server stores it (camelCase, unset fields omitted)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(ApiModel):
    """Base of status models: the operator writes them, so tolerate newer fields."""

    model_config = ConfigDict(extra="ignore")
