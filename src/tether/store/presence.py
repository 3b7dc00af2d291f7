"""Read-only commands look at a store that exists; they never create or migrate one.

A typo'd path once made ``tasks list`` create the folder, an empty migrated store and
print an empty table; pointed at another application's SQLite file, ``sessions list``
added tether's tables to it. ``require_store`` refuses both before anything is opened
for writing.
"""

from __future__ import annotations

import os

from tether import errors, redact
from tether.store import open_store, sqlite_connection


async def require_store(url: str, *, allow_empty: bool = False) -> None:
    """Raise ``NotFound`` unless ``url`` names an existing tether store (any version;
    with ``allow_empty``, an existing database without tether tables is enough)."""
    if url.startswith("sqlite://"):
        path = sqlite_connection.parse_url(url)[0]
        if not os.path.isfile(path):
            raise errors.NotFound(
                f"no SQLite store at {path} ({url}): check --store or $TETHER_STORE "
                "(read-only commands never create one)"
            )
    store = open_store(url, migrate=False)
    await store.open(check=False)
    try:
        version = await store.schema_version()
    finally:
        await store.close()
    if version == 0 and not allow_empty:
        raise errors.NotFound(
            f"no tether store at {redact.url(url)}: it holds no tether tables; create one with "
            f"`tether migrate --store {redact.url(url)}`"
        )
