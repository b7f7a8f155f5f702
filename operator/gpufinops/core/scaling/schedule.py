"""Scheduled replica floors: cron windows in the user's time zone."""

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

from gpufinops.api.inference import Schedule


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def window_open(cron: str, timezone: str, duration_seconds: int, now: float) -> bool:
    """Whether a window that starts at each ``cron`` fire time is open at ``now``."""
    local = datetime.fromtimestamp(now, tz=UTC).astimezone(_zone(timezone))
    # The window is open when the latest start at or before now is recent enough.
    nudged = local.timestamp() + 1e-3  # a start exactly at ``now`` counts
    base = datetime.fromtimestamp(nudged, tz=UTC).astimezone(_zone(timezone))
    previous = croniter(cron, base).get_prev(float)
    return bool(now - previous < duration_seconds)


def schedule_floor(schedules: Sequence[Schedule] | None, now: float) -> tuple[int, str | None]:
    """The highest floor of the windows open at ``now``, and the name of that window."""
    best, name = 0, None
    for s in schedules or ():
        if s.min_replicas > best and window_open(s.cron, s.timezone, s.duration_seconds, now):
            best, name = s.min_replicas, s.name
    return best, name
