"""The site partition: each site's rows stay on one node."""

import numpy as np
import pytest

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.partition import partition


def test_site_partition_and_errors():
    y = np.zeros(12, dtype=int)
    site = np.repeat(np.arange(6), 2)
    p = partition("site", y, 3, site=site)
    assert [sorted(set(site[i])) for i in p.indices] == [[0, 3], [1, 4], [2, 5]]
    with pytest.raises(LearningSettingError, match="fewer than the 7 nodes"):
        partition("site", y, 7, site=site)
    with pytest.raises(LearningSettingError, match="needs a dataset with a site column"):
        partition("site", y, 3)
