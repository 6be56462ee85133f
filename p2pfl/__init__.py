"""p2pfl: peer-to-peer federated learning for hospitals."""

__version__ = "0.1.0"
