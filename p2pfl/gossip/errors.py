"""The error of the gossip layer."""


class GossipSettingError(Exception):
    """A gossip setting (topology, mixing, aggregator, compression or one of their parameters)
    that cannot be built; the text names it. The CLI reports it like a UserError (p2pfl.errors)."""
