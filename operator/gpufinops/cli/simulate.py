"""``gpufinops simulate | bench | forecast`` subcommands."""

import argparse
from typing import Any


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    """Add the simulation commands to the top-level parser."""
