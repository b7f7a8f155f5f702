"""Shared building blocks of the API models.

Fields are snake_case in Python and camelCase on the wire, like every
Kubernetes API. ``rule`` attaches a CEL validation that the generated CRD
carries, so the API server rejects what the operator would reject.
"""

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

CEL_KEY = "x-kubernetes-validations"

# Names of Kubernetes objects (RFC 1123 subdomain), and of pools/labels (RFC 1123 label).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Five-field cron ("m h dom mon dow") or a descriptor such as @daily.
CRON = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"

_CRON_REFERENCE = datetime(2024, 1, 1, tzinfo=UTC)


def check_timezone(value: str) -> str:
    """``value`` when it names an IANA time zone; otherwise a ValueError saying so.

    The CRD can only bound the length, so without this a typo would be accepted
    and fail later, on every tick that reads the zone.
    """
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as UTC or Europe/Paris"
        ) from None
    return value


def check_cron(value: str) -> str:
    """``value`` when croniter reads it and it ever fires; otherwise a ValueError.

    The CRD pattern only checks the five-field shape: ``a b c d e`` or a date
    that never comes (``0 0 31 2 *``) would pass it and fail on every tick.
    """
    try:
        croniter(value, _CRON_REFERENCE).get_next(float)
    except Exception:  # croniter reports bad expressions with several exception types
        raise ValueError(
            f"invalid cron expression {value!r}: expected five fields (minute hour "
            "day-of-month month day-of-week) that match some date, e.g. '0 8 * * 1-5'"
        ) from None
    return value


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
