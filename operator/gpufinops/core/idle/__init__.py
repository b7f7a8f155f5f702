"""Idle GPU node detection and the safety rules for shutting nodes down (pure)."""
