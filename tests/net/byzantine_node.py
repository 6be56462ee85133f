"""Byzantine members for tests: real node processes that sign correctly but lie.

Run as `python tests/net/byzantine_node.py --config node.toml [--attack NAME]`:

- `sign_flip` (default): with y its model at the start of the round and x after local training,
  it sends y - SCALE * (x - y), its update flipped and scaled (gradient ascent, as the
  sign-flip attack of the Byzantine literature).
- `last_round`: an honest member that, with every update, also sends its neighbours a validly
  signed update claiming the consortium's last round (to make them skip to the end).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

from p2pfl.net.daemon import Node, Outgoing
from p2pfl.protocol.codec import encode
from p2pfl.protocol.rounds import Send, Train
from p2pfl.settings.load import node_settings

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


class LastRoundNode(Node):
    async def _send_all(self, action: Send) -> None:
        await super()._send_all(action)
        last = self.settings.training.rounds - 1
        if action.round >= last:
            return
        lie = Outgoing(last, await trio.to_thread.run_sync(lambda: encode(
            self.key, round=last, fingerprint=self.fingerprint, num_samples=1, weight=1.0,
            tensors=action.params, consortium=self.consortium)))
        self.log.warn("byzantine_send", round=action.round, claims_round=last)
        for peer in action.peers:
            self.nursery.start_soon(self._send_one, peer, lie)


ATTACKS = {"sign_flip": SignFlipNode, "last_round": LastRoundNode}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--attack", choices=sorted(ATTACKS), default="sign_flip")
    args = parser.parse_args()
    node = ATTACKS[args.attack].from_settings(node_settings(args.config))
    raise SystemExit(trio.run(node.run))


if __name__ == "__main__":
    main()
