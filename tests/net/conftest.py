import pytest
from consortium import Consortium


@pytest.fixture
def consortium(tmp_path):
    made = []

    def make(**kwargs) -> Consortium:
        c = Consortium(tmp_path, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop_all()
