"""The model update message: what one node sends its neighbours after a round."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

FORMAT_VERSION = 2  # 2: the signed header binds the update to a consortium

# Wire names of the tensor element types a message may carry.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}


class InvalidMessage(Exception):
    """Bytes from a peer that fail a check: the message is dropped; the text says what was wrong.

    Not a ValueError, so a bug (a ValueError in our own code) is never mistaken for a bad peer.
    """


class ProtocolViolation(InvalidMessage):
    """A well-formed message, validly signed by its sender, that breaks the protocol: another
    consortium, another model, a round other than the one it was sent for.

    A subclass of InvalidMessage because it is handled the same way (dropped, the sender told
    why, every `except InvalidMessage` still applies); what it adds is that the signature
    verified, so the sender is known and to blame (a misconfigured or misbehaving member),
    whereas an InvalidMessage may be corruption or a forgery naming someone else.
    """


class BadSignature(InvalidMessage):
    """The signature does not verify against the public key in the sender's peer ID."""


@dataclass(frozen=True)
class TensorRecord:
    """One tensor of an update: name, element type, shape and its raw little-endian bytes.

    `data` is a view into the received message (no copy).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: memoryview = field(repr=False)

    @property
    def nbytes(self) -> int:
        """Length of the raw data in bytes."""
        return self.data.nbytes


@dataclass(frozen=True)
class ModelUpdate:
    """A decoded, signed model update.

    `header` holds the exact signed header bytes and `signature` the sender's Ed25519
    signature over them; the header carries `payload_digest`, which covers every tensor byte.
    `consortium` is the sender's consortium ID and `sections` the first 8 bytes of the digest
    of each section it was derived from (see p2pfl.protocol.consortium).
    """

    version: int
    sender: str
    consortium: bytes
    sections: dict[str, bytes]
    round: int
    fingerprint: str
    num_samples: int
    weight: float
    encoding: str
    metrics: dict[str, float]
    tensors: tuple[TensorRecord, ...]
    payload_digest: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    header: bytes = field(repr=False)
    payload: memoryview = field(repr=False)

    @property
    def nbytes(self) -> int:
        """Total bytes of tensor data."""
        return sum(t.nbytes for t in self.tensors)
