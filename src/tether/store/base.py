"""The Store protocol: every durable operation tether needs, in domain words.

Nothing here is engine-specific. ``SQLiteStore`` and ``PostgresStore`` implement
it; ``tests/contract/`` states what each method promises and runs on both.

Rules every implementation keeps:
- Every write made on behalf of a running task carries its ``Lease``; the write is
  applied only if the task's current ``lease_epoch`` equals ``lease.epoch`` and the
  task is still ``running``, otherwise it raises ``LeaseLost`` and changes nothing.
- ``commit_steps`` writes each commit (journal row, messages, session state, events)
  in one transaction; many commits may share one transaction (group commit), but a
  fenced commit never takes its neighbours down with it.
- Reads and writes for one step are O(size of that step), never O(session length).
- ``tenant=None`` on a read means "any tenant" (the operator's view); a tenant given
  scopes the read, and another tenant's object is ``NotFound``.
- Driver errors never leave the store: they become ``StoreUnavailable`` (retryable,
  connection-level) or another ``TetherError``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tether import types


@dataclass(frozen=True, slots=True)
class Claim:
    """A task claimed by a worker, with the lease that fences its writes."""

    task: types.TaskRecord
    lease: types.Lease
    reason: str
    """``start``, ``recovery``, ``handover`` or ``resume`` (see ``TaskRun.reason``)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key of the HTTP service: it maps to one tenant. Only its hash is stored."""

    id: str
    tenant: str
    key_hash: str
    """sha256 hex digest of the key's text."""
    prefix: str
    """The key's first characters, to tell keys apart in listings."""
    created_at: float
    name: str | None = None
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_public(self) -> dict[str, Any]:
        """What an operator may see: never the hash."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "prefix": self.prefix,
            "name": self.name,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One session message in vector memory (moved out of the context window)."""

    seq: int
    role: str
    text: str
    vector: tuple[float, ...]
    task_id: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class MemoryHit:
    item: MemoryItem
    score: float
    """Cosine similarity to the query vector."""


Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem ``Store.doctor`` found: which check, how bad, what to do about it."""

    check: str
    """Stable name: ``schema``, ``pending_migrations``, ``payload_versions``,
    ``orphaned_<table>``, ``session_last_seq``, ``expired_leases``, …"""
    severity: Severity
    message: str
    """What is wrong, naming the objects, and the remedy."""
    count: int = 1
    refs: tuple[str, ...] = ()
    """Ids of (some of) the objects concerned: ``task``, ``session:seq``, ``task:index``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "count": self.count,
            "refs": list(self.refs),
        }


