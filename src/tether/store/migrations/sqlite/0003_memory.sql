-- tether schema, version 3 (SQLite): a session's vector memory.
-- One row per session message moved out of the context window by the memory strategy.
-- vector holds `dimensions` little-endian float32 values; search is done in the store.

CREATE TABLE memory (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    seq INTEGER NOT NULL,
    task_id TEXT REFERENCES tasks (id),
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    vector BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
