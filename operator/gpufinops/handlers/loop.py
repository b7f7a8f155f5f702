"""The one loop runner behind every per-workload daemon and the node and cost loops.

Periods run start to start, as the HPA's sync period does: a tick that waited for
the API server does not push every later tick back, yet a slow tick is never
followed by a burst. Each tick gets a clock reading that tells a wall-clock step
from time passing (``controllers.clock``). A failing tick is logged and the loop
goes on: one bad object or an API server away for a minute must not end a loop
that only a restart would bring back.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.clock import ClockSteps, Reading
from gpufinops.core.tenancy import NamespaceView
from gpufinops.core.validation import SpecCheck, check_spec

Logger = logging.Logger | logging.LoggerAdapter[Any]


class Stopped(Protocol):
    """Kopf's DaemonStopped (truthy once stopped), or anything that waits as it does."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[object]: ...


SKIPPED = "skipped"
"""What a tick returns when it did not act (no valid spec yet, no target): the wall-clock
step its reading carried is added to the next reading, so the timers a skipped tick
would have moved are moved by the next tick that acts."""


def next_wait(period: float, took: float) -> float:
    """Seconds to wait after a tick that took ``took`` seconds.

    A slow tick (an API server under load) is followed at once by the next, but
    never by a burst: at least a tenth of the period passes in between, so a
    workload whose ticks always overrun still leaves the event loop to the others.
    """
    return max(period - took, 0.1 * period)


class _Forever:
    """Never stopped: loops that end only by cancellation (the node and cost loops)."""

    def __bool__(self) -> bool:
        return False

    async def wait(self, timeout: float | None = None) -> None:
        await asyncio.sleep(timeout or 0.0)


async def run_loop(
    tick: Callable[[Reading], Awaitable[bool | str | None]],
    period: Callable[[], float],
    *,
    what: str,
    logger: Logger,
    stopped: Stopped | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    clock: ClockSteps | None = None,
) -> None:
    """Call ``tick`` every ``period()`` seconds until ``stopped`` (or cancelled).

    ``tick`` returns False to end the loop (a pool without nodes left), ``SKIPPED``
    when it did not act (its clock step is carried to the next reading); anything
    else goes on. Cancellation passes through; any other exception is contained.
    """
    steps = clock or ClockSteps()
    until = stopped if stopped is not None else _Forever()
    carried = 0.0
    while not until:
        started = monotonic()
        reading = steps.read()
        if carried:
            reading = reading._replace(stepped=reading.stepped + carried)
            carried = 0.0
        try:
            outcome = await tick(reading)
            if outcome is False:
                return
            if outcome == SKIPPED:
                carried = reading.stepped
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the loop must outlive any one bad tick
            logger.warning(f"{what} failed, retrying next period: {exc}")
        await until.wait(next_wait(period(), monotonic() - started))


class SpecChecks:
    """The spec check of the generation last seen, per loop.

    Validating the spec on every tick cost more than the rest of the tick (a
    pydantic model of the whole spec); the spec changes only with the object's
    generation (and its namespace's trust only with its labels), so it is
    validated once per generation and namespace view (every tick without one).
    """

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self._seen: tuple[tuple[Any, NamespaceView], SpecCheck] | None = None

    def of(self, body: Mapping[str, Any], namespace: NamespaceView) -> SpecCheck:
        generation = (body.get("metadata") or {}).get("generation")
        key = (generation, namespace)
        if generation is not None and self._seen is not None and self._seen[0] == key:
            return self._seen[1]
        check = check_spec(body.get("spec"), self.config, namespace)
        self._seen = (key, check) if generation is not None else None
        return check
