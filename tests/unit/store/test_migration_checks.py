"""The engine-neutral migration checks: what is pending, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import errors
from tether.store import migrations

URL = "postgresql://tether:s3cret@db.example:5432/tether"


def _shipped(n: int) -> list[migrations.Migration]:
    return [
        migrations.Migration(v, f"step_{v}", f"-- {v}", migrations.checksum(f"-- {v}"))
        for v in range(1, n + 1)
    ]


def _applied(shipped: list[migrations.Migration]) -> dict[int, migrations.Applied]:
    return {m.version: migrations.Applied(m.version, m.name, m.checksum) for m in shipped}


def test_pending_lists_what_is_not_applied_in_order() -> None:
    shipped = _shipped(3)
    assert migrations.pending(URL, {}, shipped) == shipped
    assert migrations.pending(URL, _applied(shipped[:1]), shipped) == shipped[1:]
    assert migrations.pending(URL, _applied(shipped), shipped) == []


def test_a_newer_store_names_both_versions_and_hides_the_password() -> None:
    with pytest.raises(errors.StoreVersionError) as info:
        migrations.pending(URL, _applied(_shipped(5)), _shipped(3))
    message = str(info.value)
    assert "version 5" in message and "version 3" in message and "upgrade tether" in message
    assert "s3cret" not in message and "tether:***@db.example:5432" in message


def test_a_changed_checksum_is_refused() -> None:
    shipped = _shipped(2)
    recorded = _applied(shipped)
    recorded[2] = migrations.Applied(2, "step_2", migrations.checksum("something else"))
    with pytest.raises(errors.StoreVersionError, match="0002_step_2"):
        migrations.pending(URL, recorded, shipped)


def test_pending_error_says_how_to_migrate() -> None:
    err = migrations.pending_error(URL, 1, _shipped(3)[1:])
    assert "tether migrate --store" in str(err)
    assert "0002_step_2, 0003_step_3" in str(err) and "s3cret" not in str(err)


def test_checksum_is_sha256_of_the_text() -> None:
    assert migrations.checksum("") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_an_engine_without_files_has_no_migrations() -> None:
    assert migrations.load("no_such_engine") == []


@pytest.mark.parametrize(
    "name",
    ["0001_initial.sql", "0012_add_memory_index.sql", "0003_v2.sql"],
)
def test_well_formed_names(name: str) -> None:
    assert migrations.NAME_PATTERN.match(name)


@pytest.mark.parametrize(
    "name",
    ["1_initial.sql", "0001-initial.sql", "0001_Initial.sql", "0001_.sql", "0001_a__b.sql"],
)
def test_malformed_names(name: str) -> None:
    assert migrations.NAME_PATTERN.match(name) is None


ENGINES = ["sqlite", "postgres"]


def _shipped_files(engine: str) -> list[str]:
    folder = Path(migrations.__file__).parent / engine
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "__init__.py")


@pytest.mark.parametrize("engine", ENGINES)
def test_the_shipped_files_are_well_named_and_numbered_one_by_one(engine: str) -> None:
    """On the files in the wheel, not on made-up names: a skipped or doubled number (two
    branches that took the same one) or a misnamed file that ``load`` would ignore."""
    names = _shipped_files(engine)
    assert names, f"no migrations shipped for {engine}"
    assert [n for n in names if not migrations.NAME_PATTERN.match(n)] == []
    numbers = [int(n.split("_", 1)[0]) for n in names]
    assert numbers == list(range(1, len(names) + 1)), names
    assert [m.version for m in migrations.load(engine)] == numbers


def test_both_engines_ship_the_same_migrations() -> None:
    assert _shipped_files("sqlite") == _shipped_files("postgres")
