"""Start windows: when a training job may start, in the user's time zone.

A window opens at each cron fire time and stays open ``duration_seconds``; the
same rule as scheduled replica floors, so both features agree on what "open" means.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from gpufinops.api.training import StartWindow
from gpufinops.core.scaling.schedule import window_open


def window_open_now(windows: Sequence[StartWindow], now: float) -> bool:
    """Whether any window is open at ``now`` (no windows: never restricted, so True)."""
    if not windows:
        return True
    return any(window_open(w.cron, w.timezone, w.duration_seconds, now) for w in windows)


def next_window_start(windows: Sequence[StartWindow], now: float) -> float | None:
    """The earliest time at or after ``now`` when a window is open.

    ``now`` itself when one is open already, so callers can use the result as a
    start time without asking twice; None only when there are no windows.
    """
    if not windows:
        return None
    if window_open_now(windows, now):
        return now
    starts = []
    for w in windows:
        local = datetime.fromtimestamp(now, tz=UTC).astimezone(ZoneInfo(w.timezone))
        starts.append(float(croniter(w.cron, local).get_next(float)))
    return min(starts)
