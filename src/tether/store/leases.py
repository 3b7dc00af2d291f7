"""Leases and fencing, the store's rules for every engine: which lease a write must
carry, when a lease still holds its task, what a claim is called.

Each engine finds and locks the row its own way (SQLite inside ``BEGIN IMMEDIATE``,
PostgreSQL with ``FOR NO KEY UPDATE``); what it then decides from that row is here.
"""

from __future__ import annotations

from tether import errors, types
from tether.store import rows

CLAIM_REASONS = ("resume", "recovery", "wake", "start", "handover")
"""What a claim may be, in the order candidates are looked at (``handover`` is a
``start`` of a task that ran before)."""


def check_ttl(lease_ttl: float) -> None:
    if lease_ttl <= 0:
        raise errors.InvalidInput(
            f"lease_ttl must be a positive number of seconds, got {lease_ttl}"
        )


def same_task(lease: types.Lease, task_id: str) -> None:
    """A write names its task and carries a lease: both must be the same task's."""
    if task_id != lease.task_id:
        raise errors.InvalidInput(
            f"a write for task {task_id} carried the lease of task {lease.task_id}", task=task_id
        )


def check(lease: types.Lease, row: rows.Row) -> None:
    """``LeaseLost`` unless ``lease`` still holds the task of ``row`` (running, same epoch)."""
    if row["status"] != "running" or row["lease_epoch"] != lease.epoch:
        raise rows.lease_lost(lease, row["status"], row["lease_epoch"])


def claim_reason(row: rows.Row, worker: str) -> str:
    """Why ``worker`` takes the task of ``row`` (as it was before the claim): its own
    lease again (``resume``), an expired one (``recovery``), a waiting task whose time
    or signal came (``wake``), a queued task's first run (``start``) or a later one
    (``handover``: released before)."""
    if row["status"] == "running":
        return "resume" if row["lease_owner"] == worker else "recovery"
    if row["status"] == "waiting":
        return "wake"
    return "handover" if row["runs"] > 0 else "start"
