"""The release fixture stores under ``tests/fixtures/stores/<version>/``: finding them,
restoring one into a store of this test's own, and describing a schema to compare.

A fixture is cut once per release by ``scripts/make_release_fixture.py`` and never
changed; its ``manifest.json`` says what is inside (see that script).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from upgrade_support import raw

import pg

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "stores"
ENGINES = ("postgres", "sqlite")


@dataclass(frozen=True)
class Fixture:
    version: str
    folder: Path
    manifest: dict[str, Any]

    def engine(self, engine: str) -> dict[str, Any]:
        described: dict[str, Any] = self.manifest["engines"][engine]
        return described


def fixtures() -> list[Fixture]:
    """Every fixture folder (one per released version), oldest first."""
    found = []
    for folder in sorted(FIXTURES.iterdir()):
        manifest = folder / "manifest.json"
        if manifest.is_file():
            found.append(Fixture(folder.name, folder, json.loads(manifest.read_text())))
    return found


def cases() -> list[Any]:
    """``pytest.param(fixture, engine)`` for every fixture and engine."""
    return [
        pytest.param(f, engine, id=f"{f.version}-{engine}")
        for f in fixtures()
        for engine in ENGINES
    ]


def restore(fixture: Fixture, engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A store of this test's own holding the fixture's data, exactly as the release wrote it."""
    file = fixture.folder / fixture.engine(engine)["file"]
    if engine == "sqlite":
        target = tmp_path / "fixture.db"
        shutil.copyfile(file, target)
        return f"sqlite:///{target}"
    url = pg.empty_url()
    request.addfinalizer(lambda: pg.drop_url(url))
    subprocess.run(
        [
            "psql",
            "--no-psqlrc",
            "--quiet",
            "-v",
            "ON_ERROR_STOP=1",
            "--dbname",
            url,
            "-f",
            str(file),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return url


def schema(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything migrations define: tables, columns, indexes, constraints (not data)."""
    if url.startswith("sqlite://"):
        return {
            "objects": raw(
                url,
                "SELECT type, name, tbl_name, sql FROM sqlite_master"
                " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
        }
    return {
        "columns": raw(
            url,
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public'"
            " ORDER BY table_name, column_name",
        ),
        "indexes": raw(
            url,
            "SELECT tablename, indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = 'public' ORDER BY tablename, indexname",
        ),
        "constraints": raw(
            url,
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
            " ORDER BY 1, 2",
        ),
    }
