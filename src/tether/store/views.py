"""What the store's read-only views for the console return: pages of tasks and steps,
and the overview's aggregates. Plain values, engine-neutral (``Store`` promises them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether import types

MAX_PAGE = 500
"""The most rows one page may ask for; a larger ``limit`` is ``InvalidInput``."""


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Filters of a task listing; ``None`` means "any". Times are Unix seconds on
    ``created_at``: ``since <= created_at < until``."""

    tenant: str | None = None
    agent: str | None = None
    status: str | None = None
    session_id: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    """Tasks newest first; ``next_before`` is the cursor of the next (older) page, or
    None on the last page. Keyset pagination: a page costs the same on the 1st or the
    1000th page."""

    tasks: list[types.TaskRecord]
    next_before: int | None
    positions: list[int] = field(default_factory=list)
    """Each task's submission position (the cursor space), in the same order."""


@dataclass(frozen=True, slots=True)
class JournalPage:
    """Steps ``after_index < index``, at most ``limit``, with the task's step count."""

    steps: list[types.StepRecord]
    total: int
    """Steps the task has journaled in all (the highest index + 1)."""


@dataclass(frozen=True, slots=True)
class StatusCount:
    agent: str
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class FunnelStep:
    """How many tasks of ``agent`` started and completed step ``step`` (distinct tasks)."""

    agent: str
    step: int
    started: int
    completed: int


@dataclass(frozen=True, slots=True)
class ErrorCount:
    source: str
    """``retry`` (a step's failed try, retried) or ``task`` (the error a task failed with)."""
    type: str
    error_class: str
    count: int


@dataclass(frozen=True, slots=True)
class StuckTask:
    """A running task whose lease expired (its worker is gone or stalled), or one with a
    ``step.stuck`` event in the window."""

    task_id: str
    tenant: str
    agent: str
    worker: str | None
    step: int | None
    since: float
    why: str


@dataclass(frozen=True, slots=True)
class WorkerLeases:
    worker: str
    leases: int
    next_expiry: float | None


@dataclass(frozen=True, slots=True)
class Overview:
    since: float
    now: float
    statuses: list[StatusCount]
    funnel: list[FunnelStep]
    errors: list[ErrorCount]
    stuck: list[StuckTask]
    runs: list[types.TaskRun]
    """Recoveries, handovers and resumes in the window, newest first."""
    workers: list[WorkerLeases]
