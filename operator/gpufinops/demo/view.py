"""Drawing a :class:`Snapshot`: a full-screen ANSI refresh on a terminal, plain
blocks of lines otherwise (CI logs, pipes), from the same lines.

Pure: no I/O, no clock. ``render`` returns the lines; the session decides
how to put them on the screen.
"""

from __future__ import annotations

from gpufinops.demo.snapshot import EventRow, Snapshot, WorkloadRow

DASH = "—"
CLEAR = "\x1b[H\x1b[2J"
BOLD, DIM, RED, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[0m"
WORKLOAD_HEADER = (
    f"{'WORKLOAD':<22} {'TYPE':<10} {'REPLICAS':>8} {'LOAD':>6} {'DEMAND':>6} "
    f"{'QUEUE':>6} {'FCAST':>6}  {'PLACEMENT':<24} {'$/H':>7} {'TODAY $':>8}"
)


def number(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def replicas(row: WorkloadRow) -> str:
    if row.current is None and row.desired is None:
        return DASH
    current = DASH if row.current is None else str(row.current)
    desired = DASH if row.desired is None else str(row.desired)
    return f"{current}/{desired}"


def workload_line(row: WorkloadRow) -> str:
    return (
        f"{row.name[:22]:<22} {row.type[:10]:<10} {replicas(row):>8} {number(row.load):>6} "
        f"{number(row.demand):>6} {number(row.queue, 0):>6} {number(row.forecast):>6}  "
        f"{(row.placement or DASH)[:24]:<24} {number(row.hourly_usd, 2):>7} "
        f"{number(row.today_usd, 2):>8}"
    )


def team_lines(rows: list[WorkloadRow]) -> list[str]:
    """Spend per team: sums of what is known, "—" for a team none of whose workloads
    has a cost in status yet (unknown is not zero)."""
    teams: dict[str, list[WorkloadRow]] = {}
    for row in rows:
        teams.setdefault(row.team, []).append(row)
    lines: list[str] = []
    for team, members in sorted(teams.items()):

        def total(values: list[float | None]) -> str:
            known = [v for v in values if v is not None]
            return DASH if not known else f"${sum(known):,.2f}"

        hourly = total([r.hourly_usd for r in members])
        today = total([r.today_usd for r in members])
        month = total([r.month_usd for r in members])
        lines.append(
            f"  {team[:16]:<16} {hourly:>10}/h  today {today:>10}  month {month:>11}"
            f"  ({len(members)} workload{'s' if len(members) != 1 else ''})"
        )
    return lines


def event_line(event: EventRow) -> str:
    stamp = event.time.strftime("%H:%M:%S") if event.time else "--:--:--"
    message = " ".join(event.message.split())
    return f"  {stamp} {event.reason[:18]:<18} {event.object[:28]:<28} {message[:90]}"


def render(snapshot: Snapshot) -> list[str]:
    """The screen, one string per line, without colour codes."""
    lines = [
        f"gpufinops demo  {snapshot.now.strftime('%H:%M:%S')}  cluster: {snapshot.cluster}",
        f"operator: {snapshot.operator}",
        f"load: {snapshot.load}",
        "",
        WORKLOAD_HEADER,
        *(workload_line(row) for row in snapshot.workloads),
    ]
    if not snapshot.workloads:
        lines.append("  (no AIWorkloads yet)")
    lines += ["", "GPU NODES PER POOL"]
    for pool in snapshot.pools:
        lines.append(
            f"  {pool.name[:18]:<18} {pool.capacity_type[:10]:<10} nodes {pool.ready}/{pool.nodes}"
            f" ready  GPUs {pool.gpus_used}/{pool.gpus_total} in use"
        )
    lines += ["", "SPEND PER TEAM", *team_lines(snapshot.workloads)]
    lines += ["", "RECENT EVENTS"]
    lines += [event_line(e) for e in snapshot.events] or ["  (none yet)"]
    if snapshot.errors:
        lines += ["", *(f"! {error}" for error in snapshot.errors)]
    return lines


def ansi_screen(lines: list[str], footer: str, width: int = 200) -> str:
    """A full-screen redraw: home, clear, the lines cut to ``width`` (a wrapped line
    would scroll the screen), titles in bold, the footer dimmed."""
    titles = {"GPU NODES PER POOL", "SPEND PER TEAM", "RECENT EVENTS", WORKLOAD_HEADER}
    out: list[str] = []
    for i, full in enumerate(lines):
        line = full[: max(width, 20)]
        if i == 0 or full in titles:
            out.append(f"{BOLD}{line}{RESET}")
        elif line.startswith("! "):
            out.append(f"{RED}{line}{RESET}")
        else:
            out.append(line)
    out.append(f"{DIM}{footer}{RESET}")
    return CLEAR + "\n".join(out) + "\n"


def plain_block(lines: list[str]) -> str:
    """The same lines for a log: a separator, then the lines as they are."""
    return "\n".join(["-" * 40, *lines]) + "\n"
