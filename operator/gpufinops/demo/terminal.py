"""The terminal: single keypresses without Enter, and whether to draw with ANSI.

``q`` must stop the demo at once, so stdin is put in cbreak mode (keys arrive
one by one, Ctrl-C still interrupts) and restored however the demo ends.
Without a terminal (CI, a pipe) there are no keys: the wait is just a wait.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

ENTER_ALT_SCREEN, LEAVE_ALT_SCREEN = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"


def is_interactive(stream: TextIO) -> bool:
    """A terminal that understands ANSI codes (not a pipe, not TERM=dumb)."""
    return stream.isatty() and os.environ.get("TERM", "") not in ("", "dumb")


@contextmanager
def keypresses() -> Iterator[Callable[[float], str | None]]:
    """Yield ``wait(seconds)``: the key pressed within ``seconds``, or None."""
    if not sys.stdin.isatty():
        idle = threading.Event()

        def wait_only(seconds: float) -> str | None:
            idle.wait(seconds)
            return None

        yield wait_only
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def wait_key(seconds: float) -> str | None:
        ready, _, _ = select.select([fd], [], [], seconds)
        return os.read(fd, 1).decode(errors="replace") if ready else None

    try:
        yield wait_key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
