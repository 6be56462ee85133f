"""Typed settings of one simulation run (the schema lives in p2pfl.settings.sim)."""

from p2pfl.settings.sim import (
    BASELINES,
    ENGINES,
    ROBUSTNESS_DEFAULTS,
    SimConfig,
    check_sim_table,
    local_steps,
)

__all__ = ["BASELINES", "ENGINES", "ROBUSTNESS_DEFAULTS", "SimConfig", "check_sim_table", "local_steps"]
