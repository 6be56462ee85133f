"""Loading settings from TOML and flags (kept for importers; see p2pfl.settings.load)."""

from p2pfl.settings.load import node_settings, sim_config

__all__ = ["node_settings", "sim_config"]
