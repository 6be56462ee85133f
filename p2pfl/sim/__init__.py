"""The simulator: N virtual hospitals in one process, vectorized or as a readable loop."""