class Store(Protocol):
    url: str

    async def open(self, *, check: bool = True) -> None:
        """Connect and check the schema version (migrating when ``migrate=True`` was asked).

        ``check=False`` only connects, so ``tether migrate`` can inspect and upgrade."""

    async def close(self) -> None: ...

    # ---- schema ------------------------------------------------------------

    async def schema_version(self) -> int: ...

    async def identity(self) -> str:
        """What this store is, however its URL was spelled (``./r.db`` and ``r.db``,
        ``localhost`` and ``127.0.0.1``): the file's device and inode for SQLite, the
        server's system identifier and the database for PostgreSQL. Worker slots are
        keyed on it."""

    async def migrate(self, *, dry_run: bool = False) -> list[str]:
        """Apply pending migrations; return the names applied (or that would be)."""

    async def doctor(self) -> list[Finding]:
        """Check the store without changing it; return the problems found (none: healthy).

        Works on a store opened with ``check=False``, so it can report an out-of-date
        or newer schema. Checks (``tether.store.doctor``): schema version and pending
        migrations; payload versions this code cannot read; rows of unknown sessions or
        tasks (tasks, messages, steps, attempts, runs, events, memory); sessions whose
        ``last_seq`` disagrees with their messages; running tasks with an expired lease
        (a warning: a worker will resume them) or without one; leases on idle tasks."""

    # ---- sessions ----------------------------------------------------------

    async def create_session(
        self, tenant: str, agent: str, *, session_id: str | None = None
    ) -> types.SessionRecord: ...

    async def get_session(
        self, session_id: str, *, tenant: str | None = None
    ) -> types.SessionRecord:
        """Raises ``NotFound`` for an unknown id or another tenant's session."""

    async def list_sessions(
        self, *, tenant: str | None = None, limit: int = 100
    ) -> list[types.SessionRecord]: ...

    async def list_messages(
        self,
        session_id: str,
        *,
        tenant: str | None = None,
        after_seq: int = 0,
        upto_seq: int | None = None,
        limit: int | None = None,
    ) -> list[types.StoredMessage]:
        """Messages with ``after_seq < seq <= upto_seq``, in order."""

    # ---- tasks -------------------------------------------------------------

    async def submit_task(self, new: types.NewTask) -> types.TaskRecord:
        """One transaction: create the session if ``session_id`` is None, then the task as
        ``queued`` with its input. The input joins the session's history when the task
        first starts (see ``claim_task``), so tasks of one session never interleave.

        With an ``idempotency_key`` already used by this tenant, returns that task and
        writes nothing. Raises ``NotFound`` for a session of another tenant."""

    async def get_task(self, task_id: str, *, tenant: str | None = None) -> types.TaskRecord: ...

    async def list_tasks(
        self,
        *,
        tenant: str | None = None,
        session_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[types.TaskRecord]:
        """Newest first."""

    async def request_cancel(self, task_id: str, *, tenant: str | None = None) -> types.TaskRecord:
        """A queued task becomes ``cancelled`` at once; a running one gets
        ``cancel_requested`` and stops at its next step boundary. A finished task is
        returned unchanged."""

    # ---- leases ------------------------------------------------------------

    async def claim_task(
        self,
        worker: str,
        *,
        lease_ttl: float,
        agents: Collection[str] | None = None,
        task_id: str | None = None,
    ) -> Claim | None:
        """Claim one task in one transaction, or return None.

        Candidates, oldest first: a ``running`` task whose lease is held by ``worker``
        itself (a restarted worker takes its own leases back at once; reason
        ``resume``); a ``running`` task whose lease expired (``recovery``); a
        ``queued`` task whose session has no other ``running`` task and no older
        ``queued`` task (``start`` the first time, ``handover`` after a release).
        ``agents`` limits the candidates to those agent names; ``task_id`` to one task.

        Claiming bumps ``lease_epoch``, sets owner and expiry, increments ``runs``,
        records a ``TaskRun``, and on the task's first start appends its input to the
        session as a user message and sets ``input_seq``."""

    async def renew_lease(self, lease: types.Lease, *, lease_ttl: float) -> types.Lease:
        """Extend the lease; raises ``LeaseLost`` if it was taken over."""

    async def release_lease(
        self, lease: types.Lease, *, events: Sequence[types.NewEvent] = ()
    ) -> None:
        """Give a running task back (drain): it becomes ``queued`` with no owner, so
        another worker claims it at once. Fenced; ``events`` (the release's own) are
        appended in the same transaction, so a drain costs one write per task."""

    async def expire_lease(self, task_id: str) -> None:
        """Operator and test hook: mark a task's lease as expired now."""

    # ---- journal -----------------------------------------------------------

    async def load_journal(self, task_id: str) -> list[types.StepRecord]:
        """The task's steps in index order."""

    async def commit_steps(
        self, commits: Sequence[types.StepCommit]
    ) -> list[types.CommitResult | BaseException]:
        """Commit each step with its messages, session state and events; one result per
        commit, in order: ``CommitResult`` or the ``LeaseLost`` that fenced it."""

    async def record_attempt(self, lease: types.Lease, attempt: types.StepAttempt) -> None:
        """Journal one failed try of a step before it is retried. Fenced."""

    async def list_attempts(self, task_id: str) -> list[types.StepAttempt]: ...

    async def list_runs(self, task_id: str) -> list[types.TaskRun]: ...

    async def finish_task(
        self,
        lease: types.Lease,
        *,
        status: types.TaskStatus,
        output: Any = None,
        error: dict[str, Any] | None = None,
        events: Sequence[types.NewEvent] = (),
    ) -> types.TaskRecord:
        """Set the final status, output and error, clear the lease. Fenced."""

    async def fail_task(self, task_id: str, *, error: dict[str, Any]) -> types.TaskRecord:
        """Operator path, no lease: fail a task that cannot run (unknown agent, say)."""

    # ---- events ------------------------------------------------------------

    async def append_events(
        self, task_id: str, events: Sequence[types.NewEvent], *, lease: types.Lease | None = None
    ) -> None:
        """Append in order; fenced when a lease is given."""

    async def list_events(
        self, task_id: str, *, tenant: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[types.EventRecord]: ...

    # ---- waiting -----------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a sign that a task may have become claimable
        (on PostgreSQL a ``NOTIFY`` sent by a submit, release or finish on any machine);
        True when one came. SQLite has no such signal: it sleeps ``timeout`` and returns
        False. Never raises for a lost connection: the wait then just lasts its timeout."""

    # ---- measurement -------------------------------------------------------

    async def step_storage_bytes(self, task_id: str, index: int) -> int:
        """Bytes stored for one step (journal row plus its messages), as the engine
        reports them, so tests and benchmarks can check storage does not grow."""

    # ---- API keys ----------------------------------------------------------

    async def create_api_key(
        self, tenant: str, key_hash: str, *, prefix: str, name: str | None = None
    ) -> ApiKey:
        """Store a new key (by its hash) for ``tenant``. ``Conflict`` if the hash exists."""

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The active (not revoked) key with this hash, or None."""

    async def revoke_api_key(self, key_id: str, *, tenant: str | None = None) -> ApiKey:
        """Revoke a key; later lookups by its hash find nothing. Revoking twice keeps the
        first time. ``NotFound`` for an unknown id (or another tenant's key)."""

    async def list_api_keys(self, *, tenant: str | None = None) -> list[ApiKey]:
        """Keys, revoked ones included, newest first."""

    # ---- vector memory -----------------------------------------------------

    async def add_memory(
        self, lease: types.Lease, session_id: str, items: Sequence[MemoryItem]
    ) -> None:
        """Store items in the session's memory, in one transaction. Fenced by the lease
        of a running task of that session. An item with a seq already stored replaces
        it (a re-run step writes the same items again). Every vector of a session has
        the same length, else ``InvalidInput``."""

    async def search_memory(
        self, session_id: str, vector: Sequence[float], k: int
    ) -> list[MemoryHit]:
        """The ``k`` items most similar to ``vector`` (cosine), best first; ties by seq.
        A vector whose length differs from the stored ones is ``InvalidInput``."""

    async def list_memory(self, session_id: str) -> list[MemoryItem]:
        """Every item of the session's memory, by seq."""
