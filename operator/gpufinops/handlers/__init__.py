"""Kopf wiring: cluster events, indexes and daemons handed to the controllers.

Importing this package registers the handlers with Kopf. Each module here is named
after what it drives (``inference``, ``training``, ``experiment``, ``cost``,
``idle_nodes``), as its controller in ``gpufinops.controllers`` is.
"""

from gpufinops.handlers import (
    aiworkload,
    cost,
    experiment,
    idle_nodes,
    inference,
    startup,
    training,
)

__all__ = ["aiworkload", "cost", "experiment", "idle_nodes", "inference", "startup", "training"]
