"""Experiments on top of the simulator: grids of simulate runs over seeds, stored results, tables, plots.

`sim/` is the engine and knows nothing of this package.
"""
