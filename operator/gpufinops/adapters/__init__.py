"""Adapters: read signals from the world and apply decisions to it.

They translate between the pure core's plain data and external systems
(the Kubernetes API, Prometheus). Handlers and the CLI wire them to the core.
"""
