"""Typed settings of one node daemon (the schema lives in p2pfl.settings.node)."""

from p2pfl.settings.node import (
    DataSection,
    GossipSection,
    ModelSection,
    NodeSection,
    NodeSettings,
    PrivacySection,
    TrainingSection,
)

__all__ = ["DataSection", "GossipSection", "ModelSection", "NodeSection", "NodeSettings",
           "PrivacySection", "TrainingSection"]
