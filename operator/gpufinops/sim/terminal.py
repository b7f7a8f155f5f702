"""Tables and a progress bar for people at a terminal, drawn by ``rich``.

The commands' human-readable tables go through here so that they look alike and
depend only on where they go: on a terminal, its width and colours; anywhere
else (a pipe, a file, a CI log, a test) no colour, no control codes and a fixed
width wide enough that every row stays on one line, so the same input always
gives the same text. Machine-readable formats (JSON, CSV, FOCUS, Markdown)
never come through here.
"""

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

PLAIN_WIDTH = 1000
"""Columns of the output when it does not go to a terminal: wider than any table, so
nothing wraps (a table is only as wide as its cells)."""

RULES = box.Box(
    "    \n"
    "    \n"
    " -- \n"  # under the headers
    "    \n"
    "    \n"
    " -- \n"  # above the footers
    "    \n"
    "    \n",
    ascii=True,
)
"""rich's ``SIMPLE`` layout (columns apart, a rule under the headers and above the footers)
drawn in ASCII, so the text is the same whatever the stream's encoding."""


def console(stream: TextIO, *, terminal: bool | None = None) -> Console:
    """A console for ``stream``, a terminal (``terminal``, or when it is a TTY) or plain text.

    Everything that would make the text depend on the environment rather than on
    ``stream`` is set: rich's own reading of ``COLUMNS``, ``FORCE_COLOR`` or
    ``TTY_COMPATIBLE``, and the markup, emoji codes and highlighting it would
    otherwise find in names and messages.
    """
    tty = stream.isatty() if terminal is None else terminal
    return Console(
        file=stream,
        width=None if tty else PLAIN_WIDTH,
        force_terminal=tty,
        force_jupyter=False,
        force_interactive=tty,
        color_system="auto" if tty else None,
        legacy_windows=False,
        markup=False,
        emoji=False,
        highlight=False,
    )


@dataclass(frozen=True)
class Column:
    """A column's header, whether it holds numbers (set right, to line up their digits),
    and what goes under the rule below the rows (a total), if anything."""

    header: str
    numeric: bool = False
    footer: str = ""


def text_table(
    columns: Sequence[Column], rows: Iterable[Sequence[str]], *, stream: TextIO | None = None
) -> str:
    """The rows under the columns' headers, for printing to ``stream`` (stdout).

    A rule divides the headers from the rows and, when a column has a footer, the
    rows from the footers. Lines carry no trailing blanks.
    """
    footers = any(c.footer for c in columns)
    table = Table(
        box=RULES, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), show_footer=footers
    )
    for c in columns:
        table.add_column(c.header, footer=c.footer, justify="right" if c.numeric else "left")
    for row in rows:
        table.add_row(*row)
    out = console(stream or sys.stdout)
    with out.capture() as captured:
        out.print(table)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


class ProgressBar:
    """A bar on a terminal (stderr), called with the fraction done; silent elsewhere, so
    logs and pipes get only the results.

    The streams stay where they are while it shows: what the run prints goes where it
    would have gone.
    """

    def __init__(self, label: str, stream: TextIO | None = None, force: bool = False) -> None:
        target = stream or sys.stderr
        self.enabled = force or target.isatty()
        self._progress: Progress | None = None
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=30),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console(target, terminal=True),
            refresh_per_second=5,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(label, total=1.0)
        self._progress.start()

    def __call__(self, fraction: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=min(max(fraction, 0.0), 1.0))

    def close(self) -> None:
        """Draw the bar as it ends and leave it on its line."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
