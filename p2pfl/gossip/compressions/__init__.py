"""Compression members, one module each (see `_base.Member`); read through `p2pfl.gossip.compression`."""
