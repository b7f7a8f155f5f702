"""Trace-driven simulation of an inference service under a scaling policy.

The ``gpufinops`` policies call the same decision core the operator runs.
"""
