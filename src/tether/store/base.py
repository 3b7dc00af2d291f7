"""The Store protocol: every durable operation tether needs, in domain words.

Nothing here is engine-specific. ``StoreCore`` (``core``) implements it once, over
two thin drivers, ``SQLiteStore`` and ``PostgresStore``; ``tests/contract/`` states
what each method promises and runs on both.

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
from tether.store import checkpoints, views


@dataclass(frozen=True, slots=True)
class Claim:
    """A task claimed by a worker, with the lease that fences its writes."""

    task: types.TaskRecord
    lease: types.Lease
    reason: str
    """``start``, ``recovery``, ``handover`` or ``resume`` (see ``TaskRun.reason``)."""
    start: TaskStart | None = None
    """``read_task_start``'s answer when the engine read it in the claim's own
    transaction (SQLite: no second job and transaction per task); None: read it."""


@dataclass(frozen=True, slots=True)
class Finish:
    """A task's end under its lease (``finish_task``'s arguments), to be committed in a
    batch beside other tasks' steps and ends (``commit_batch``)."""

    lease: types.Lease
    status: types.TaskStatus
    output: Any = None
    error: dict[str, Any] | None = None
    events: Sequence[types.NewEvent] = ()


BatchResults = tuple[
    list[types.CommitResult | BaseException], list[types.TaskRecord | BaseException]
]
"""``commit_batch``'s answer: one result per step commit, one per task end, in order."""


@dataclass(frozen=True, slots=True)
class TaskStart:
    """What a claimed task reads before its first step (``Store.read_task_start``)."""

    journal: list[types.StepRecord]
    attempts: list[types.StepAttempt]
    """Its recorded step attempts; [] on a first run (``runs == 1``), which has none."""
    session: types.SessionRecord
    history: list[types.StoredMessage]
    """The session's messages up to and including the task's input (``input_seq``)."""


