"""Workarounds for py-libp2p 0.8.1 (pinned), all in this package; each module says why it exists
and which canary test fails once the library no longer needs it.

- `inbound`: the inbound-limiter leak (one token per connection, for ever) and a per-IP cap.
- `throughput`: bulk transfers (stock: 0.1x of a raw socket): 1 MiB Yamux frames, buffered TCP
  reads, one socket write per Noise write.
"""

from p2pfl.net.libp2p_fixes.inbound import (
    LEAK_MARKER,
    MAX_INBOUND_PER_IP,
    InboundGuard,
    apply,
    library_still_leaks,
    notify,
)
from p2pfl.net.libp2p_fixes.throughput import apply_throughput

__all__ = ["LEAK_MARKER", "MAX_INBOUND_PER_IP", "InboundGuard", "apply", "apply_throughput",
           "library_still_leaks", "notify"]
