"""Real I/O: the libp2p host, framed model transfers and the node daemon (trio)."""
