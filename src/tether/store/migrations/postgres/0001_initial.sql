-- tether schema, version 1 (PostgreSQL).
-- The same tables and columns as sqlite/0001_initial.sql. JSON columns hold compact
-- JSON text (the rows are read by the engine-neutral ``store/rows.py``); *_at columns
-- hold Unix time as double precision seconds, taken from the database clock for
-- leases so that workers on machines with skewed clocks agree on expiry.

CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    agent TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX sessions_by_tenant ON sessions (tenant, created_at);
CREATE INDEX sessions_by_created ON sessions (created_at);

CREATE TABLE tasks (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- submission order, never reused
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    agent TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    spec TEXT,
    input_seq BIGINT,
    idempotency_key TEXT,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    lease_epoch BIGINT NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    trace_context TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (tenant, idempotency_key)
);
-- claiming: queued tasks in submission order, running tasks by owner and by expiry
CREATE INDEX tasks_by_status ON tasks (status, position);
CREATE INDEX tasks_running_by_owner ON tasks (lease_owner) WHERE status = 'running';
CREATE INDEX tasks_running_by_expiry ON tasks (lease_expires_at) WHERE status = 'running';
-- per-session order (one running task per session, oldest queued first)
CREATE INDEX tasks_by_session ON tasks (session_id, status, position);
CREATE INDEX tasks_by_tenant ON tasks (tenant, position);
-- at most one running task per session, whatever two concurrent claimers decide
CREATE UNIQUE INDEX tasks_one_running_per_session ON tasks (session_id)
    WHERE status = 'running';

CREATE TABLE messages (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    seq BIGINT NOT NULL,
    task_id TEXT REFERENCES tasks (id),
    payload TEXT NOT NULL,
    payload_version INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE steps (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    idx INTEGER NOT NULL,
    kind TEXT NOT NULL
        CHECK (kind IN ('model', 'tool', 'summarize', 'sleep', 'custom')),
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('completed', 'failed')),
    output TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    worker TEXT,
    message_seqs TEXT NOT NULL DEFAULT '[]',
    usage TEXT,
    payload_version INTEGER NOT NULL,
    PRIMARY KEY (task_id, idx)
);

CREATE TABLE step_attempts (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    error TEXT NOT NULL,
    delay DOUBLE PRECISION NOT NULL,
    worker TEXT,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (task_id, idx, attempt)
);

CREATE TABLE task_runs (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    run INTEGER NOT NULL,
    worker TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    from_step INTEGER NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('start', 'recovery', 'handover', 'resume')),
    PRIMARY KEY (task_id, run)
);

CREATE TABLE events (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    step INTEGER,
    data TEXT NOT NULL,
    payload_version INTEGER NOT NULL,
    PRIMARY KEY (task_id, seq)
);
