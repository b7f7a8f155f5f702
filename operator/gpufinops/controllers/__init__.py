"""Controllers: one loop per workload (or per pool, or one for cost), without Kopf.

Each tick reads observations through adapters, asks the pure core for a plan and
carries it out through injected effects. Kopf wiring lives in ``gpufinops.handlers``;
controllers are independent of each other and share only ``controllers.effects``
and ``controllers.clock``.
"""
