"""Calendar days and months in the operator's time zone.

Budgets are read by people who think in local days and months, so periods
follow the configured IANA zone, not UTC; a local day may last 23 or 25 hours.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

HOURS_PER_MONTH = 730.0
"""The cloud-billing month (8760 h / 12), used where no calendar month applies."""

_EPSILON = timedelta(microseconds=1)


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The zone for an IANA name; raises ``ZoneInfoNotFoundError`` for unknown names."""
    return ZoneInfo(name)


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()}: pass an aware time (e.g. UTC)")
    return t


def day_id(t: datetime, tz: ZoneInfo) -> str:
    """The local calendar day containing ``t``, e.g. ``2026-11-27``."""
    return _aware(t).astimezone(tz).date().isoformat()


def month_id(t: datetime, tz: ZoneInfo) -> str:
    """The local calendar month containing ``t``, e.g. ``2026-11``."""
    return _aware(t).astimezone(tz).strftime("%Y-%m")


def period_of_end(t: datetime, tz: ZoneInfo) -> tuple[str, str]:
    """Day and month that totals accounted *up to* ``t`` belong to.

    An interval ending exactly at midnight belongs to the day before, so the
    instant just before ``t`` decides.
    """
    before = _aware(t) - _EPSILON
    return day_id(before, tz), month_id(before, tz)


def _local_midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)


def next_day_start(t: datetime, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) of the local day after the one containing ``t``."""
    local = _aware(t).astimezone(tz).date()
    return _local_midnight(local + timedelta(days=1), tz)


def month_bounds(t: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Start and end (UTC) of the local month containing ``t``."""
    local = _aware(t).astimezone(tz).date()
    first = local.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return _local_midnight(first, tz), _local_midnight(following, tz)


def split_days(start: datetime, end: datetime, tz: ZoneInfo) -> Iterator[tuple[datetime, datetime]]:
    """Cut ``[start, end)`` at local midnights, so each piece lies in one day and month."""
    a, end = _aware(start), _aware(end)
    while a < end:
        b = min(next_day_start(a, tz), end)
        if b <= a:  # a zone whose midnight does not exist: never loop forever
            b = end
        yield a, b
        a = b
