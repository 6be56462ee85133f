"""A Byzantine member for tests: a real node process that sends sign-flipped updates.

Run as `python tests/net/byzantine_node.py --config node.toml`. It is a member of the roster,
signs correctly and follows the protocol; only what it sends is wrong: with y its model at the
start of the round and x after local training, it sends y - SCALE * (x - y), its update
flipped and scaled (gradient ascent, as the sign-flip attack of the Byzantine literature).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

from p2pfl.config import node_settings
from p2pfl.net.daemon import Node
from p2pfl.protocol.rounds import Send, Train

SCALE = 10.0


class SignFlipNode(Node):
    starts: dict[int, dict] = {}

    async def _train(self, action: Train) -> None:
        self.starts[action.round] = {k: v.clone() for k, v in action.params.items()}
        await super()._train(action)

    async def _send_all(self, action: Send) -> None:
        y = self.starts.pop(action.round)
        flipped = {k: y[k] - SCALE * (x - y[k]) for k, x in action.params.items()}
        self.log.warn("byzantine_send", round=action.round, update_scale=-SCALE)
        await super()._send_all(Send(action.round, action.peers, flipped))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    node = SignFlipNode.from_settings(node_settings(parser.parse_args().config))
    trio.run(node.run)


if __name__ == "__main__":
    main()
