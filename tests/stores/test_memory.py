from collections.abc import Iterator

import pytest

from enspace_profile.stores.memory import MemoryStorage
from enspace_profile.testing import StorageContract


class TestMemoryStorage(StorageContract):
    """The shipped in-memory adapter passes the whole contract suite."""

    @pytest.fixture
    def storage(self) -> Iterator[MemoryStorage]:
        s = MemoryStorage()
        yield s
        s.close()
