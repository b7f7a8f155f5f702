"""Kopf handlers: the thin shell wiring cluster events to adapters and the core.

Importing this package registers the handlers with Kopf.
"""

from gpufinops.handlers import (
    aiworkload,
    autoscaling,
    cost,
    idle_nodes,
    placement,
    sandboxes,
    startup,
)

__all__ = ["aiworkload", "autoscaling", "cost", "idle_nodes", "placement", "sandboxes", "startup"]
