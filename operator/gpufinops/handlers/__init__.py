"""Kopf handlers: the thin shell wiring cluster events to adapters and the core.

Importing this package registers the handlers with Kopf.
"""

from gpufinops.handlers import aiworkload, autoscaling, idle_nodes, startup

__all__ = ["aiworkload", "autoscaling", "idle_nodes", "startup"]
