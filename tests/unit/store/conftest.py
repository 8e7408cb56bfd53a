from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamd.store.env import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "data", sync=False)
    yield s
    s.close()
