-- tether schema, version 1 (SQLite).
-- JSON columns hold compact JSON text; *_at columns hold Unix time as REAL seconds.

CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at REAL NOT NULL
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    agent TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX sessions_by_tenant ON sessions (tenant, created_at);
CREATE INDEX sessions_by_created ON sessions (created_at);

CREATE TABLE tasks (
    position INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order, never reused
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
    input_seq INTEGER,
    idempotency_key TEXT,
    lease_owner TEXT,
    lease_expires_at REAL,
    lease_epoch INTEGER NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    trace_context TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (tenant, idempotency_key)
);
-- claiming: queued tasks in submission order, running tasks by owner and by expiry
CREATE INDEX tasks_by_status ON tasks (status, position);
CREATE INDEX tasks_running_by_owner ON tasks (lease_owner) WHERE status = 'running';
CREATE INDEX tasks_running_by_expiry ON tasks (lease_expires_at) WHERE status = 'running';
-- per-session order (one running task per session, oldest queued first)
CREATE INDEX tasks_by_session ON tasks (session_id, status, position);
CREATE INDEX tasks_by_tenant ON tasks (tenant, position);

CREATE TABLE messages (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    seq INTEGER NOT NULL,
    task_id TEXT REFERENCES tasks (id),
    payload TEXT NOT NULL,
    payload_version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;

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
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    worker TEXT,
    message_seqs TEXT NOT NULL DEFAULT '[]',
    usage TEXT,
    payload_version INTEGER NOT NULL,
    PRIMARY KEY (task_id, idx)
) WITHOUT ROWID;

CREATE TABLE step_attempts (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    error TEXT NOT NULL,
    delay REAL NOT NULL,
    worker TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (task_id, idx, attempt)
) WITHOUT ROWID;

CREATE TABLE task_runs (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    run INTEGER NOT NULL,
    worker TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    started_at REAL NOT NULL,
    from_step INTEGER NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('start', 'recovery', 'handover', 'resume')),
    PRIMARY KEY (task_id, run)
) WITHOUT ROWID;

CREATE TABLE events (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    at REAL NOT NULL,
    step INTEGER,
    data TEXT NOT NULL,
    payload_version INTEGER NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
