"""Pure gossip math: topologies, mixing weights, spectral gap, averaging. No I/O."""
