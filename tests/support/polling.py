"""Waiting, in integration tests, for something the cluster or the operator will do.

A test never sleeps a fixed time for something to happen: a sleep long enough on a
loaded machine is too long everywhere else, and one short enough to keep the suite
fast fails at random. Instead a test polls an observable condition until a
deadline, which costs only as long as the system under test takes, and fails
saying what it waited for and what it saw last, so that a timeout in CI can be
understood without running the test again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 60.0
"""Seconds a wait gets unless told otherwise. The operators under test tick every
second or so and the control plane acts within seconds: a minute runs out only
when something is wrong (or the machine is badly overloaded)."""

INTERVAL = 0.25
"""Seconds between two checks: short next to the operator's one-second ticks, so a
wait ends soon after its condition holds, and long enough that a check running
kubectl does not keep a core of a small machine busy."""

_describers: list[Callable[[], str]] = []


@contextmanager
def describe_on_timeout(describe: Callable[[], str]) -> Iterator[None]:
    """While inside, a wait that times out also reports ``describe()``.

    The value a check returns says what was missing, rarely why: that is in state
    the check does not read (a Job's pods, a workload's status, an operator's log).
    A fixture can enter this around its tests so that every timeout in them shows
    that state as it was at the deadline.
    """
    _describers.append(describe)
    try:
        yield
    finally:
        _describers.remove(describe)


def poll_until(
    read: Callable[[], T], accept: Callable[[T], bool], what: str, *, deadline: float = DEADLINE
) -> T:
    """Call ``read`` every ``INTERVAL`` until ``accept`` takes its value; return that value.

    For values that may be falsy and still be the answer (``None``, ``0``); for a
    plain condition, ``poll`` reads better. ``read`` is called at least once, and
    its last call comes after the deadline has passed, so a condition that holds
    just then still passes. At the deadline this raises AssertionError naming ``what`` and the last
    value read, and whatever ``describe_on_timeout`` added. An exception from
    ``read`` or ``accept`` is not retried: it is the test's failure.
    """
    end = time.monotonic() + deadline
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > end:
            raise AssertionError(_timed_out(what, deadline, value))
        time.sleep(INTERVAL)  # polling an observable condition, with a deadline


def poll(check: Callable[[], T], what: str, *, deadline: float = DEADLINE) -> T:
    """Call ``check`` until it returns a true value; return that value.

    ``what`` completes "timed out waiting for ...": name the condition, e.g.
    ``"the Job to run on on-demand"``. Returning the value lets a check that
    fetches something (a running pod, a status field) be both the wait for it and
    the way to get it.
    """
    return poll_until(check, bool, what, deadline=deadline)


def _timed_out(what: str, deadline: float, last: object) -> str:
    message = f"timed out after {deadline:g}s waiting for {what} (last value: {last!r})"
    for describe in _describers:
        try:
            message += "\n" + describe()
        except Exception as exc:  # the timeout, not the description, is the failure
            message += f"\n(could not describe the state: {exc!r})"
    return message
