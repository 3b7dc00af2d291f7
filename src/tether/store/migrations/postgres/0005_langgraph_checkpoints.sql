-- tether schema, version 5 (PostgreSQL): LangGraph checkpoints (tether.integrations.langgraph).
-- A checkpoint row holds the checkpoint without its channel values; each channel value
-- is a blob keyed by (channel, version), written once when the channel changes, so an
-- unchanged value is never stored again. Writes are the pending writes of a superstep.
-- `task_id` and `epoch` name the tether task and lease epoch that wrote a row (NULL for
-- a saver used outside a task). Additive only: earlier workers never read these tables.

CREATE TABLE langgraph_checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT COLLATE "C" NOT NULL,  -- ids sort by time in byte order
    parent_checkpoint_id TEXT COLLATE "C",
    run_id TEXT,
    channel_versions TEXT NOT NULL,  -- JSON: channel -> version, to find the blobs
    type TEXT NOT NULL,
    checkpoint BYTEA NOT NULL,
    metadata_type TEXT NOT NULL,
    metadata BYTEA NOT NULL,
    task_id TEXT,
    epoch BIGINT,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE INDEX langgraph_checkpoints_by_run ON langgraph_checkpoints (run_id);

CREATE TABLE langgraph_blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BYTEA,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);

CREATE TABLE langgraph_writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT COLLATE "C" NOT NULL,  -- ids sort by time in byte order
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BYTEA NOT NULL,
    task_path TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
