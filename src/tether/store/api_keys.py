"""API keys, the store's rules for every engine (run as programs, ``program``): a hash
is stored once and never reused, a key is seen only through its own tenant (or with no
tenant given, by an operator), revoking keeps the first revocation's time."""

from __future__ import annotations

from tether import errors, types
from tether.store import ids, rows
from tether.store.base import ApiKey
from tether.store.program import Program, Query, one

_BY_ID = "SELECT * FROM api_keys WHERE id = :id"


def create(
    tenant: str, key_hash: str, *, prefix: str, name: str | None, operator: bool
) -> Program[ApiKey]:
    found = yield Query(
        "INSERT INTO api_keys (id, tenant, key_hash, prefix, name, created_at, operator)"
        " VALUES (:id, :tenant, :key_hash, :prefix, :name, :now, :operator)"
        " ON CONFLICT (key_hash) DO NOTHING RETURNING *",
        {"id": ids.new_id(), "tenant": tenant, "key_hash": key_hash, "prefix": prefix,
         "name": name, "now": types.now(), "operator": operator},
    )  # fmt: skip
    row = one(found)
    if row is None:
        raise errors.Conflict(
            "an API key with this hash exists already; generate a new key", tenant=tenant
        )
    return record(row)


def find(key_hash: str) -> Program[ApiKey | None]:
    row = one(
        (yield Query(
            "SELECT * FROM api_keys WHERE key_hash = :key_hash AND revoked_at IS NULL",
            {"key_hash": key_hash},
        ))
    )  # fmt: skip
    return None if row is None else record(row)


def revoke(key_id: str, tenant: str | None) -> Program[ApiKey]:
    visible(one((yield Query(_BY_ID, {"id": key_id}, lock=True))), key_id, tenant)
    yield Query(
        "UPDATE api_keys SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL",
        {"now": types.now(), "id": key_id},
    )
    return record(visible(one((yield Query(_BY_ID, {"id": key_id}))), key_id, tenant))


def listing(tenant: str | None, newest_first: str) -> Program[list[ApiKey]]:
    """Every key (of ``tenant``), newest first; ``newest_first`` is the engine's ORDER BY
    (creation time, then insertion order: SQLite's ``rowid``, PostgreSQL's ``position``)."""
    where = "WHERE tenant = :tenant" if tenant is not None else ""
    found = yield Query(
        f"SELECT * FROM api_keys {where} ORDER BY {newest_first}", {"tenant": tenant}
    )
    return [record(r) for r in found]


def visible(row: rows.Row | None, key_id: str, tenant: str | None) -> rows.Row:
    """The key's row if it exists and belongs to ``tenant`` (any tenant when None)."""
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise errors.NotFound(
            f"no API key {key_id}; `tether keys list` shows the keys", tenant=tenant
        )
    return row


def record(row: rows.Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        key_hash=row["key_hash"],
        prefix=row["prefix"],
        name=row["name"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        operator=bool(row["operator"]),
    )
