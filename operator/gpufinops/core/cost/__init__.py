"""GPU spend: accounting over calendar periods, budgets, and pre-deployment estimates.

Everything here is pure: the caller passes the time, the observed GPU
allocations and the prices, so a restart, a month end or a DST change can be
replayed exactly in tests.
"""
