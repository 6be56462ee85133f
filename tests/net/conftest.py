import pytest
from consortium import Consortium


@pytest.fixture
def consortium(tmp_path):
    made = []

    def make(sub: str | None = None, **kwargs) -> Consortium:
        """A consortium in tmp_path (or its subfolder `sub`, for several in one test)."""
        folder = tmp_path if sub is None else tmp_path / sub
        folder.mkdir(exist_ok=True)
        c = Consortium(folder, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop_all()
