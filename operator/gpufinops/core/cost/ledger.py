"""The month's spend of each workload, kept where its author cannot write.

``status.cost`` is the workload's, and whoever may delete an AIWorkload may
create it again with an empty status: were status the only record, that would
restart the month at $0 and lift a budget's Suspend. The ledger keeps, per
namespace and workload name, what accounting needs to go on (the totals, the
end of the last interval counted, the alerts raised) in the operator's own
namespace. A workload created again under the same name continues from it;
an entry outlives its workload until its month is over.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gpufinops.core.cost.accounting import CostTotals, DaySpend


@dataclass(frozen=True)
class LedgerEntry:
    """One workload's record: what a restart or a re-creation continues from."""

    totals: CostTotals
    alerts_sent: tuple[str, ...] = ()

    def encode(self) -> str:
        last = self.totals.last_accounted_time
        return json.dumps(
            {
                "todayUSD": self.totals.today_usd,
                "monthToDateUSD": self.totals.month_to_date_usd,
                "hourlyUSD": self.totals.hourly_usd,
                "totalUSD": self.totals.total_usd,
                "lastAccountedTime": last.isoformat() if last is not None else None,
                "alertsSent": list(self.alerts_sent),
                "days": _month_days(self.totals.days),
            },
            sort_keys=True,
        )

    @classmethod
    def decode(cls, text: str) -> LedgerEntry | None:
        """The entry ``text`` holds; None when it is not one (then status is used)."""
        try:
            raw: Any = json.loads(text)
            last = raw.get("lastAccountedTime")
            today, month, hourly = (
                float(raw[k]) for k in ("todayUSD", "monthToDateUSD", "hourlyUSD")
            )
            # Entries written before the lifetime total was kept start it from the month's.
            total = float(raw.get("totalUSD", month))
            if not all(math.isfinite(a) for a in (today, month, hourly, total)):
                return None
            when = datetime.fromisoformat(last) if last is not None else None
            if when is not None and when.tzinfo is None:
                return None
            sent = tuple(str(k) for k in raw.get("alertsSent") or ())
            # Entries written before the daily history was kept have none.
            days = tuple(_day(str(text)) for text in raw.get("days") or ())
            numbers = [v for d in days for v in (d.usd, d.gpu_hours, d.kwh, d.kg_co2e)]
            if not all(math.isfinite(v) for v in numbers):
                return None
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        return cls(CostTotals(today, month, hourly, when, total, days), sent)


def _month_days(days: tuple[DaySpend, ...]) -> list[str]:
    """The days of the newest month, one ``date capacity-type usd gpu-hours`` string
    each, to the micro-dollar: the entries of a namespace share one ConfigMap (1 MiB),
    and a month of days on two capacity types is under 3 KB this way."""
    month = max((d.day[:7] for d in days), default="")
    return [
        f"{d.day} {d.capacity_type} {d.usd:.6f} {d.gpu_hours:.6f}"
        + (f" {d.kwh:.6f} {d.kg_co2e:.6f}" if d.kwh or d.kg_co2e else "")
        for d in days
        if d.day[:7] == month
    ]


def _day(text: str) -> DaySpend:
    """``date capacity-type usd gpu-hours [kwh kgco2e]``."""
    day, capacity_type, *values = text.split(" ")
    if len(values) not in (2, 4):
        raise ValueError(f"not a day of the ledger: {text!r}")
    numbers = [float(v) for v in values] + [0.0] * (4 - len(values))
    return DaySpend(day, capacity_type, *numbers)


def expired(entry: LedgerEntry, now: datetime, tz: ZoneInfo) -> bool:
    """Whether the entry's month is over: nothing it holds still counts."""
    last = entry.totals.last_accounted_time
    if last is None:
        return True
    then, today = last.astimezone(tz), now.astimezone(tz)
    return (then.year, then.month) != (today.year, today.month)
