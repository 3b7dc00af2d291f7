-- tether schema, version 4 (SQLite): durable waits. A task that waits for a signal or
-- a long sleep is `waiting`: it holds no lease; `wake_at` says when it may be claimed
-- again (NULL: only a signal wakes it), `wait` (JSON) what it waits for: the step, the
-- kind (signal or sleep), the signal's name, the deadline and since when it waits.
-- Signals are kept per task in arrival order; each is consumed once, by one step.
--
-- Widening the CHECKs on tasks.status, steps.kind and task_runs.reason: SQLite cannot
-- alter a constraint, and rebuilding `tasks` inside a transaction would break the
-- foreign keys that point at it, so the stored table definitions are edited in place
-- (SQLite's documented procedure for loosening a CHECK: the rows' format is unchanged),
-- after the ADD COLUMN (which rewrites the definition from the parsed schema), and the
-- schema is reloaded (`writable_schema = RESET`) before anything else reads it.

ALTER TABLE tasks ADD COLUMN wake_at REAL;
ALTER TABLE tasks ADD COLUMN wait TEXT;

PRAGMA writable_schema = ON;
UPDATE sqlite_master
    SET sql = replace(sql, '''failed'', ''cancelled'')', '''failed'', ''cancelled'', ''waiting'')')
    WHERE type = 'table' AND name = 'tasks';
UPDATE sqlite_master
    SET sql = replace(sql, '''sleep'', ''custom'')', '''sleep'', ''custom'', ''signal'')')
    WHERE type = 'table' AND name = 'steps';
UPDATE sqlite_master
    SET sql = replace(sql, '''handover'', ''resume'')', '''handover'', ''resume'', ''wake'')')
    WHERE type = 'table' AND name = 'task_runs';
PRAGMA writable_schema = RESET;

-- claiming: waiting tasks by the time they are due
CREATE INDEX tasks_waiting_by_wake ON tasks (wake_at) WHERE status = 'waiting';

CREATE TABLE signals (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    seq INTEGER NOT NULL,              -- arrival order within the task: 1, 2, …
    name TEXT NOT NULL,
    data TEXT NOT NULL,                -- the sender's JSON value, as sent
    sent_at REAL NOT NULL,
    consumed_step INTEGER,             -- the step that consumed it; NULL: not yet
    consumed_at REAL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
CREATE INDEX signals_unconsumed ON signals (task_id, name, seq) WHERE consumed_step IS NULL;
