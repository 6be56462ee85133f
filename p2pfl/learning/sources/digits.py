"""Handwritten digits (1797 images of 8x8 pixels, 10 classes), bundled with sklearn."""

from p2pfl.learning.sources import DataSource
from p2pfl.learning.sources._bundled import loader

COMPONENT = DataSource(
    name="digits",
    summary="bundled 8x8 handwritten digits (1797 rows, 64 pixels, 10 classes); a trial",
    shared=True,
    load=loader("digits"),
    row_shape=(1, 8, 8),
)
