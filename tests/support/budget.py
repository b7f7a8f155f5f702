"""Putting a workload over its budget without waiting for it to be spent.

The cost loop accrues spend from ``status.cost.lastAccountedTime`` onwards, so a
test writes the month's spend and when it was last accounted; the loop then
decides the budget's state and enforcement from there, as after real spending.
"""

import json
from datetime import UTC, datetime

from tests.support.kube import KubectlRun, ok


def iso(t: datetime) -> str:
    """A timestamp as the API server writes it (seconds, UTC, ``Z``)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_cost(kubectl: KubectlRun, ns: str, name: str, spent: float, accounted: datetime) -> None:
    """Record ``spent`` USD today and this month, accounted up to ``accounted``."""
    cost = {"todayUSD": spent, "monthToDateUSD": spent, "lastAccountedTime": iso(accounted)}
    ok(kubectl("patch", "aiw", name, "-n", ns, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": {"cost": cost}})))  # fmt: skip
