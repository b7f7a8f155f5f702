"""Wall-clock steps told apart from time passing, for timers kept as wall-clock instants.

Timers persisted on objects (a node's idle start, a sandbox's lifetime) must be
wall-clock instants to survive restarts, so an NTP step or a resumed VM would
move every deadline at once. Reading the monotonic clock alongside tells how
far the wall clock stepped between two looks; the pure core moves the instants
by that much (see ``core.clock``).
"""

import time
from collections.abc import Callable
from typing import NamedTuple

STEP_TOLERANCE_SECONDS = 1.0
"""Smaller differences are scheduling jitter and clock slewing, not steps."""


class Reading(NamedTuple):
    now: float
    """Wall-clock time (epoch seconds)."""
    stepped: float
    """How far the wall clock jumped beyond the time that passed since the previous
    reading: positive forward, negative backward; 0.0 on the first reading."""
    elapsed: float
    """Time that really passed since the previous reading (monotonic); 0.0 on the first."""


class ClockSteps:
    """One per loop: each ``read()`` is compared with the previous one."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall, self._monotonic = wall, monotonic
        self._last: tuple[float, float] | None = None

    def read(self) -> Reading:
        wall, mono = self._wall(), self._monotonic()
        last, self._last = self._last, (wall, mono)
        if last is None:
            return Reading(wall, 0.0, 0.0)
        elapsed = mono - last[1]
        stepped = (wall - last[0]) - elapsed
        return Reading(wall, stepped if abs(stepped) >= STEP_TOLERANCE_SECONDS else 0.0, elapsed)
