from __future__ import annotations

from collections.abc import Iterator

import pytest

from tether.testing import StandInModelServer


@pytest.fixture
def server() -> Iterator[StandInModelServer]:
    with StandInModelServer("hello") as stand_in:
        yield stand_in
