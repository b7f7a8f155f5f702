"""The pure decision core: plain functions over plain data.

Nothing here talks to Kubernetes or Prometheus, reads the clock or draws
random numbers; callers pass those in. That is what lets the unit and
property tests, the operator and the simulator all run the same code.
"""
