-- tether schema, version 2 (PostgreSQL): API keys for the HTTP service.
-- A key is stored only as the sha256 of its text; `prefix` is its first characters,
-- shown by `tether keys list` so an operator can tell keys apart. Additive only:
-- workers of version 1 keep working while the API is upgraded.

CREATE TABLE api_keys (
    position BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,  -- creation order, for listings
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at);
