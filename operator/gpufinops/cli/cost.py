"""``gpufinops estimate | report`` subcommands."""

import argparse
from typing import Any


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    """Add the cost commands to the top-level parser."""
