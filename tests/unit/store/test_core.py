"""The store's rules are written once: ``StoreCore`` implements the ``Store`` protocol,
and each engine's driver adds only its engine's pieces (DESIGN.md, "Storage")."""

from __future__ import annotations

import inspect

from tether.store import base, core
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SQLiteStore

ENGINE_PIECES = {
    "open", "close", "identity", "migrate", "claim_task", "commit_steps", "wait_for_work",
}  # fmt: skip
"""What a driver may define: connection, schema runner, the tuned hot path, wake-ups."""


def _public(cls: type) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_")}


def test_the_core_and_the_engine_pieces_make_the_whole_protocol() -> None:
    protocol = {name for name, _ in inspect.getmembers(base.Store, inspect.isfunction)}
    protocol = {name for name in protocol if not name.startswith("_")}
    assert _public(core.StoreCore) - {"dialect"} == protocol - ENGINE_PIECES
    assert protocol >= ENGINE_PIECES


def test_a_driver_defines_only_its_engine_pieces() -> None:
    for driver in (SQLiteStore, PostgresStore):
        assert _public(driver) - {"dialect"} == ENGINE_PIECES, driver.__name__
