"""Crash tests: real ``tether worker`` subprocesses against a real store and a real model server.

The ``store_url`` fixture is parametrised over ``ENGINES`` (one function per engine
returning the URL of a fresh, empty store), so every crash test runs on each engine
and its test id names the engine. ``model`` is the stand-in OpenAI-compatible server,
answering from ``workload.script`` and remembering when each request arrived.
``cluster`` starts and signals worker processes and cleans up after the test; what
they are made of lives in ``crash_cluster``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from crash_cluster import Cluster, Model, ModelLog

from store_view import call_with_store
from tether.testing import StandInModelServer


def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crash.db'}"


def postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url: str = request.getfixturevalue("pg_url")
    return url


ENGINES: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "postgres": postgres_url,
    "sqlite": sqlite_url,
}


@pytest.fixture(params=sorted(ENGINES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = ENGINES[request.param](request, tmp_path)
    call_with_store(url, lambda s: s.schema_version())  # migrate before workers race to
    return url


@pytest.fixture
def model() -> Iterator[Model]:
    log = ModelLog()
    with StandInModelServer(log) as server:
        yield Model(server, log)


@pytest.fixture
def cluster(tmp_path: Path, store_url: str, model: Model) -> Iterator[Cluster]:
    c = Cluster(tmp_path, store_url, model)
    try:
        yield c
    finally:
        c.stop_all()