@dataclass(frozen=True, slots=True)
class Signal:
    """A named JSON message sent to a task from outside; a wait consumes it once."""

    task_id: str
    seq: int
    """Arrival order within the task: 1, 2, …"""
    name: str
    data: Any
    sent_at: float
    consumed_step: int | None = None
    """The step that consumed it; None while it waits for a ``wait_for_signal``."""
    consumed_at: float | None = None
    woke: bool = False
    """Set on the record ``send_signal`` returns: this signal made a waiting task due."""

    def to_public(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "seq": self.seq,
            "name": self.name,
            "data": self.data,
            "sent_at": self.sent_at,
            "consumed_step": self.consumed_step,
            "consumed_at": self.consumed_at,
        }


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
    operator: bool = False
    """An operator key sees every tenant in the console (its ``tenant`` is ``*``)."""

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
            "operator": self.operator,
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

    def checkpoints(self) -> checkpoints.Checkpoints:
        """The LangGraph checkpoint tables (``tether.integrations.langgraph``)."""

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
        """A queued or waiting task becomes ``cancelled`` at once (a waiting one holds
        no lease, so nothing runs it); a running one gets ``cancel_requested`` and stops
        at its next step boundary. A finished task is returned unchanged."""

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
        ``waiting`` task whose ``wake_at`` has come (``wake``: its signal arrived or its
        deadline passed); a ``queued`` task whose session has no ``running`` or
        ``waiting`` task and no older ``queued`` task (``start`` the first time,
        ``handover`` after a release). A waiting task keeps its session's place.
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

    async def wait_task(
        self,
        lease: types.Lease,
        *,
        wait: dict[str, Any],
        wake_at: float | None,
        events: Sequence[types.NewEvent] = (),
    ) -> types.TaskRecord:
        """Park a running task (fenced): it becomes ``waiting`` with no lease, holding
        ``wait`` (``{step, kind, name, deadline, since}``) and ``wake_at`` (None: only a
        signal wakes it), and ``events`` are appended, in one transaction. If a signal
        ``wait["name"]`` not yet consumed is already there (it arrived after the task
        looked), ``wake_at`` is now: the task is due at once and no signal is lost."""

    # ---- signals -----------------------------------------------------------

    async def send_signal(
        self, task_id: str, name: str, data: Any, *, tenant: str | None = None
    ) -> Signal:
        """Store a signal for the task (kept until a wait consumes it), append its
        ``signal.received`` event and, when the task waits for this name, make it due
        now (and on PostgreSQL ``NOTIFY`` idle workers), all in one transaction.

        ``NotFound`` for an unknown task or another tenant's; ``Conflict`` for a task
        that is completed, failed or cancelled; ``InvalidInput`` for a bad name or data
        that is not JSON or larger than ``waits.MAX_SIGNAL_BYTES``. Nothing is written
        when it refuses."""

    async def next_signal(self, task_id: str, name: str) -> Signal | None:
        """The oldest signal ``name`` of the task that no step has consumed, or None."""

    async def list_signals(self, task_id: str, *, tenant: str | None = None) -> list[Signal]:
        """Every signal of the task, consumed or not, in arrival order."""

    async def count_tasks(self, *, status: str) -> dict[str, int]:
        """How many tasks are in ``status``, by agent (for the ``tasks_waiting`` gauge)."""

    # ---- journal -----------------------------------------------------------

    async def load_journal(self, task_id: str) -> list[types.StepRecord]:
        """The task's steps in index order."""

    async def claim_tasks(
        self,
        workers: Sequence[str],
        *,
        lease_ttl: float,
        agents: Collection[str] | None = None,
    ) -> list[Claim]:
        """Claim up to one task per lease owner in ``workers``, as ``claim_task`` would
        one after the other (so two claims never take two tasks of one session), and
        return the claims made, in order: fewer when the candidates run out. An engine
        may make them all in one transaction (SQLite). Raises only when none was made."""

    async def read_task_start(self, task: types.TaskRecord) -> TaskStart:
        """What the claimed ``task`` reads before its first step, in one call (on
        PostgreSQL one or two round trips): ``load_journal``, ``list_attempts`` (on a
        later run only), ``get_session`` and ``list_messages`` up to its input."""

    async def commit_steps(
        self, commits: Sequence[types.StepCommit]
    ) -> list[types.CommitResult | BaseException]:
        """Commit each step with its messages, session state and events; one result per
        commit, in order: ``CommitResult`` or the ``LeaseLost`` that fenced it. A commit
        with ``signal_seq`` marks that signal consumed by its step in the same
        transaction; a signal consumed already makes the commit a ``Conflict``."""

    async def commit_batch(
        self, commits: Sequence[types.StepCommit], finishes: Sequence[Finish]
    ) -> BatchResults:
        """Group commit of steps and task ends: ``commit_steps(commits)`` and, for each of
        ``finishes``, ``finish_task``, with one result per item, in order (an end fenced
        off or with bad input is its ``LeaseLost`` or ``InvalidInput``, and changes
        nothing). Everything is committed before this returns; an engine may use one
        transaction for all of it (SQLite) or one for the steps and one for the ends."""

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
        """Bytes stored for one step (its journal row's values plus its messages'
        payloads, each value counted as its text: the same figure on every engine), so
        tests can check storage does not grow."""

    # ---- API keys ----------------------------------------------------------

    async def create_api_key(
        self,
        tenant: str,
        key_hash: str,
        *,
        prefix: str,
        name: str | None = None,
        operator: bool = False,
    ) -> ApiKey:
        """Store a new key (by its hash) for ``tenant``. ``Conflict`` if the hash exists.
        ``operator=True``: a key that sees every tenant in the console."""

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

    # ---- console views (read-only) -------------------------------------------

    async def page_tasks(
        self, query: views.TaskQuery, *, before: int | None = None, limit: int = 50
    ) -> views.TaskPage:
        """Tasks matching ``query``, newest first, older than the cursor ``before`` (a
        ``TaskPage.next_before``); keyset pagination on the submission order, so every
        page costs one index range. ``limit`` above ``views.MAX_PAGE`` is ``InvalidInput``."""

    async def journal_page(
        self, task_id: str, *, tenant: str | None = None, after_index: int = -1, limit: int = 100
    ) -> views.JournalPage:
        """The task's steps with ``index > after_index``, in order, at most ``limit``, and
        its step count. ``NotFound`` for an unknown task or another tenant's."""

    async def session_events(
        self, session_id: str, name: str, *, tenant: str | None = None, limit: int = 100
    ) -> list[types.EventRecord]:
        """Events named ``name`` of every task of the session, oldest first."""

    async def overview(self, *, tenant: str | None = None, since: float) -> views.Overview:
        """Aggregates of the tasks created since ``since`` (statuses, step funnel, errors,
        stuck steps, recoveries and handovers) and of the leases held now."""
