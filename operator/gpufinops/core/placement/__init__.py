"""Training placement on spot and on-demand GPU pools: pure decisions."""
