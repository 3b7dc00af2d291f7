"""``doctor``'s look at every stored JSON text: a row that does not parse is named.

A steps row holding invalid JSON made ``tasks show`` print a raw traceback while
``doctor`` said "ok". Both engines store these columns as text, so the check is the
same: each engine selects ``JSON_COLUMNS`` (one ``ref`` and the columns) and hands the
rows to ``findings``. It reads whole tables, as every doctor check does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tether.store.base import Finding
from tether.store.rows import Row

LIMIT = 20

JSON_COLUMNS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "steps": (
        "'task ' || task_id || ' step ' || idx",
        ("output", "error", "usage", "message_seqs"),
    ),
    "tasks": ("'task ' || id", ("output", "error")),
    "events": ("'task ' || task_id || ' event ' || seq", ("data",)),
}
"""Per table: the SQL of each row's reference, and its JSON text columns."""


def query(table: str) -> str:
    ref, columns = JSON_COLUMNS[table]
    return f"SELECT {ref} AS ref, {', '.join(columns)} FROM {table}"


def _bad(value: Any) -> bool:
    if value is None or not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return True
    return False


def findings(table: str, rows: Iterable[Row]) -> list[Finding]:
    """One finding for ``table`` naming (up to ``LIMIT``) rows whose JSON does not parse."""
    columns = JSON_COLUMNS[table][1]
    bad = [
        f"{row['ref']} ({', '.join(c for c in columns if _bad(row[c]))})"
        for row in rows
        if any(_bad(row[c]) for c in columns)
    ]
    if not bad:
        return []
    more = f" and {len(bad) - LIMIT} more" if len(bad) > LIMIT else ""
    return [
        Finding(
            check=f"invalid_json_{table}",
            severity="error",
            message=f"{len(bad)} {table} rows hold text that is not JSON: "
            f"{', '.join(bad[:LIMIT])}{more}; restore those rows from a backup "
            "(`tether backup` makes one)",
            count=len(bad),
            refs=tuple(bad[:LIMIT]),
        )
    ]
