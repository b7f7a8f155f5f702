"""Wall-clock instants across a step of the wall clock (an NTP step, a VM resumed).

Timers that must survive restarts are kept as wall-clock instants (a node's idle
start, a sandbox's lifetime, when a Job was placed). When the wall clock steps,
every duration measured from them would gain or lose the step at once: a forward
step would shut things down that were not idle that long, a backward one would
delay them by the step or leave instants in the future. The loops tell the step
apart from time passing (``controllers.clock``) and move the instants with it.
"""


def moved_with_the_clock(start: float | None, stepped: float, now: float) -> float | None:
    """A wall-clock instant recorded earlier, as it reads after the clock ``stepped``.

    ``stepped`` is how far the wall clock jumped beyond the time that really
    passed (positive: forward). The instant moves with the clock, so the time
    measured from it is what really passed; and it is never after ``now``, so no
    duration measured from it is negative (this also repairs an instant a step
    unseen, e.g. while the operator was down, left in the future).
    """
    if start is None:
        return None
    return min(start + stepped, now)
