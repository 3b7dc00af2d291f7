"""API keys on every engine: create, look up by hash, list per tenant, revoke, operator keys."""

from __future__ import annotations

import pytest
from contract_support import StoreCase

from tether import errors
from tether.store import Store


def test_api_keys_round_trip_with_tenant_scoping(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        key = await s.create_api_key("acme", "h1", prefix="tk_1", name="ci")
        assert (key.tenant, key.key_hash, key.prefix, key.name) == ("acme", "h1", "tk_1", "ci")
        assert key.active and not key.operator
        with pytest.raises(errors.Conflict, match="hash exists already"):
            await s.create_api_key("globex", "h1", prefix="tk_x")
        other = await s.create_api_key("globex", "h2", prefix="tk_2")
        assert await s.find_api_key("h1") == key
        assert await s.find_api_key("nope") is None
        assert [k.id for k in await s.list_api_keys()] == [other.id, key.id]  # newest first
        assert [k.id for k in await s.list_api_keys(tenant="acme")] == [key.id]
        assert await s.list_api_keys(tenant="initech") == []

        with pytest.raises(errors.NotFound, match=key.id):  # another tenant's key: not found
            await s.revoke_api_key(key.id, tenant="globex")
        assert (await s.find_api_key("h1")) == key
        with pytest.raises(errors.NotFound):
            await s.revoke_api_key("no-such-key")

        revoked = await s.revoke_api_key(key.id, tenant="acme")
        assert not revoked.active and revoked.revoked_at is not None
        assert await s.find_api_key("h1") is None  # a revoked key authenticates nothing
        again = await s.revoke_api_key(key.id)  # revoking twice keeps the first time
        assert again.revoked_at == revoked.revoked_at
        assert [k.active for k in await s.list_api_keys()] == [True, False]
        with pytest.raises(errors.Conflict):  # a revoked key's hash is never reused
            await s.create_api_key("acme", "h1", prefix="tk_1")

    store.run(body)


def test_operator_keys_are_kept_and_found_as_operator(store: StoreCase) -> None:
    async def body(s: Store) -> None:
        op = await s.create_api_key("*", "hop", prefix="tk_op", operator=True)
        plain = await s.create_api_key("acme", "hp", prefix="tk_p")
        found = await s.find_api_key("hop")
        assert found is not None and found.operator and found.tenant == "*"
        assert found.to_public().get("operator") is True and "key_hash" not in found.to_public()
        assert (await s.find_api_key("hp")) == plain and not plain.operator
        assert [k.id for k in await s.list_api_keys(tenant="*")] == [op.id]

    store.run(body)
