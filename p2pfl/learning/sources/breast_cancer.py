"""Wisconsin diagnostic breast cancer (569 rows, 30 features, 2 classes), bundled with sklearn."""

from p2pfl.learning.sources import DataSource
from p2pfl.learning.sources._bundled import loader

COMPONENT = DataSource(
    name="breast_cancer",
    summary="bundled Wisconsin breast cancer table (569 rows, 30 features, 2 classes); a trial",
    shared=True,
    load=loader("breast_cancer"),
)
