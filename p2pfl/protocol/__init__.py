"""Sans-I/O node protocol: identity and signatures, the update codec, the roster."""
