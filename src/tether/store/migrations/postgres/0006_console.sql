-- tether schema, version 6 (PostgreSQL): operator keys and the console's indexes.
-- An operator key (`tether keys create --operator`) sees every tenant in the console;
-- its `tenant` column holds the label '*'. The indexes keep the console's reads
-- bounded on a large store: the task list by agent, the last hour's tasks, runs and
-- retries. Additive only: workers of earlier versions keep working.

ALTER TABLE api_keys ADD COLUMN operator BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX tasks_by_agent ON tasks (agent, position);
CREATE INDEX tasks_by_created ON tasks (created_at, position);
CREATE INDEX task_runs_by_started ON task_runs (started_at);
CREATE INDEX step_attempts_by_at ON step_attempts (at);
