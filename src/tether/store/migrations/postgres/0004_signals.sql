-- tether schema, version 4 (PostgreSQL): durable waits. The same tables and columns as
-- sqlite/0004_signals.sql. A task that waits for a signal or a long sleep is `waiting`:
-- it holds no lease; `wake_at` says when it may be claimed again (NULL: only a signal
-- wakes it), `wait` (JSON) what it waits for. Signals are kept per task in arrival
-- order; each is consumed once, by one step. Additive for running workers: the widened
-- CHECKs accept every value they accepted before.

ALTER TABLE tasks ADD COLUMN wake_at DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN wait TEXT;

ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'waiting'));
ALTER TABLE steps DROP CONSTRAINT steps_kind_check;
ALTER TABLE steps ADD CONSTRAINT steps_kind_check
    CHECK (kind IN ('model', 'tool', 'summarize', 'sleep', 'custom', 'signal'));
ALTER TABLE task_runs DROP CONSTRAINT task_runs_reason_check;
ALTER TABLE task_runs ADD CONSTRAINT task_runs_reason_check
    CHECK (reason IN ('start', 'recovery', 'handover', 'resume', 'wake'));

-- claiming: waiting tasks by the time they are due
CREATE INDEX tasks_waiting_by_wake ON tasks (wake_at) WHERE status = 'waiting';

CREATE TABLE signals (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    seq BIGINT NOT NULL,               -- arrival order within the task: 1, 2, …
    name TEXT NOT NULL,
    data TEXT NOT NULL,                -- the sender's JSON value, as sent
    sent_at DOUBLE PRECISION NOT NULL,
    consumed_step BIGINT,              -- the step that consumed it; NULL: not yet
    consumed_at DOUBLE PRECISION,
    PRIMARY KEY (task_id, seq)
);
CREATE INDEX signals_unconsumed ON signals (task_id, name, seq) WHERE consumed_step IS NULL;
