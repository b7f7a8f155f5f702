"""Replica decisions for Inference workloads (pure)."""
