"""Sign flipping: the malicious nodes send their negated model, -x_i.

The model-space form of the sign-flipping attack, which sends the negated gradient in
server-based training.
"""

from p2pfl.sim.attacks._kind import MessageAttack

COMPONENT = MessageAttack("sign_flip", "the malicious nodes send their negated model -x_i",
                          lambda own, honest, generator: -own)
