"""A search the planners share: the smallest count that is enough."""

from collections.abc import Callable


def smallest(feasible: Callable[[int], bool], start: int, floor: int, ceiling: int) -> int:
    """Smallest feasible count in [floor, ceiling] (``ceiling`` when none is), for a
    ``feasible`` that stays true above its smallest: galloping from ``start`` (a good
    guess, such as the last answer), then bisection."""
    start = min(max(start, floor), ceiling)
    step = 1
    if feasible(start):
        hi, lo = start, floor - 1
        while hi - step >= floor:
            if not feasible(hi - step):
                lo = hi - step
                break
            hi -= step
            step *= 2
    else:
        lo, hi = start, ceiling
        while lo + step < ceiling:
            if feasible(lo + step):
                hi = lo + step
                break
            lo += step
            step *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if feasible(mid):
            hi = mid
        else:
            lo = mid
    return hi
