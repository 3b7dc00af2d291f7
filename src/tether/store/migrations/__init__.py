"""Schema migrations: numbered SQL files per engine, and the checks every engine shares.

Each engine keeps its files in ``migrations/<engine>/NNNN_lower_snake.sql``; both
engines carry the same numbers (one schema, two engines). A store records each
applied file in ``schema_migrations`` (version, name, sha256 checksum, applied_at).
The engine applies each pending file in its own transaction together with that row;
this module only reads the files and decides what is pending, refusing a store that
is newer than the code or whose recorded checksums differ from the files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from tether import errors
from tether import redact as redact_text
from tether.store.program import Program, Query

NAME_PATTERN = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        """``0001_initial``: the file name without its suffix."""
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class Applied:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    checksum: str


def applied(tables_sql: str) -> Program[dict[int, Applied]]:
    """The rows of ``schema_migrations``, by version (none on a fresh store), as a program
    (``program``) run by either engine; ``tables_sql`` lists the engine's tables. (On
    PostgreSQL, ``pg_tables`` is an MVCC read of the catalog: after waiting on the
    migration lock it sees a table another migrator made, where ``to_regclass`` may not.)"""
    if "schema_migrations" not in {r["name"] for r in (yield Query(tables_sql))}:
        return {}
    found = yield Query("SELECT version, name, checksum FROM schema_migrations")
    return {r["version"]: Applied(r["version"], r["name"], r["checksum"]) for r in found}


def checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode("utf-8")).hexdigest()


def _folder(engine: str, root: Traversable | Path | None) -> Traversable | Path:
    """``<root>/<engine>``; ``root`` defaults to this package (the shipped migrations)."""
    return (resources.files(__name__) if root is None else root).joinpath(engine)


def file_names(engine: str, root: Traversable | Path | None = None) -> list[str]:
    """The ``.sql`` file names shipped for ``engine``, sorted (none for an engine without files).

    ``root`` reads another folder laid out like this package (``<root>/<engine>/*.sql``):
    tests use it to run migrations that are not shipped, a broken one say."""
    folder = _folder(engine, root)
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))


def load(engine: str, root: Traversable | Path | None = None) -> list[Migration]:
    """Every migration shipped for ``engine`` (or found under ``root``), in version order.

    Raises ``StoreCorrupt`` when a file name is malformed or the numbers are not
    1, 2, 3, … without gaps: the package itself is broken then."""
    folder = _folder(engine, root)
    out: list[Migration] = []
    for expected, file_name in enumerate(file_names(engine, root), start=1):
        match = NAME_PATTERN.match(file_name)
        if match is None:
            raise errors.StoreCorrupt(
                f"migration file {engine}/{file_name} is not named NNNN_lower_snake.sql; "
                "the installed tether package is damaged, reinstall it"
            )
        version = int(match["version"])
        if version != expected:
            raise errors.StoreCorrupt(
                f"migration {engine}/{file_name} has number {version}, expected {expected}: "
                "migration numbers must be contiguous from 0001; reinstall tether"
            )
        sql = folder.joinpath(file_name).read_text(encoding="utf-8")
        out.append(Migration(version=version, name=match["name"], sql=sql, checksum=checksum(sql)))
    return out


def redact(url: str) -> str:
    """The URL with every credential replaced by ``***``, for messages and logs."""
    return redact_text.url(url)


def pending(
    url: str, applied: Mapping[int, Applied], migrations: Sequence[Migration]
) -> list[Migration]:
    """The migrations not applied yet, in order, after checking the store against the code.

    Raises ``StoreVersionError`` when the store is newer than the code (it names both
    versions and says to upgrade tether) or when a recorded checksum differs from the
    file shipped for that version."""
    code_version = migrations[-1].version if migrations else 0
    store_version = max(applied, default=0)
    if store_version > code_version:
        raise errors.StoreVersionError(
            f"store {redact(url)} is at schema version {store_version} but this tether only "
            f"knows up to version {code_version}: upgrade tether to a release that supports "
            f"schema version {store_version} (the store was left unchanged)"
        )
    by_version = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        shipped = by_version.get(version)
        if shipped is None or shipped.checksum != row.checksum:
            raise errors.StoreVersionError(
                f"store {redact(url)} recorded migration {version:04d}_{row.name} with checksum "
                f"{row.checksum[:12]}…, which differs from the file this tether ships; the "
                "migration was edited after it was applied: restore the released file or "
                "migrate a fresh store"
            )
    return [m for m in migrations if m.version not in applied]


def pending_error(
    url: str, store_version: int, todo: Sequence[Migration]
) -> errors.StoreVersionError:
    """The refusal for a store opened with ``migrate=False`` while migrations are pending."""
    names = ", ".join(m.label for m in todo)
    target = todo[-1].version if todo else store_version
    return errors.StoreVersionError(
        f"store {redact(url)} is at schema version {store_version}, this tether needs version "
        f"{target} (pending: {names}): run `tether migrate --store {redact(url)}`"
    )
